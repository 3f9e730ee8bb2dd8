{#
  Keeps every close month: a run replaces the months it computes (var close_month, or all
  of meter_windows), deleting the month first so a month that lost its windows is emptied.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['close_month'],
        on_schema_change='fail',
        contract={'enforced': true},
        pre_hook="{% set month = metering_close_month_literal() %}{% if month and is_incremental() %}delete from {{ this }} where close_month = {{ month }}{% endif %}"
    )
}}

with windowed as (
    select * from {{ ref('int_meter_quantities_windowed') }}
),

final as (
    select
        close_month,
        window_id,
        billing_customer_id,
        meter_code,
        group_key,
        quantity,
        event_count
    from windowed
)

select * from final
