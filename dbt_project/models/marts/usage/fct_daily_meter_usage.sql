{#
  Re-running a partition replaces it: rows of [min_date, max_date) are deleted first (also
  days that now have no usage), then the range is inserted again.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['usage_date'],
        on_schema_change='fail',
        contract={'enforced': true},
        pre_hook="{% if is_incremental() %}delete from {{ this }} where usage_date >= {{ metering_date_literal('min_date') }} and usage_date < {{ metering_date_literal('max_date') }}{% endif %}"
    )
}}

with metered as (
    select * from {{ ref('int_events_metered') }}
    where event_date >= {{ metering_date_literal('min_date') }}
      and event_date < {{ metering_date_literal('max_date') }}
),

meters as (
    select meter_seq, aggregation from {{ ref('stg_catalog__meters') }}
),

daily as (
    select
        event_date as usage_date,
        billing_customer_id,
        meter_seq,
        meter_code,
        group_key,
        {{ metering_aggregates('value_last') }}
    from metered
    group by all
),

final as (
    select
        daily.usage_date,
        daily.billing_customer_id,
        daily.meter_code,
        daily.group_key,
        cast(daily.event_count as bigint) as event_count,
        -- every branch DECIMAL(38, 12): a CASE mixing BIGINT and DECIMAL may not stay exact
        case meters.aggregation
            when 'count' then cast(daily.event_count as decimal(38, 12))
            when 'sum' then daily.value_sum
            when 'count_unique' then cast(daily.distinct_count as decimal(38, 12))
            when 'max' then daily.value_max
            when 'min' then daily.value_min
            else daily.value_last
        end as daily_quantity
    from daily
    inner join meters on daily.meter_seq = meters.meter_seq
)

select * from final
