-- Discounts (SPEC 3.3): one negative `discount` line per discount in force, rounded once:
-- percent_off of the usage lines with their true-ups and caps (applies_to usage), of the fee
-- lines (fixed_fees), or of both (all). A discount is in force for its first `periods`
-- periods, counted from the one containing start_date (number 1, even when partial).
-- Adjustments are never discounted.

with invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

discounts as (
    select * from {{ ref('stg_catalog__discounts') }}
),

lines as (
    select close_month, invoice_id, 'usage' as base, amount from {{ ref('int_usage_lines_priced') }}
    union all
    select close_month, invoice_id, 'usage' as base, amount from {{ ref('int_billing_charge_limits') }}
    union all
    select close_month, invoice_id, 'usage' as base, amount from {{ ref('int_billing_spend_limits') }}
    union all
    select close_month, invoice_id, 'fixed_fees' as base, amount from {{ ref('int_billing_fee_lines') }}
),

bases as (
    select
        close_month,
        invoice_id,
        coalesce(sum(amount) filter (where base = 'usage'), 0) as usage_amount,
        coalesce(sum(amount) filter (where base = 'fixed_fees'), 0) as fee_amount
    from lines
    group by all
),

in_force as (
    select
        i.close_month,
        i.invoice_id,
        i.currency_exponent,
        i.period_start,
        i.period_end,
        d.discount_no,
        d.discount_code,
        d.percent_off,
        d.applies_to,
        case d.applies_to
            when 'usage' then b.usage_amount
            when 'fixed_fees' then b.fee_amount
            else b.usage_amount + b.fee_amount
        end as base_amount
    from invoices i
    join discounts d
        on d.subscription_id = i.subscription_id
        and i.period_number is not null
        and (d.periods is null or i.period_number <= d.periods)
    join bases b using (close_month, invoice_id)
),

amounts as (
    select
        *,
        mb_div(mb_mul(base_amount, percent_off), 100) as unrounded_discount
    from in_force
    where base_amount > 0
),

final as (
    select
        close_month,
        invoice_id,
        'discount' as kind,
        discount_code as fee_code,
        discount_no,
        'Discount ' || discount_code || ' (' || {{ billing_decimal_text('percent_off') }} || '% of ' || applies_to || ')' as description,
        period_start,
        period_end,
        -{{ billing_round_money('unrounded_discount', 'currency_exponent') }} as amount,
        -unrounded_discount as unrounded_amount,
        mb_div(percent_off, 100) as proration_factor
    from amounts
)

select * from final
