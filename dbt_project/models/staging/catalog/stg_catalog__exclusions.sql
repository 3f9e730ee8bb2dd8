with source as (
    select * from {{ source('meterbook_catalog', 'exclusions') }}
),

final as (
    select
        exclusion_seq,
        reason as exclusion_reason,
        event_name,
        property,
        field,
        op,
        operand,
        condition_sql
    from source
)

select * from final
