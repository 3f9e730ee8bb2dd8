-- What was billed, line by line, as revenue recognition sees it (SPEC 8): each finalized line
-- on its invoice's date; what a credit note credits of it, negated on the credit note's date
-- (SPEC 11); and a voided invoice's lines negated on the void date, less what credit notes
-- had already taken back (their reversal; paid credits bought stay with the wallet).
-- `unbilled_part` is what the line had recognized before it was billed (it moves from
-- unbilled to receivable); the rest is billed in advance (deferred revenue until recognized,
-- or, for paid credits, until drawn). A credit note's rows have none: what it reverses is
-- dated on or after it.

with lines as (
    select * from {{ ref('int_revenue_lines') }}
),

credit_notes as (
    select
        n.credit_note_id,
        n.issued_on,
        c.line_id,
        c.amount
    from {{ source('meterbook_ledger', 'credit_note_lines') }} c
    join {{ source('meterbook_ledger', 'credit_notes') }} n using (credit_note_id)
),

credited as (
    select line_id, sum(amount) as amount from credit_notes group by all
),

billings as (
    select close_month, invoice_id, line_id, kind as line_kind, false as reversal,
           cast(null as varchar) as credit_note_id, customer_id, subscription_id, currency,
           billed_on, amount
    from lines
    union all
    select l.close_month, l.invoice_id, l.line_id, l.kind, true, n.credit_note_id,
           l.customer_id, l.subscription_id, l.currency, n.issued_on, -n.amount
    from credit_notes n
    join lines l using (line_id)
    union all
    select l.close_month, l.invoice_id, l.line_id, l.kind, true, null, l.customer_id,
           l.subscription_id, l.currency, l.voided_on, -(l.amount - coalesce(c.amount, 0))
    from lines l
    left join credited c using (line_id)
    where l.voided_on is not null and l.kind <> 'credit_purchase'
),

unbilled as (
    select s.line_id, s.reversal, s.credit_note_id, sum(s.amount) as amount
    from {{ ref('fct_revenue_schedule') }} s
    where s.row_type in ('revenue', 'breakage') and s.revenue_date < s.billed_on
    group by all
)

select
    b.close_month,
    b.invoice_id,
    b.line_id,
    b.line_kind,
    b.reversal,
    b.customer_id,
    b.subscription_id,
    b.currency,
    b.billed_on,
    b.amount,
    coalesce(u.amount, 0) as unbilled_part,
    b.credit_note_id
from billings b
left join unbilled u
    on u.line_id = b.line_id
    and u.reversal = b.reversal
    and u.credit_note_id is not distinct from b.credit_note_id
where b.amount <> 0
