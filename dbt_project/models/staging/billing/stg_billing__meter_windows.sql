with source as (
    select * from {{ source('meterbook_billing', 'meter_windows') }}
),

final as (
    select
        close_month,
        window_id,
        billing_customer_id,
        cast(window_start as {{ mb_timestamptz() }}) as window_start,
        cast(window_end as {{ mb_timestamptz() }}) as window_end,
        -- the full period of the window's segment (NULL in rows written before it was kept:
        -- the window itself, the old weighting, until the month is closed again)
        cast(coalesce(period_start, window_start) as {{ mb_timestamptz() }}) as period_start,
        cast(coalesce(period_end, window_end) as {{ mb_timestamptz() }}) as period_end
    from source
)

select * from final
