-- Fixed fees (SPEC 3.3). Each fee is prorated by paid days (active, out of trial) over the
-- days of the full period it pays for, summed per fee over the segments and rounded once,
-- times the subscription's quantity for it (default 1). On an invoice:
--   in_arrears fees of the period that ended;
--   in_advance fees of the next period;
--   the in_advance fees of the period itself when it is the first one (the first, partial fee);
--   a fixed_fee_credit when earlier closes invoiced more for this period than is due now
--   (the catalog changed after the fee was invoiced, e.g. an end date added later).
-- Lines of zero are left out.

with invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

segments as (
    select * from {{ ref('stg_billing__segments') }}
    where {{ billing_in_close_month('close_month') }}
),

fees as (
    select * from {{ ref('stg_catalog__fixed_fees') }}
),

quantities as (
    select * from {{ ref('stg_catalog__subscription_quantities') }}
),

prior as (
    select * from {{ ref('stg_billing__prior_fee_lines') }}
    where {{ billing_in_close_month('close_month') }}
),

fee_segments as (
    select
        s.close_month,
        s.invoice_id,
        i.subscription_id,
        i.currency_exponent,
        i.is_first_period,
        s.period_role,
        s.segment_start,
        s.segment_end,
        s.is_trial,
        s.days,
        s.period_days,
        s.version,
        f.fee_no,
        f.fee_code,
        f.fee_name,
        f.timing,
        f.amount as fee_amount,
        coalesce(q.quantity, cast(1 as decimal(38, 12))) as fee_quantity
    from segments s
    join invoices i using (close_month, invoice_id)
    join fees f on f.plan_code = s.plan_code and f.version = s.version
    left join quantities q on q.subscription_id = i.subscription_id and q.fee_code = f.fee_code
),

per_fee as (
    select
        close_month,
        invoice_id,
        subscription_id,
        period_role,
        fee_code,
        timing,
        any_value(currency_exponent) as currency_exponent,
        any_value(is_first_period) as is_first_period,
        min(fee_no) as fee_no,
        arg_max(fee_name, segment_start) as fee_name,
        arg_max(fee_quantity, segment_start) as fee_quantity,
        if(min(fee_amount) = max(fee_amount), min(fee_amount), null) as unit_price,
        -- the days the fee pays for: trial days are free, so they are not covered
        coalesce(min(segment_start) filter (where not is_trial), min(segment_start)) as period_start,
        coalesce(max(segment_end) filter (where not is_trial), max(segment_end)) as period_end,
        coalesce(sum(days) filter (where not is_trial), 0) as paid_days,
        any_value(period_days) as period_days,
        coalesce(
            {{ billing_prorated_sum('mb_mul(fee_amount, fee_quantity)', 'days', 'period_days', 'not is_trial') }},
            cast(0 as decimal(38, 12))
        ) as unrounded_amount
    from fee_segments
    group by close_month, invoice_id, subscription_id, period_role, fee_code, timing
),

rounded as (
    select
        *,
        {{ billing_round_money('unrounded_amount', 'currency_exponent') }} as due_amount,
        mb_div(paid_days, period_days) as proration_factor
    from per_fee
),

charged as (
    select *, 'fixed_fee' as kind, due_amount as amount
    from rounded
    where (period_role = 'next' and timing = 'in_advance')
        or (period_role = 'current' and timing = 'in_arrears')
        or (period_role = 'current' and timing = 'in_advance' and is_first_period)
),

credited as (
    select r.*, 'fixed_fee_credit' as kind, cast(r.due_amount - p.amount as decimal(38, 12)) as amount
    from rounded r
    join prior p using (close_month, invoice_id, fee_code)
    where r.period_role = 'current'
        and r.timing = 'in_advance'
        and not r.is_first_period
        and r.due_amount < p.amount
),

lines as (
    select * from charged
    union all by name
    select * from credited
),

final as (
    select
        close_month,
        invoice_id,
        kind,
        fee_code,
        fee_no,
        if(kind = 'fixed_fee_credit', 'Unused ' || fee_name, fee_name) as description,
        period_start,
        period_end,
        fee_quantity as quantity,
        unit_price,
        unrounded_amount,
        amount,
        proration_factor,
        period_role
    from lines
    where amount <> 0
)

select * from final
