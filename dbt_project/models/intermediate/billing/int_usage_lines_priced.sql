-- Usage lines at their final price (SPEC 7, credit price): a per_unit charge with a
-- credit_price bills the units promotional credits cover (int_wallet_credit_coverage) at
-- credit_price and the rest at unit_price, rounded half-up once. Every other line is
-- int_usage_lines_rated unchanged, with credit_quantity null.

with rated as (
    select * from {{ ref('int_usage_lines_rated') }}
),

coverage as (
    select close_month, invoice_id, usage_key, sum(units) as credit_quantity
    from {{ ref('int_wallet_credit_coverage') }}
    group by all
),

keyed as (
    select
        r.*,
        concat_ws('|', r.segment_no, r.charge_no, coalesce(cast(r.group_key as varchar), '')) as usage_key
    from rated r
),

final as (
    select
        k.* replace (
            if(c.credit_quantity is null, k.unrounded_amount,
                mb_mul(c.credit_quantity, k.credit_price)
                + mb_mul(k.billable_quantity - c.credit_quantity, k.unit_price)) as unrounded_amount,
            if(c.credit_quantity is null, k.amount,
                {{ billing_round_money(
                    'mb_mul(c.credit_quantity, k.credit_price) + mb_mul(k.billable_quantity - c.credit_quantity, k.unit_price)',
                    'k.currency_exponent') }}) as amount
        ),
        cast(c.credit_quantity as decimal(38, 12)) as credit_quantity
    from keyed k
    left join coverage c using (close_month, invoice_id, usage_key)
)

select * from final
