with source as (
    select * from {{ source('meterbook_catalog', 'meters') }}
),

final as (
    select
        meter_seq,
        meter_code,
        meter_name,
        event_name,
        aggregation,
        expression,
        group_by,
        cast(unit_divide_by as decimal(38, 12)) as unit_divide_by,
        unit_rounding,
        match_sql,
        value_sql,
        text_value_sql,
        group_key_sql
    from source
)

select * from final
