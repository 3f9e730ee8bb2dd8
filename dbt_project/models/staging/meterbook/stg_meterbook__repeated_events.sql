-- parsed events whose key (customer_id, event_id) is repeated; any other parsed event has
-- key_rank 1 and no payload_hash (nothing to compare it with)
with source as (
    select * from {{ source('meterbook', 'repeated_events') }}
),

final as (
    select
        cast(read_seq as bigint) as read_seq,
        cast(key_rank as integer) as key_rank,
        payload_hash,
        customer_id,
        event_id
    from source
)

select * from final
