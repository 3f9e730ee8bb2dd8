{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='close_month',
        on_schema_change='fail',
        pre_hook="{{ billing_delete_close_month() }}",
    )
}}

-- Prepaid credits of every close month (SPEC 7): int_wallet_close's rows, kept month by
-- month (a close replaces its month's). A close reads the earlier months' entries here.

select * from {{ ref('int_wallet_close') }}
where {{ billing_in_close_month('close_month') }}
