with source as (
    select * from {{ source('meterbook_entitlements', 'current_windows') }}
),

final as (
    select
        window_id,
        subscription_id,
        billing_customer_id,
        cast(window_start as timestamptz) as window_start,
        cast(window_end as timestamptz) as window_end,
        cast(as_of as timestamptz) as as_of
    from source
)

select * from final
