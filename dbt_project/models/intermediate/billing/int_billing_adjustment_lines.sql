-- Late-event adjustments (SPEC 2.4, ARCHITECTURE.md): each row of adjustment_lines for the
-- close month becomes an `adjustment` line on its subscription's invoice of the month (the
-- latest period when there are several). Amounts arrive rounded; they count in the subtotal
-- and tax but never in discounts, minimums or caps.

with adjustments as (
    select * from {{ ref('stg_billing__adjustment_lines') }}
    where {{ billing_in_close_month('close_month') }}
),

invoices as (
    select
        *,
        row_number() over (
            partition by close_month, subscription_id order by period_start desc
        ) as latest
    from {{ ref('int_billing_invoices') }}
),

final as (
    select
        a.close_month,
        i.invoice_id,
        a.line_id,
        'adjustment' as kind,
        a.meter as meter_code,
        cast(a.group_key as json) as group_key,
        a.description,
        a.period_start,
        a.period_end,
        cast(a.quantity as decimal(38, 12)) as quantity,
        {{ billing_round_money('a.amount', 'i.currency_exponent') }} as amount,
        cast(a.amount as decimal(38, 12)) as unrounded_amount
    from adjustments a
    join invoices i
        on i.close_month = a.close_month and i.subscription_id = a.subscription_id and i.latest = 1
)

select * from final
