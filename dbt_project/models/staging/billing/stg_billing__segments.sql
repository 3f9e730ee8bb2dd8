with source as (
    select * from {{ source('meterbook_billing', 'segments') }}
),

final as (
    select
        close_month,
        invoice_id,
        period_role,
        segment_no,
        window_id,
        segment_start,
        segment_end,
        plan_code,
        version,
        is_trial,
        days,
        period_days
    from source
)

select * from final
