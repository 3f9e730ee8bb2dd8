with source as (
    select * from {{ source('meterbook_billing', 'invoice_periods') }}
),

final as (
    select
        close_month,
        invoice_id,
        subscription_id,
        customer_id,
        plan_code,
        currency,
        currency_exponent,
        tax_rate,
        timezone,
        period_start,
        period_end,
        full_period_start,
        full_period_end,
        next_period_start,
        next_period_end,
        period_number,
        is_first_period
    from source
)

select * from final
