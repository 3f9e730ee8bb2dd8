-- every line read, typed; raw_line is left out (it is only for people looking at one event)
with source as (
    select * from {{ source('meterbook', 'raw_events') }}
),

final as (
    select
        cast(read_seq as bigint) as read_seq,
        cast(file_seq as bigint) as file_seq,
        path,
        cast(line_no as bigint) as line_no,
        event_id,
        customer_id,
        event_name,
        cast(event_ts as {{ mb_timestamptz() }}) as event_ts,
        cast(properties as {{ mb_json() }}) as properties,
        source,
        parse_reason,
        cast(ingested_at as {{ mb_timestamptz() }}) as ingested_at
    from source
)

select * from final
