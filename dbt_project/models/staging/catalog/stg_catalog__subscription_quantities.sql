{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'subscription_quantities') }}
),

final as (
    select
        subscription_id,
        fee_code,
        quantity
    from source
)

select * from final
