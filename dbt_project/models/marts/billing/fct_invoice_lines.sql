{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='close_month',
        on_schema_change='fail',
        pre_hook="{{ billing_delete_close_month() }}",
    )
}}

-- Every line of the close month's draft invoices (SPEC 5): the charges of int_billing_lines
-- as they are, then the prepaid-credit lines of SPEC 7 (int_wallet_draws): one
-- `promotional_credit` line per promotional grant drawn (negative, before tax) and one
-- `credit_purchase` line per paid grant bought, numbered after the charges in the seed's
-- rank order. An invoice without credits is exactly its charges.

with lines as (
    select * exclude (usage_key) from {{ ref('int_billing_lines') }}
    where {{ billing_in_close_month('close_month') }}
),

invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

credits as (
    select * from {{ ref('int_wallet_draws') }}
    where record_type = 'line' and {{ billing_in_close_month('close_month') }}
),

last_line as (
    select close_month, invoice_id, max(line_no) as line_no from lines group by all
),

credit_lines as (
    select
        c.close_month,
        c.invoice_id,
        c.line_id,
        cast(coalesce(n.line_no, 0) + row_number() over (
            partition by c.close_month, c.invoice_id order by k.sort_rank, c.seq
        ) as integer) as line_no,
        i.customer_id,
        i.subscription_id,
        i.currency,
        i.currency_exponent,
        c.entry_type as kind,
        c.grant_id as fee_code,
        if(c.entry_type = 'promotional_credit', 'Promotional credit (', 'Prepaid credits bought (')
            || c.grant_id || ')' as description,
        i.period_start,
        i.period_end,
        c.amount,
        c.amount as unrounded_amount,
        false as is_trial
    from credits c
    join invoices i using (close_month, invoice_id)
    left join last_line n using (close_month, invoice_id)
    left join {{ ref('line_kinds') }} k on k.kind = c.entry_type
),

final as (
    select
        close_month, invoice_id, line_id, line_no, customer_id, subscription_id, currency,
        currency_exponent, kind, meter, fee_code, group_key, description, period_start,
        period_end, quantity, billable_quantity, free_units, unit_price, amount,
        unrounded_amount, event_count, tiers, charge_model, plan_version, override_no,
        proration_factor, is_trial, credit_quantity, credit_price
    from (
        select * from lines
        union all by name
        select * from credit_lines
    )
)

select * from final
