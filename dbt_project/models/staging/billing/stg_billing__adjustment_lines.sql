with source as (
    select * from {{ source('meterbook_billing', 'adjustment_lines') }}
),

final as (
    select
        close_month,
        subscription_id,
        line_id,
        meter,
        group_key,
        description,
        period_start,
        period_end,
        quantity,
        amount
    from source
)

select * from final
