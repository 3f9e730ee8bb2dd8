-- What each line recognizes per day, before discounts and promotional credits (SPEC 8), in
-- minor units: usage by daily quantity (evenly over the line's days when its meter is not
-- additive or had no quantity), fees evenly over the days they pay for, true-ups and caps on
-- their period's last day, adjustments on the last day of their invoice's period. Cumulative
-- rounding: day d gets round(A * W_d / W) - round(A * W_(d-1) / W), so the days sum to A.

with lines as (
    select * from {{ ref('int_revenue_lines') }}
    where amount_minor <> 0
      and revenue_rule in ('daily_usage', 'service_days', 'period_last_day', 'invoice_period_last_day')
),

usage_days as (
    select * from {{ ref('int_revenue_usage_days') }}
),

by_quantity as (
    select line_id from usage_days group by line_id having sum(quantity) <> 0
),

even as (
    select l.line_id, cast(d.day as date) as revenue_date, cast(1 as decimal(38, 12)) as weight
    from lines l,
         range(cast(l.period_start as timestamp), cast(greatest(l.period_end, l.period_start + 1) as timestamp), interval 1 day) as d(day)
    where l.revenue_rule = 'service_days'
       or (l.revenue_rule = 'daily_usage' and l.line_id not in (select line_id from by_quantity))
),

weights as (
    select u.line_id, u.revenue_date, u.quantity as weight
    from usage_days u
    join by_quantity using (line_id)
    union all
    select * from even
    union all
    select line_id, cast(greatest(period_end - 1, period_start) as date), 1
    from lines where revenue_rule = 'period_last_day'
    union all
    select line_id, cast(billed_on - 1 as date), 1
    from lines where revenue_rule = 'invoice_period_last_day'
),

cumulative as (
    select
        line_id,
        revenue_date,
        weight,
        sum(weight) over (partition by line_id order by revenue_date rows unbounded preceding) as upto,
        sum(weight) over (partition by line_id) as whole
    from weights
)

select
    c.line_id,
    c.revenue_date,
    {{ revenue_cumulative_part('l.amount_minor', 'c.upto', 'c.weight', 'c.whole') }} as amount_minor
from cumulative c
join lines l using (line_id)
