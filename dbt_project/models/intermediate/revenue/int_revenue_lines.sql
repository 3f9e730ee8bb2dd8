-- Every line of every finalized invoice, with what recognizing it needs (SPEC 8): the day it
-- is billed (the invoice's period_end), its revenue rule (seed line_kinds), the customer's
-- time zone, its meter's aggregation and the last raw event the invoice was built from (so
-- events that arrive later never move an invoice's revenue between days). Drafts never post.

with invoices as (
    select * from {{ source('meterbook_ledger', 'invoices') }}
),

lines as (
    select * from {{ source('meterbook_ledger', 'invoice_lines') }}
),

finalizations as (
    select close_month, finalized_at, max(raw_read_seq) as raw_read_seq
    from {{ source('meterbook_ledger', 'period_finalizations') }}
    group by all
),

voids as (
    select invoice_id, min(changed_at) as voided_at
    from {{ source('meterbook_ledger', 'invoice_status_changes') }}
    where status = 'void'
    group by all
),

kinds as (
    select kind, sort_rank, revenue_rule, charge_group from {{ ref('line_kinds') }}
),

customers as (
    select customer_id, timezone from {{ ref('stg_catalog__customers') }}
),

meters as (
    select meter_code, aggregation from {{ ref('stg_catalog__meters') }}
),

final as (
    select
        i.close_month,
        i.invoice_id,
        l.line_id,
        l.position,
        l.kind,
        k.revenue_rule,
        k.charge_group,
        i.customer_id,
        i.subscription_id,
        i.currency,
        i.currency_exponent,
        coalesce(c.timezone, 'UTC') as timezone,
        l.meter,
        m.aggregation,
        cast(l.group_key as varchar) as group_key,
        l.fee_code,
        -- discount lines say what they apply to ("… % of usage)"); the catalog may have
        -- changed since, the frozen line has not
        coalesce(
            nullif(regexp_extract(l.description, '% of (usage|fixed_fees|all)\)$', 1), ''), 'all'
        ) as discount_applies_to,
        l.period_start,
        l.period_end,
        i.period_start as invoice_period_start,
        i.period_end as billed_on,
        l.amount,
        {{ revenue_to_minor('l.amount', 'i.currency_exponent') }} as amount_minor,
        f.raw_read_seq,
        cast(timezone(coalesce(c.timezone, 'UTC'), v.voided_at) as date) as voided_on
    from lines l
    join invoices i using (invoice_id)
    -- a kind missing from the seed keeps its line (no rule: no schedule, and the revenue
    -- check that every line's schedule sums to its amount fails on it)
    left join kinds k on k.kind = l.kind
    left join customers c on c.customer_id = i.customer_id
    left join meters m on m.meter_code = l.meter
    left join finalizations f on f.close_month = i.close_month and f.finalized_at = i.finalized_at
    left join voids v on v.invoice_id = i.invoice_id
)

select * from final
