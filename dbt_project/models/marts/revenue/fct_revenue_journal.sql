{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='revenue_month',
        on_schema_change='fail',
        pre_hook="{{ revenue_delete_months() }}",
    )
}}

-- The revenue journal (SPEC 8): double-entry lines per day, currency and account role, for a
-- general ledger. Each entry balances on its own (debits = credits):
--   invoice          Dr receivable; Cr unbilled (what was recognized before), Cr deferred (the rest)
--   tax              Dr receivable; Cr tax payable
--   revenue          Dr unbilled (recognized before it is invoiced) or deferred; Cr revenue
--   breakage         Dr deferred (or unbilled, before the credits are billed); Cr breakage revenue
--   credits_applied  Dr deferred; Cr receivable (paid credits paying an invoice, or voided)
--   credit_note      Dr revenue (what its lines had recognized up to its date), Dr deferred
--                    (what was still deferred), Dr tax payable (its tax); Cr receivable (its
--                    total: whatever the settlement, the customer's balance is what it lowers)
-- A credit note's lines then recognize less on their later days (revenue entries, netted with
-- the days' own). A voided invoice's reversal is the same entries with the opposite sign, for
-- what its lines and tax still stood for after its credit notes. Amounts are netted per day,
-- currency, entry and account; a positive net is a debit, a negative one a credit.
-- Account roles become names in settings.accounts when exported (orchestration/billing/revenue).

with schedule as (
    select * from {{ ref('fct_revenue_schedule') }}
),

billings as (
    select * from {{ ref('fct_revenue_billings') }}
),

kinds as (
    select kind, charge_group from {{ ref('line_kinds') }}
),

credit_notes as (
    select credit_note_id, invoice_id, currency, issued_on, tax_total
    from {{ source('meterbook_ledger', 'credit_notes') }}
),

invoices as (
    select i.invoice_id, i.customer_id, i.currency, i.period_end as billed_on, i.tax_total,
           i.tax_total - coalesce(n.tax_total, 0) as tax_left,
           cast(timezone(coalesce(c.timezone, 'UTC'), v.changed_at) as date) as voided_on
    from {{ source('meterbook_ledger', 'invoices') }} i
    left join (
        select invoice_id, sum(tax_total) as tax_total from credit_notes group by all
    ) n on n.invoice_id = i.invoice_id
    left join {{ ref('stg_catalog__customers') }} c on c.customer_id = i.customer_id
    left join (
        select invoice_id, min(changed_at) as changed_at
        from {{ source('meterbook_ledger', 'invoice_status_changes') }}
        where status = 'void' group by all
    ) v on v.invoice_id = i.invoice_id
),

schedule_legs as (
    select
        *,
        -- a credit note's reversal of what its line had recognized up to its date
        case when credit_note_id is not null and revenue_date = billed_on then 'credit_note' else 'revenue' end as entry
    from schedule
),

billing_legs as (
    select *, case when credit_note_id is null then 'invoice' else 'credit_note' end as entry
    from billings
),

legs as (
    -- invoice (and what a credit note credits of it, negated)
    select billed_on as entry_date, currency, entry, 'receivable' as account_role, amount as amount from billing_legs
    union all
    select billed_on, currency, entry, 'unbilled', -unbilled_part from billing_legs
    union all
    select billed_on, currency, entry, 'deferred_revenue', -(amount - unbilled_part) from billing_legs
    -- tax
    union all
    select billed_on, currency, 'tax', 'receivable', tax_total from invoices
    union all
    select billed_on, currency, 'tax', 'tax_payable', -tax_total from invoices
    union all
    select voided_on, currency, 'tax', 'receivable', -tax_left from invoices where voided_on is not null
    union all
    select voided_on, currency, 'tax', 'tax_payable', tax_left from invoices where voided_on is not null
    union all
    select issued_on, currency, 'credit_note', 'receivable', -tax_total from credit_notes
    union all
    select issued_on, currency, 'credit_note', 'tax_payable', tax_total from credit_notes
    -- revenue (and a credit note's reversal of what was recognized up to its date)
    union all
    select revenue_date, currency, entry,
           case when revenue_date < billed_on then 'unbilled' else 'deferred_revenue' end, amount
    from schedule_legs s where row_type = 'revenue'
    union all
    select s.revenue_date, s.currency, s.entry,
           case when k.charge_group = 'fixed_fees' then 'revenue_fees' else 'revenue_usage' end, -s.amount
    from schedule_legs s left join kinds k on k.kind = s.revenue_kind
    where s.row_type = 'revenue'
    -- breakage
    union all
    select revenue_date, currency, 'breakage',
           case when revenue_date < billed_on then 'unbilled' else 'deferred_revenue' end, amount
    from schedule where row_type = 'breakage'
    union all
    select revenue_date, currency, 'breakage', 'breakage', -amount from schedule where row_type = 'breakage'
    -- paid credits leaving deferred revenue for the receivable they pay (or taken back)
    union all
    select revenue_date, currency, 'credits_applied', 'deferred_revenue', amount from schedule where row_type in ('drawn', 'voided')
    union all
    select revenue_date, currency, 'credits_applied', 'receivable', -amount from schedule where row_type in ('drawn', 'voided')
),

months as (
    {{ revenue_months(ref('int_revenue_movements')) }}
),

netted as (
    select
        strftime(m.month_start, '%Y-%m') as revenue_month,
        l.entry_date,
        l.currency,
        l.entry,
        l.account_role,
        sum(l.amount) as net
    from legs l
    join months m on l.entry_date >= m.month_start and l.entry_date < m.month_end
    group by all
)

select
    revenue_month,
    entry_date,
    currency,
    entry,
    account_role,
    cast(greatest(net, 0) as decimal(38, 12)) as debit,
    cast(greatest(-net, 0) as decimal(38, 12)) as credit
from netted
where net <> 0
