-- The revenue schedule (SPEC 8): one row per finalized line, day and what happens that day.
-- row_type: `revenue` (recognized), `breakage` (paid credits expired: revenue), `drawn`
-- (paid credits applied to an invoice: they leave deferred revenue, the lines they paid are
-- recognized by their own rules), `voided` (paid credits taken back). `revenue_kind` is the
-- kind the revenue is reported under: a discount or promotional credit takes the kind of the
-- line it reduces (`reduces_line_id`). Corrections are reversal rows (`reversal`), never a
-- rewrite: a credit note (`credit_note_id`, SPEC 11) reverses its share of the line's schedule
-- (int_revenue_credit_note_reversals): what was recognized up to its date, on that date, and
-- each later day on its day; a voided invoice reverses what its lines still stood for (their
-- own rows and their credit notes' rows): what they recognized until the void, on the void
-- date, and their later days cancelled day by day.
-- Built whole from the append-only ledger: the same ledger gives the same rows.

with lines as (
    select * from {{ ref('int_revenue_lines') }}
),

own as (
    select line_id, cast(null as varchar) as reduces_line_id, cast(null as varchar) as entry_id,
           'revenue' as row_type, revenue_date, amount_minor
    from {{ ref('int_revenue_line_days') }}
    union all
    select line_id, reduces_line_id, null, 'revenue', revenue_date, amount_minor
    from {{ ref('int_revenue_reductions') }}
    union all
    select line_id, null, entry_id, row_type, revenue_date, amount_minor
    from {{ ref('int_revenue_credit_movements') }}
),

rows_ as (
    select
        l.close_month,
        l.invoice_id,
        o.line_id,
        l.kind as line_kind,
        case
            when o.row_type = 'breakage' then 'breakage'
            when o.reduces_line_id is not null then t.kind
            else l.kind
        end as revenue_kind,
        o.reduces_line_id,
        o.entry_id,
        o.row_type,
        false as reversal,
        l.customer_id,
        l.subscription_id,
        l.currency,
        l.currency_exponent,
        o.revenue_date,
        l.billed_on,
        o.amount_minor,
        cast(null as varchar) as credit_note_id,
        l.voided_on
    from own o
    join lines l on l.line_id = o.line_id
    left join lines t on t.line_id = o.reduces_line_id and t.invoice_id = l.invoice_id
    where o.amount_minor <> 0
),

-- a credit note's rows: billed_on is its date (what it reverses up to then, on it, comes
-- back out of revenue; what it cancels later was still deferred)
credited as (
    select
        l.close_month,
        l.invoice_id,
        c.line_id,
        l.kind as line_kind,
        case when c.reduces_line_id is not null then t.kind else l.kind end as revenue_kind,
        c.reduces_line_id,
        cast(null as varchar) as entry_id,
        'revenue' as row_type,
        true as reversal,
        l.customer_id,
        l.subscription_id,
        l.currency,
        l.currency_exponent,
        c.revenue_date,
        c.issued_on as billed_on,
        c.amount_minor,
        c.credit_note_id,
        l.voided_on
    from {{ ref('int_revenue_credit_note_reversals') }} c
    join lines l on l.line_id = c.line_id
    left join lines t on t.line_id = c.reduces_line_id and t.invoice_id = l.invoice_id
),

voided as (
    select * from rows_
    where voided_on is not null and line_kind <> 'credit_purchase'
    union all
    select * from credited
    where voided_on is not null
),

reversed_to_date as (
    select
        close_month, invoice_id, line_id, line_kind, revenue_kind, reduces_line_id,
        cast(null as varchar) as entry_id, row_type, true as reversal, customer_id,
        subscription_id, currency, currency_exponent, voided_on as revenue_date,
        voided_on as billed_on, -sum(amount_minor) as amount_minor,
        cast(null as varchar) as credit_note_id, voided_on
    from voided
    where revenue_date <= voided_on
    group by all
),

cancelled_later as (
    select * replace (
        true as reversal, voided_on as billed_on, -amount_minor as amount_minor,
        cast(null as varchar) as credit_note_id
    )
    from voided
    where revenue_date > voided_on
),

final as (
    select * from rows_
    union all
    select * from credited
    union all
    select * from reversed_to_date where amount_minor <> 0
    union all
    select * from cancelled_later
)

select
    close_month,
    invoice_id,
    line_id,
    line_kind,
    revenue_kind,
    reduces_line_id,
    entry_id,
    row_type,
    reversal,
    credit_note_id,
    customer_id,
    subscription_id,
    currency,
    revenue_date,
    billed_on,
    {{ revenue_from_minor('amount_minor', 'currency_exponent') }} as amount
from final
