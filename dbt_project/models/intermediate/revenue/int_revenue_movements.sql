-- Every change to recognized, deferred and unbilled revenue, per customer, currency and day
-- (SPEC 8), from the schedule and the billings. A day's row says what was recognized, what
-- was billed in advance (into deferred revenue), what left deferred revenue (recognized from
-- it, paid credits drawn, breakage), what moved through unbilled revenue (recognized before
-- it was invoiced, then invoiced) and what credit notes took back (SPEC 11): the revenue
-- their lines had recognized up to their date (`recognized_credited`, reversed that day, so
-- in `recognized` as a negative) and what was still deferred (`deferred_credited`: out of
-- deferred revenue; the later days of those lines recognize that much less out of it). The
-- roll-forward and the journal add these up.

with schedule as (
    select
        *,
        -- a credit note's reversal of what its line had recognized up to its date
        credit_note_id is not null and revenue_date = billed_on as credited_to_date
    from {{ ref('fct_revenue_schedule') }}
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
        case when (row_type = 'revenue' and revenue_date >= billed_on and not credited_to_date) or row_type = 'drawn' then amount else 0 end as deferred_recognized,
        -- paid credits that expire before the invoice selling them is dated (a pack valid for
        -- days of a period billed at its end): breakage on the expiry date all the same, out
        -- of unbilled revenue, as a line recognized before it is billed; deferred never < 0
        case when row_type = 'breakage' and revenue_date >= billed_on then amount else 0 end as breakage,
        case when row_type in ('revenue', 'breakage') and revenue_date < billed_on then amount else 0 end as unbilled_recognized,
        cast(0 as decimal(38, 12)) as unbilled_invoiced,
        case when credited_to_date then -amount else 0 end as recognized_credited,
        case when credited_to_date then amount else 0 end as deferred_credited
    from schedule
    union all
    select
        customer_id,
        currency,
        billed_on,
        0,
        case when credit_note_id is null then amount - unbilled_part else 0 end,
        0,
        0,
        0,
        unbilled_part,
        0,
        -- what a credit note credits (it reversed the recognized part above)
        case when credit_note_id is not null then -amount else 0 end
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
    sum(unbilled_invoiced) as unbilled_invoiced,
    sum(recognized_credited) as recognized_credited,
    sum(deferred_credited) as deferred_credited
from moves
group by all
