{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'charges') }}
),

final as (
    select
        plan_code,
        version,
        charge_no,
        meter_code,
        meter_name,
        charge_name,
        model,
        unit_price,
        package_size,
        package_price,
        rate,
        free_units,
        minimum,
        maximum,
        credit_price
    from source
)

select * from final
