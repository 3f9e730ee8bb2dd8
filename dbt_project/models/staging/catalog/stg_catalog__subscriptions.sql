{{ config(tags=['billing']) }}  -- read only by the billing models

with source as (
    select * from {{ source('meterbook_catalog', 'subscriptions') }}
),

final as (
    select
        subscription_id,
        customer_id,
        plan_code,
        start_date,
        end_date,
        billing_anchor,
        pin_version,
        trial_end,
        currency,
        currency_exponent,
        timezone,
        tax_rate,
        billable
    from source
)

select * from final
