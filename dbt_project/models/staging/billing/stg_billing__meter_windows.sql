with source as (
    select * from {{ source('meterbook_billing', 'meter_windows') }}
),

final as (
    select
        close_month,
        window_id,
        billing_customer_id,
        cast(window_start as {{ mb_timestamptz() }}) as window_start,
        cast(window_end as {{ mb_timestamptz() }}) as window_end
    from source
)

select * from final
