{#
  A view: the fates are stored once, narrow, in int_events_fated; the event's file, line and
  ids come from the raw events it was computed from, its file's sha256 from the landing files.
#}
{{ config(materialized='view', contract={'enforced': true}) }}

with fates as (
    select * from {{ ref('int_events_fated') }}
),

events as (
    select * from {{ ref('stg_meterbook__raw_events') }}
),

files as (
    select file_seq, file_sha256 from {{ ref('stg_meterbook__landing_files') }}
),

final as (
    select
        fates.read_seq,
        events.path,
        events.line_no,
        files.file_sha256,
        events.event_id,
        events.customer_id,
        fates.billing_customer_id,
        events.event_name,
        events.event_ts,
        fates.event_date,
        fates.fate,
        fates.reason
    from fates
    inner join events on events.read_seq = fates.read_seq
    inner join files on files.file_seq = events.file_seq
)

select * from final
