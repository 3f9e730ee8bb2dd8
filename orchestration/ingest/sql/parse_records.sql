-- One row per record read: the catalog-independent checks of SPEC 2.3, in its order
-- (malformed, missing_field, bad_timestamp, too_far_in_future, bad_property).
-- Input (spliced in by orchestration.defs.ingest.parse, never from event text): a relation of
-- (line_no BIGINT, doc VARCHAR, raw_text VARCHAR), `doc` being the record as JSON text (NULL
-- when it is not even text: invalid UTF-8, a broken CSV record).
-- Parameters: $now TIMESTAMPTZ (for too_far_in_future), $seq_base BIGINT (read_seq = base + line).
with docs as (
    /*DOCS*/
),

parsed as (
    select
        line_no,
        raw_text,
        doc,
        case when (starts_with(doc, '{')
                or starts_with(ltrim(doc, ' ' || chr(9) || chr(10) || chr(13)), '{'))
                and not mbi_trailing_comma(doc)
            then try(json_transform(doc, '{"event_id": "VARCHAR", "customer_id": "VARCHAR",
                "event_name": "VARCHAR", "timestamp": "JSON", "properties": "JSON",
                "source": "JSON", "specversion": "JSON", "id": "VARCHAR", "subject": "VARCHAR",
                "type": "VARCHAR", "time": "JSON", "data": "JSON"}'))
        end as j
    from docs
),

-- CloudEvents 1.0 (specversion present): id, subject, type, time, data, source
fields as (
    select
        line_no,
        raw_text,
        doc,
        j is null as not_an_object,
        j.specversion is not null as cloud_event,
        case when j.specversion is null then j.event_id else j.id end as event_id_text,
        case when j.specversion is null then j.customer_id else j.subject end as customer_id_text,
        case when j.specversion is null then j.event_name else j."type" end as event_name_text,
        case when j.specversion is null then j."timestamp" else j."time" end as ts_json,
        mbi_str(case when j.specversion is null then j."timestamp" else j."time" end) as ts_text,
        case when j.specversion is null then j.properties else j."data" end as props_json,
        j."source" as source_json
    from parsed
),

typed as (
    select
        line_no,
        raw_text,
        not_an_object,
        props_json,
        mbi_id(event_id_text, doc, if(cloud_event, '$.id', '$.event_id')) as event_id,
        mbi_id(customer_id_text, doc, if(cloud_event, '$.subject', '$.customer_id'))
            as customer_id,
        mbi_id(event_name_text, doc, if(cloud_event, '$.type', '$.event_name')) as event_name,
        ts_json is null or mbi_blank(ts_text) as ts_missing,
        case
            when ts_text is not null then mbi_ts_text(ts_text)
            else mbi_ts_number(ts_json)
        end as event_ts,
        coalesce(mbi_str(source_json), cast(source_json as varchar)) as source,
        -- cheap text test first: only objects that may hold a null, a nested or a non-finite
        -- value are taken apart (the JSON text is minified, so this has no false negatives;
        -- a number too large for a double has an exponent or over 300 digits)
        starts_with(props_json, '{') and (
            length(props_json) > 300
            or regexp_matches(props_json, '^\{.*[{\[]|null|NaN|Infinity|[0-9][eE]')
        ) as props_suspect
    from fields
),

props as (
    select
        *,
        -- NULL for an object with a repeated key: it cannot be cleaned, so it is malformed
        -- (one that needs no cleaning is kept as sent; DuckDB reads the first occurrence)
        case when props_suspect then list_filter(
            map_entries(json_transform(props_json, '"MAP(VARCHAR, JSON)"')),
            lambda e: e.value is not null
        ) end as entries
    from typed
),

checked as (
    select
        *,
        case
            when not_an_object
                or (props_json is not null and not starts_with(props_json, '{'))
                or (props_suspect and entries is null)
                then 'malformed'
            when event_id is null or length(event_id) > 200 or customer_id is null
                or event_name is null or ts_missing
                then 'missing_field'
            when event_ts is null then 'bad_timestamp'
            when event_ts > $now + interval 24 hour then 'too_far_in_future'
            when props_suspect and coalesce(list_bool_or(list_transform(entries, lambda e:
                    starts_with(e.value, '{') or starts_with(e.value, '[')
                    or mbi_nonfinite(e.value))), false)
                then 'bad_property'
        end as parse_reason
    from props
),

final as (
    select
        $seq_base + line_no as read_seq,
        line_no,
        event_id,
        customer_id,
        event_name,
        event_ts,
        case
            when parse_reason = 'malformed' then null
            when props_json is null then cast('{}' as json)
            when not props_suspect then props_json
            else cast('{' || array_to_string(
                list_transform(entries, lambda e: to_json(e.key) || ':' || e.value), ',') || '}'
                as json)
        end as properties,
        source,
        parse_reason,
        case when parse_reason is not null
            then left(rtrim(raw_text, chr(13) || chr(10)), 4096)
        end as raw_line
    from checked
)

select * from final
