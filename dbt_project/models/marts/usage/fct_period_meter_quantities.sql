{#
  Keeps every close month: a run replaces the months it computes (var close_month, or all
  of meter_windows), deleting them first so a month that lost its windows is emptied. The
  pre-hook delete matters for speed too: dbt's delete+insert then joins the new rows with
  the table on close_month alone, which pairs every old row of a month with every new one.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['close_month'],
        on_schema_change='fail',
        contract={'enforced': true},
        pre_hook="{% if is_incremental() %}{{ period_quantities_delete_months(this) }}{% endif %}"
    )
}}

-- depends_on: {{ ref('stg_billing__meter_windows') }}

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
