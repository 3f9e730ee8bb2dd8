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

with metered as not materialized (
    select * from {{ ref('int_events_metered') }}
    where event_date >= {{ metering_date_literal('min_date') }}
      and event_date < {{ metering_date_literal('max_date') }}
),

-- time_weighted: the day's quantity is the last value set that day (the level it stays at)
daily as (
    {{ metering_quantities(
        'metered',
        'event_date as usage_date, billing_customer_id, meter_code, group_key',
        ['latest', 'time_weighted']) }}
),

final as (
    select
        usage_date,
        billing_customer_id,
        meter_code,
        group_key,
        cast(event_count as bigint) as event_count,
        quantity as daily_quantity
    from daily
)

select * from final
