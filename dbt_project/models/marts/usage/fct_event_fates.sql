{#
  A view: the fates are stored once, in int_events_fated; a second table of every event
  would cost as much to write as the fates cost to compute.
#}
{{ config(materialized='view', contract={'enforced': true}) }}

with fated as (
    select * from {{ ref('int_events_fated') }}
),

final as (
    select
        read_seq,
        path,
        line_no,
        file_sha256,
        event_id,
        customer_id,
        billing_customer_id,
        event_name,
        event_ts,
        event_date,
        fate,
        reason
    from fated
)

select * from final
