-- What credit notes take back of the revenue of the lines they credit (SPEC 8, 11). A note
-- crediting c of a line of amount A reverses c/A of that line's own schedule (its days, or a
-- discount's parts over the lines it reduces): what the line recognized up to the note's day
-- is reversed on that day, each later day is scaled down on its day. Several notes on one line
-- are cumulative, in the order they were issued: with C_k what notes 1..k credited, day d of
-- the line loses round(C_k * S_d / A) - round(C_k * S_(d-1) / A) after note k (S_d the line's
-- schedule up to day d), and note k's part is that less the same for C_(k-1). So a note's rows
-- sum to what it credited, a day's rows to its share of everything credited, exactly, in
-- minor units. Discounts and promotional credits reducing a credited line keep their own
-- schedules (a credit note names them as lines of their own when it credits them).

with lines as (
    select * from {{ ref('int_revenue_lines') }}
),

notes as (
    select credit_note_id, number, issued_on, issued_at
    from {{ source('meterbook_ledger', 'credit_notes') }}
),

credited as (
    select
        n.credit_note_id,
        n.issued_on,
        c.line_id,
        {{ revenue_to_minor('c.amount', 'l.currency_exponent') }} as credited_minor,
        sum({{ revenue_to_minor('c.amount', 'l.currency_exponent') }}) over (
            partition by c.line_id order by n.issued_at, n.number rows unbounded preceding
        ) as credited_upto
    from {{ source('meterbook_ledger', 'credit_note_lines') }} c
    join notes n using (credit_note_id)
    join lines l on l.line_id = c.line_id
),

-- the credited lines' own schedules: a line's days, or a discount's parts (line, day)
schedule as (
    select line_id, cast(null as varchar) as reduces_line_id, revenue_date, amount_minor
    from {{ ref('int_revenue_line_days') }}
    where amount_minor <> 0 and line_id in (select line_id from credited)
    union all
    select line_id, reduces_line_id, revenue_date, amount_minor
    from {{ ref('int_revenue_reductions') }}
    where amount_minor <> 0 and line_id in (select line_id from credited)
),

cumulative as (
    select
        line_id,
        reduces_line_id,
        revenue_date,
        amount_minor as weight,
        sum(amount_minor) over (
            partition by line_id order by revenue_date, reduces_line_id rows unbounded preceding
        ) as upto,
        sum(amount_minor) over (partition by line_id) as whole
    from schedule
),

-- note k's part of each day: what the notes up to it take of the day, less what those before it took
shares as (
    select
        c.credit_note_id,
        c.issued_on,
        d.line_id,
        d.reduces_line_id,
        d.revenue_date,
        {{ revenue_cumulative_part('c.credited_upto', 'd.upto', 'd.weight', 'd.whole') }}
        - {{ revenue_cumulative_part('c.credited_upto - c.credited_minor', 'd.upto', 'd.weight', 'd.whole') }}
            as reversed_minor
    from credited c
    join cumulative d using (line_id)
    where d.whole <> 0
),

final as (
    -- recognized by the note's day: reversed on it
    select credit_note_id, line_id, reduces_line_id, issued_on, issued_on as revenue_date,
           -sum(reversed_minor) as amount_minor
    from shares
    where revenue_date <= issued_on
    group by all
    union all
    -- still deferred: each later day scaled down on its day
    select credit_note_id, line_id, reduces_line_id, issued_on, revenue_date, -reversed_minor
    from shares
    where revenue_date > issued_on
)

select
    credit_note_id,
    line_id,
    reduces_line_id,
    issued_on,
    revenue_date,
    cast(amount_minor as hugeint) as amount_minor
from final
where amount_minor <> 0
