-- One row per draft invoice of the close month: the subscription periods the calendar
-- (billing_windows.py) chose, plus one invoice per subscription that has adjustment lines
-- but no period ending this month, so that no adjustment is ever lost.

with periods as (
    select * from {{ ref('stg_billing__invoice_periods') }}
    where {{ billing_in_close_month('close_month') }}
),

adjustments as (
    select distinct close_month, subscription_id
    from {{ ref('stg_billing__adjustment_lines') }}
    where {{ billing_in_close_month('close_month') }}
),

subscriptions as (
    select * from {{ ref('stg_catalog__subscriptions') }}
),

adjustment_only as (
    select
        a.close_month,
        'inv_' || left(sha256(a.subscription_id || '|adjustments|' || a.close_month), 24) as invoice_id,
        a.subscription_id,
        s.customer_id,
        s.plan_code,
        s.currency,
        s.currency_exponent,
        s.tax_rate,
        s.timezone,
        cast(a.close_month || '-01' as date) as period_start,
        cast(cast(a.close_month || '-01' as date) + interval 1 month as date) as period_end,
        cast(a.close_month || '-01' as date) as full_period_start,
        cast(cast(a.close_month || '-01' as date) + interval 1 month as date) as full_period_end,
        cast(null as date) as next_period_start,
        cast(null as date) as next_period_end,
        cast(null as integer) as period_number,
        false as is_first_period
    from adjustments a
    join subscriptions s using (subscription_id)
    where not exists (
        select 1 from periods p
        where p.close_month = a.close_month and p.subscription_id = a.subscription_id
    )
),

final as (
    select * from periods
    union all by name
    select * from adjustment_only
)

select * from final
