{#
  A view over every metered event, for lineage and reports: each reads one line's window or
  one month, and filters by event_date and event_ts. The close reads the same rows from the
  same macro (metering_catalog.sql: metering_events) with its month's bounds passed in; daily
  usage aggregates inside each meter's branch (see there). The fates are narrow, so the
  event's own columns come from the raw events, joined on read_seq.
#}
{{ config(materialized='view') }}
{%- set meters = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') %}

{{ metering_events(meters) }}
