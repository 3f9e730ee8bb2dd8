{#
  A view: both consumers (daily usage for a date range, windowed quantities for a close
  month) filter by time, and DuckDB pushes that filter into each branch below instead of
  materialising every billable event once more.
#}
{{ config(materialized='view') }}
{%- set meters = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') -%}

with billable as (
    select * from {{ ref('int_events_fated') }}
    where fate = 'billable'
),

-- one branch per meter: the events it counts, with the value its aggregation needs
metered as (
    {%- for meter in meters %}
    select
        read_seq,
        event_id,
        customer_id,
        billing_customer_id,
        event_ts,
        event_date,
        {{ meter['meter_seq'] }} as meter_seq,
        {{ metering_aggregation_literal(meter['aggregation']) }} as aggregation,
        cast({{ meter['value_sql'] or 'null' }} as decimal(38, 12)) as value,
        cast({{ meter['text_value_sql'] or 'null' }} as varchar) as text_value,
        cast({{ meter['group_key_sql'] }} as json) as group_key
    from billable
    where {{ meter['match_sql'] }}
    union all
    {%- endfor %}
    select
        read_seq, event_id, customer_id, billing_customer_id, event_ts, event_date,
        cast(null as integer) as meter_seq,
        cast(null as varchar) as aggregation,
        cast(null as decimal(38, 12)) as value,
        cast(null as varchar) as text_value,
        cast(null as json) as group_key
    from billable
    where false
),

meters as (
    select meter_seq, meter_code from {{ ref('stg_catalog__meters') }}
),

final as (
    select
        metered.read_seq,
        metered.event_id,
        metered.customer_id,
        metered.billing_customer_id,
        metered.event_ts,
        metered.event_date,
        metered.meter_seq,
        meters.meter_code,
        metered.aggregation,
        metered.value,
        metered.text_value,
        metered.group_key
    from metered
    inner join meters on metered.meter_seq = meters.meter_seq
)

select * from final
