with source as (
    select * from {{ source('meterbook_billing', 'prior_fee_lines') }}
),

final as (
    select
        close_month,
        invoice_id,
        fee_code,
        amount
    from source
)

select * from final
