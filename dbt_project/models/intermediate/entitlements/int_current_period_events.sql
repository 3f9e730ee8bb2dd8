{#
  The billable events of each current period (stg_entitlements__current_windows), one row per
  event x meter that counts it: what both entitlement marts aggregate. A view, compiled anew
  by every build: the windows' span (read at compile time, metering_window_bounds) reaches the
  scans of the fates and the raw events as literals, so only the current periods' row groups
  are read, as in the close (int_meter_quantities_windowed).
#}
{{ config(materialized='view') }}
{%- set windows = ref('stg_entitlements__current_windows') -%}
{%- set meter_rows = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') -%}
{%- set from_first_start, before_last_end = metering_window_bounds('events.event_ts', windows) %}
{%- set window_customers = metering_window_customers(
    'fates.billing_customer_id', windows=windows) %}

with windows as (
    select * from {{ windows }}
),

metered as not materialized (
    {{ metering_events(meter_rows, metering_window_dates('fates.event_date', windows)
        ~ ' and ' ~ from_first_start ~ ' and ' ~ before_last_end
        ~ ' and ' ~ window_customers) }}
)

select windows.window_id, metered.*
from windows
inner join metered
    on metered.billing_customer_id = windows.billing_customer_id
    and metered.event_ts >= windows.window_start
    and metered.event_ts < windows.window_end
