with source as (
    select * from {{ source('meterbook', 'landing_files') }}
),

final as (
    select
        file_sha256,
        path,
        format as file_format,
        cast(size_bytes as bigint) as size_bytes,
        cast(file_seq as bigint) as file_seq,
        cast(ingested_at as {{ mb_timestamptz() }}) as ingested_at,
        cast(lines_read as bigint) as lines_read,
        error as file_error
    from source
)

select * from final
