{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'price_override_tiers') }}
),

final as (
    select
        subscription_id,
        override_no,
        tier_no,
        tier_from,
        up_to,
        unit_price,
        flat_fee
    from source
)

select * from final
