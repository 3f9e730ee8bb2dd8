{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='revenue_month',
        on_schema_change='fail',
        pre_hook=[
            "{{ revenue_add_columns({'recognized_credited': 'decimal(38, 12)', 'deferred_credited': 'decimal(38, 12)'}) }}",
            "{{ revenue_delete_months() }}",
        ],
    )
}}

-- The revenue roll-forward per calendar month, customer and currency (SPEC 8): recognized
-- revenue, deferred revenue (opening + billed in advance - recognized - breakage - credited =
-- closing; `deferred_recognized` includes paid credits drawn, `deferred_credited` is what
-- credit notes took out of it) and unbilled revenue (opening + recognized - invoiced =
-- closing). `recognized_credited` is the revenue credit notes reversed in the month, already
-- netted in `recognized`. Kept month by month: the partition's month is replaced. The two
-- credited columns came last, so a table built before them is given them (0) in place.

with movements as (
    select * from {{ ref('int_revenue_movements') }}
),

months as (
    {{ revenue_months(ref('int_revenue_movements')) }}
),

per_month as (
    select
        strftime(m.month_start, '%Y-%m') as revenue_month,
        v.customer_id,
        v.currency,
        sum(case when v.day < m.month_start then v.deferred_billed - v.deferred_recognized - v.breakage - v.deferred_credited else 0 end) as deferred_opening,
        sum(case when v.day >= m.month_start then v.deferred_billed else 0 end) as deferred_billed,
        sum(case when v.day >= m.month_start then v.deferred_recognized else 0 end) as deferred_recognized,
        sum(case when v.day >= m.month_start then v.breakage else 0 end) as deferred_breakage,
        sum(case when v.day < m.month_start then v.unbilled_recognized - v.unbilled_invoiced else 0 end) as unbilled_opening,
        sum(case when v.day >= m.month_start then v.unbilled_recognized else 0 end) as unbilled_recognized,
        sum(case when v.day >= m.month_start then v.unbilled_invoiced else 0 end) as unbilled_invoiced,
        sum(case when v.day >= m.month_start then v.recognized else 0 end) as recognized,
        sum(case when v.day >= m.month_start then v.recognized_credited else 0 end) as recognized_credited,
        sum(case when v.day >= m.month_start then v.deferred_credited else 0 end) as deferred_credited
    from months m
    join movements v on v.day < m.month_end
    group by all
)

select
    revenue_month,
    customer_id,
    currency,
    cast(recognized as decimal(38, 12)) as recognized,
    cast(deferred_opening as decimal(38, 12)) as deferred_opening,
    cast(deferred_billed as decimal(38, 12)) as deferred_billed,
    cast(deferred_recognized as decimal(38, 12)) as deferred_recognized,
    cast(deferred_breakage as decimal(38, 12)) as deferred_breakage,
    cast(deferred_opening + deferred_billed - deferred_recognized - deferred_breakage - deferred_credited as decimal(38, 12)) as deferred_closing,
    cast(unbilled_opening as decimal(38, 12)) as unbilled_opening,
    cast(unbilled_recognized as decimal(38, 12)) as unbilled_recognized,
    cast(unbilled_invoiced as decimal(38, 12)) as unbilled_invoiced,
    cast(unbilled_opening + unbilled_recognized - unbilled_invoiced as decimal(38, 12)) as unbilled_closing,
    cast(recognized_credited as decimal(38, 12)) as recognized_credited,
    cast(deferred_credited as decimal(38, 12)) as deferred_credited
from per_month
where recognized <> 0 or deferred_opening <> 0 or deferred_billed <> 0 or deferred_recognized <> 0
   or deferred_breakage <> 0 or unbilled_opening <> 0 or unbilled_recognized <> 0 or unbilled_invoiced <> 0
   or recognized_credited <> 0 or deferred_credited <> 0
