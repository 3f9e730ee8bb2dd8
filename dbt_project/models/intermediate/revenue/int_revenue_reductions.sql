-- Discounts and promotional credits are recognized with the lines they reduce (SPEC 8): each
-- is split over those lines in proportion to their amounts (cumulative rounding in line
-- order), then each part over its line's days in proportion to what the line recognizes
-- each day. A discount reduces the lines of its `applies_to`; a promotional credit the lines
-- its draws paid (the wallet ledger's charge_line_id). One with nothing to follow (its lines
-- net to zero) is recognized on the last day of its invoice's period.

with lines as (
    select * from {{ ref('int_revenue_lines') }}
),

reducers as (
    select * from lines where revenue_rule = 'with_reduced_lines' and amount_minor <> 0
),

drawn_for as (
    select distinct line_id as reducer_id, charge_line_id as target_id
    from {{ source('meterbook_ledger', 'wallet_entries') }}
    where entry_type = 'draw' and grant_kind = 'promotional' and charge_line_id is not null
),

targets as (
    select r.line_id as reducer_id, t.line_id as target_id, t.position, t.amount_minor
    from reducers r
    join lines t
        on t.invoice_id = r.invoice_id
        and r.kind = 'discount'
        and t.revenue_rule not in ('with_reduced_lines', 'deferred_until_drawn')
        and t.charge_group in ('usage', 'fixed_fees')
        and r.discount_applies_to in ('all', t.charge_group)
    where t.amount_minor <> 0
    union all
    select r.line_id, t.line_id, t.position, t.amount_minor
    from reducers r
    join drawn_for d on d.reducer_id = r.line_id
    join lines t on t.invoice_id = r.invoice_id and t.line_id = d.target_id
    where r.kind = 'promotional_credit' and t.amount_minor <> 0
),

split as (
    select
        reducer_id,
        target_id,
        amount_minor as weight,
        sum(amount_minor) over (partition by reducer_id order by position, target_id rows unbounded preceding) as upto,
        sum(amount_minor) over (partition by reducer_id) as whole
    from targets
),

parts as (
    select
        s.reducer_id,
        s.target_id,
        {{ revenue_cumulative_part('r.amount_minor', 's.upto', 's.weight', 's.whole') }} as part_minor
    from split s
    join reducers r on r.line_id = s.reducer_id
    where s.whole <> 0
),

target_days as (
    select
        line_id as target_id,
        revenue_date,
        amount_minor as weight,
        sum(amount_minor) over (partition by line_id order by revenue_date rows unbounded preceding) as upto,
        sum(amount_minor) over (partition by line_id) as whole
    from {{ ref('int_revenue_line_days') }}
    where amount_minor <> 0
),

followed as (
    select
        p.reducer_id as line_id,
        p.target_id as reduces_line_id,
        d.revenue_date,
        {{ revenue_cumulative_part('p.part_minor', 'd.upto', 'd.weight', 'd.whole') }} as amount_minor
    from parts p
    join target_days d using (target_id)
    where p.part_minor <> 0
),

unfollowed as (
    select r.line_id, cast(null as varchar) as reduces_line_id, cast(r.billed_on - 1 as date) as revenue_date, r.amount_minor
    from reducers r
    where r.line_id not in (select reducer_id from parts)
)

select * from followed
union all
select * from unfollowed
