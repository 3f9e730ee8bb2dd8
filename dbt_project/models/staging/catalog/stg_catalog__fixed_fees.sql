{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'fixed_fees') }}
),

final as (
    select
        plan_code,
        version,
        fee_no,
        fee_code,
        fee_name,
        amount,
        timing
    from source
)

select * from final
