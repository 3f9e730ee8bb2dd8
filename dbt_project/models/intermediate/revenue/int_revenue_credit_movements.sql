-- What happens to the paid credits a credit_purchase line sold (SPEC 7, 8): they are deferred
-- when billed, and leave deferred revenue as the wallet draws them (paying invoices whose
-- lines are recognized by their own rules), as they expire (breakage revenue, on the expiry
-- date), or when the grant is voided. From permanent wallet entries only. A periodic grant's
-- rollover (`<grant>:rollover`) is the same credits, so it follows its purchase.

with entries as (
    select
        customer_id,
        regexp_replace(grant_id, ':rollover$', '') as bought_grant_id,
        entry_id,
        entry_type,
        entry_date,
        -amount as amount
    from {{ source('meterbook_ledger', 'wallet_entries') }}
    where grant_kind = 'paid' and entry_type in ('draw', 'expire', 'void')
),

purchases as (
    select * from {{ ref('int_revenue_lines') }}
    where revenue_rule = 'deferred_until_drawn'
)

select
    p.line_id,
    e.entry_id,
    case e.entry_type when 'draw' then 'drawn' when 'expire' then 'breakage' else 'voided' end as row_type,
    e.entry_date as revenue_date,
    {{ revenue_to_minor('e.amount', 'p.currency_exponent') }} as amount_minor
from entries e
join purchases p on p.customer_id = e.customer_id and p.fee_code = e.bought_grant_id
where e.amount <> 0
