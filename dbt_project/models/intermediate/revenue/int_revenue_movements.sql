-- Every change to recognized, deferred and unbilled revenue, per customer, currency and day
-- (SPEC 8), from the schedule and the billings. A day's row says what was recognized, what
-- was billed in advance (into deferred revenue), what left deferred revenue (recognized from
-- it, paid credits drawn, breakage) and what moved through unbilled revenue (recognized
-- before it was invoiced, then invoiced). The roll-forward and the journal add these up.

with schedule as (
    select * from {{ ref('fct_revenue_schedule') }}
),

billings as (
    select * from {{ ref('fct_revenue_billings') }}
),

moves as (
    select
        customer_id,
        currency,
        revenue_date as day,
        case when row_type in ('revenue', 'breakage') then amount else 0 end as recognized,
        case when row_type = 'voided' then -amount else 0 end as deferred_billed,
        case when (row_type = 'revenue' and revenue_date >= billed_on) or row_type = 'drawn' then amount else 0 end as deferred_recognized,
        case when row_type = 'breakage' then amount else 0 end as breakage,
        case when row_type = 'revenue' and revenue_date < billed_on then amount else 0 end as unbilled_recognized,
        cast(0 as decimal(38, 12)) as unbilled_invoiced
    from schedule
    union all
    select
        customer_id,
        currency,
        billed_on,
        0,
        amount - unbilled_part,
        0,
        0,
        0,
        unbilled_part
    from billings
)

select
    customer_id,
    currency,
    day,
    sum(recognized) as recognized,
    sum(deferred_billed) as deferred_billed,
    sum(deferred_recognized) as deferred_recognized,
    sum(breakage) as breakage,
    sum(unbilled_recognized) as unbilled_recognized,
    sum(unbilled_invoiced) as unbilled_invoiced
from moves
group by all
