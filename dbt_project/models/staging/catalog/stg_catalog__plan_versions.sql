{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'plan_versions') }}
),

final as (
    select
        plan_code,
        version,
        effective_from,
        trial_days,
        minimum_spend,
        maximum_spend
    from source
)

select * from final
