with source as (
    select * from {{ source('meterbook_catalog', 'customers') }}
),

final as (
    select
        customer_id,
        customer_name,
        email,
        parent_id,
        billing_customer_id,
        currency,
        timezone,
        cast(tax_rate as decimal(38, 12)) as tax_rate,
        billable,
        collection_method,
        days_until_due
    from source
)

select * from final
