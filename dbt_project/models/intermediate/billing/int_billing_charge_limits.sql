-- Per-charge minimum and maximum (SPEC 3.2) over the charge's lines and segments.
-- minimum: prorated over the paid (active, out of trial) days, summed over the segments and
-- rounded once; a minimum_true_up line brings the charge's rounded lines up to it.
-- maximum: not prorated, the one of the charge in force at the end of the period; a
-- maximum_cap line (negative) brings the charge down to it.

with segment_charges as (
    select * from {{ ref('int_billing_segment_charges') }}
),

usage_lines as (
    select * from {{ ref('int_usage_lines_priced') }}
),

charge_totals as (
    select close_month, invoice_id, meter_code, sum(amount) as usage_amount
    from usage_lines
    group by all
),

charge_terms as (
    select
        close_month,
        invoice_id,
        meter_code,
        any_value(meter_name) as meter_name,
        min(charge_no) as charge_no,
        any_value(currency_exponent) as currency_exponent,
        {{ billing_prorated_sum('minimum', 'days', 'period_days', 'not is_trial and minimum is not null') }}
            as prorated_minimum,
        mb_div(
            sum(days) filter (where not is_trial and minimum is not null), any_value(period_days)
        ) as minimum_factor,
        -- the last segment's maximum, also when it has none (arg_max would skip a NULL)
        arg_max_null(maximum, segment_start) as maximum,
        min(segment_start) as period_start,
        max(segment_end) as period_end
    from segment_charges
    group by all
),

limits as (
    select
        t.*,
        c.usage_amount,
        {{ billing_round_money('t.prorated_minimum', 't.currency_exponent') }} as minimum_due
    from charge_terms t
    join charge_totals c using (close_month, invoice_id, meter_code)
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
        {{ billing_cap('maximum', 'usage_amount', 'true_up') }} as cap
    from true_ups
),

final as (
    select
        close_month, invoice_id, meter_code, meter_name, charge_no, period_start, period_end,
        'minimum_true_up' as kind,
        'Minimum for ' || meter_name as description,
        true_up as amount,
        prorated_minimum as unrounded_amount,
        minimum_factor as proration_factor
    from caps
    where true_up > 0
    union all
    select
        close_month, invoice_id, meter_code, meter_name, charge_no, period_start, period_end,
        'maximum_cap' as kind,
        'Maximum for ' || meter_name as description,
        cap as amount,
        maximum as unrounded_amount,
        cast(null as decimal(38, 12)) as proration_factor
    from caps
    where cap < 0
)

select * from final
