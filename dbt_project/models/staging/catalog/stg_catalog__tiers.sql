{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'tiers') }}
),

final as (
    select
        plan_code,
        version,
        meter_code,
        tier_no,
        tier_from,
        up_to,
        unit_price,
        flat_fee
    from source
)

select * from final
