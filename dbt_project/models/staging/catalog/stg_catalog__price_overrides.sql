{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'price_overrides') }}
),

final as (
    select
        subscription_id,
        override_no,
        meter_code,
        model,
        unit_price,
        package_size,
        package_price,
        rate,
        effective_from,
        effective_to
    from source
)

select * from final
