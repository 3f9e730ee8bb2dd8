{#
  Keeps every close month: a run replaces the months it computes (var close_month, or all
  of meter_windows), deleting them first so a month that lost its windows is emptied. The
  pre-hook delete matters for speed too: dbt's delete+insert then joins the new rows with
  the table on close_month alone, which pairs every old row of a month with every new one.
  On Spark (tests/spark): a run overwrites the month partitions it produces, and the
  contract (DuckDB's types) is not enforced, as for fct_daily_meter_usage.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy=('insert_overwrite' if target.type == 'spark' else 'delete+insert'),
        partition_by=(['close_month'] if target.type == 'spark' else none),
        unique_key=['close_month'],
        on_schema_change='fail',
        contract={'enforced': target.type != 'spark'},
        pre_hook="{% if is_incremental() and target.type != 'spark' %}{{ period_quantities_delete_months(this) }}{% endif %}"
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
