{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'discounts') }}
),

final as (
    select
        subscription_id,
        discount_no,
        discount_code,
        percent_off,
        applies_to,
        periods
    from source
)

select * from final
