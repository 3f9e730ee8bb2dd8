{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='close_month',
        on_schema_change='fail',
        pre_hook="{{ billing_delete_close_month() }}",
    )
}}

-- One draft invoice per subscription period of the close month (SPEC 3.4, 5). Totals are sums
-- of rounded lines: subtotal = all lines (after discounts), discount_total = the positive sum
-- of the discount lines, tax = tax_rate x the taxable lines (seed line_kinds) rounded once,
-- total = subtotal + tax; credits_applied = the paid credits drawn after tax (SPEC 7,
-- int_wallet_draws), amount_due = total - credits_applied. Prepaid-credit lines are lines:
-- promotional credits lower the subtotal and the tax, credit purchases are not taxed.
-- invoice_id is stable across re-runs (subscription and period start).

with invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

lines as (
    select l.*, k.taxable
    from {{ ref('fct_invoice_lines') }} l
    left join {{ ref('line_kinds') }} k using (kind)
    where {{ billing_in_close_month('l.close_month') }}
),

sums as (
    select
        close_month,
        invoice_id,
        sum(amount) as subtotal,
        coalesce(-sum(amount) filter (where kind = 'discount'), 0) as discount_total,
        sum(amount) filter (where taxable) as taxable_amount,
        count(*) as line_count
    from lines
    group by all
),

paid_credits as (
    select close_month, invoice_id, sum(amount) as credits_applied
    from {{ ref('int_wallet_draws') }}
    where record_type = 'invoice' and {{ billing_in_close_month('close_month') }}
    group by all
),

taxed as (
    select
        i.*,
        cast(coalesce(s.subtotal, 0) as decimal(38, 12)) as subtotal,
        cast(coalesce(s.discount_total, 0) as decimal(38, 12)) as discount_total,
        coalesce(s.line_count, 0) as line_count,
        {{ billing_round_money('mb_mul(coalesce(s.taxable_amount, 0), i.tax_rate)', 'i.currency_exponent') }}
            as tax_total,
        cast(coalesce(p.credits_applied, 0) as decimal(38, 12)) as credits_applied
    from invoices i
    left join sums s using (close_month, invoice_id)
    left join paid_credits p using (close_month, invoice_id)
),

final as (
    select
        close_month,
        invoice_id,
        cast(null as varchar) as number,
        'draft' as status,
        customer_id,
        subscription_id,
        plan_code,
        currency,
        cast(currency_exponent as integer) as currency_exponent,
        period_start,
        period_end,
        cast(subtotal as decimal(38, 12)) as subtotal,
        cast(discount_total as decimal(38, 12)) as discount_total,
        cast(tax_rate as decimal(38, 12)) as tax_rate,
        cast(tax_total as decimal(38, 12)) as tax_total,
        cast(subtotal + tax_total as decimal(38, 12)) as total,
        cast(credits_applied as decimal(38, 12)) as credits_applied,
        cast(subtotal + tax_total - credits_applied as decimal(38, 12)) as amount_due,
        cast(line_count as integer) as line_count
    from taxed
)

select * from final
