-- minimum_spend then maximum_spend (SPEC 3.2) over the usage lines with their per-charge
-- true-ups and caps. minimum_spend is prorated over the paid days (summed per segment,
-- rounded once): a commitment_true_up line brings usage up to it; maximum_spend is not
-- prorated (the version's in force at the end of the period): a spend_cap line caps usage.

with segments as (
    select * from {{ ref('stg_billing__segments') }}
    where period_role = 'current' and {{ billing_in_close_month('close_month') }}
),

invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

versions as (
    select * from {{ ref('stg_catalog__plan_versions') }}
),

usage_lines as (
    select close_month, invoice_id, amount from {{ ref('int_usage_lines_priced') }}
    union all
    select close_month, invoice_id, amount from {{ ref('int_billing_charge_limits') }}
),

usage_totals as (
    select close_month, invoice_id, sum(amount) as usage_amount
    from usage_lines
    group by all
),

terms as (
    select
        s.close_month,
        s.invoice_id,
        {{ billing_prorated_sum('v.minimum_spend', 's.days', 's.period_days',
            'not s.is_trial and v.minimum_spend is not null') }} as prorated_minimum,
        mb_div(
            sum(s.days) filter (where not s.is_trial and v.minimum_spend is not null),
            any_value(s.period_days)
        ) as minimum_factor,
        -- the last segment's, also when it has none (arg_max would skip a NULL)
        arg_max_null(v.maximum_spend, s.segment_start) as maximum_spend
    from segments s
    join versions v on v.plan_code = s.plan_code and v.version = s.version
    group by all
),

limits as (
    select
        t.*,
        i.period_start,
        i.period_end,
        coalesce(u.usage_amount, 0) as usage_amount,
        {{ billing_round_money('t.prorated_minimum', 'i.currency_exponent') }} as minimum_due
    from terms t
    join invoices i using (close_month, invoice_id)
    left join usage_totals u using (close_month, invoice_id)
),

true_ups as (
    select
        *,
        {{ billing_true_up('minimum_due', 'usage_amount') }} as true_up
    from limits
),

caps as (
    select
        *,
        {{ billing_cap('maximum_spend', 'usage_amount', 'true_up') }} as cap
    from true_ups
),

final as (
    select
        close_month, invoice_id, period_start, period_end,
        'commitment_true_up' as kind,
        'Minimum spend' as description,
        true_up as amount,
        prorated_minimum as unrounded_amount,
        minimum_factor as proration_factor
    from caps
    where true_up > 0
    union all
    select
        close_month, invoice_id, period_start, period_end,
        'spend_cap' as kind,
        'Maximum spend' as description,
        cap as amount,
        maximum_spend as unrounded_amount,
        cast(null as decimal(38, 12)) as proration_factor
    from caps
    where cap < 0
)

select * from final
