-- What was billed, line by line, as revenue recognition sees it (SPEC 8): each finalized line
-- on its invoice's date, and a voided invoice's lines negated on the void date (their
-- reversal; paid credits bought stay with the wallet). `unbilled_part` is what the line had
-- recognized before it was billed (it moves from unbilled to receivable); the rest is billed
-- in advance (deferred revenue until recognized, or, for paid credits, until drawn).

with lines as (
    select * from {{ ref('int_revenue_lines') }}
),

billings as (
    select close_month, invoice_id, line_id, kind as line_kind, false as reversal, customer_id,
           subscription_id, currency, billed_on, amount
    from lines
    union all
    select close_month, invoice_id, line_id, kind, true, customer_id, subscription_id, currency,
           voided_on, -amount
    from lines
    where voided_on is not null and kind <> 'credit_purchase'
),

unbilled as (
    select s.line_id, s.reversal, sum(s.amount) as amount
    from {{ ref('fct_revenue_schedule') }} s
    where s.row_type = 'revenue' and s.revenue_date < s.billed_on
    group by all
)

select
    b.*,
    coalesce(u.amount, 0) as unbilled_part
from billings b
left join unbilled u using (line_id, reversal)
where b.amount <> 0
