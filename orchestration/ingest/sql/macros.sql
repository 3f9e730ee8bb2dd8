-- Temporary macros of the ingest (created per connection by orchestration.defs.ingest.parse).
-- Every one is total: whatever a producer sends, these return a value or NULL and never raise,
-- because an error inside the ingest's transaction would abort the whole run.

-- Blank: empty or only spaces, tabs, CR, LF. Whitespace is at most code 32, so the costly
-- trim only runs on the rare text that starts with one.
create or replace temp macro mbi_blank(s) as case
    when s = '' then true
    when ascii(s) > 32 then false
    else trim(s, ' ' || chr(9) || chr(10) || chr(13)) = ''
end;

-- The text of a JSON string value (NULL for other JSON values). Most strings have no escape,
-- and cutting the quotes off is much cheaper than a JSON parse.
create or replace temp macro mbi_str(j) as case
    when not starts_with(j, '"') then null
    when contains(j, '\') then j ->> '$'
    else substr(j, 2, length(j) - 2)
end;

-- An id field (event_id, customer_id, event_name), read by the JSON parser as text: a string
-- as itself, a number or a boolean as its JSON text. Blank, null, objects and arrays count as
-- missing. Read as text, an object and a string such as a brace GUID ("{3F25...}") both start
-- with '{', so only those texts look the value up again in the record (`doc` at `path`) to
-- learn which it is: reading every id as JSON instead costs the parse about 10%.
create or replace temp macro mbi_id(v, doc, path) as case
    when mbi_blank(v) then null
    when (starts_with(v, '{') or starts_with(v, '['))
        and json_type(doc, path) in ('OBJECT', 'ARRAY') then null
    else v
end;

-- RFC 3339 with an offset. DuckDB's cast is lenient (it takes 2026/10/02, 9:15, 24:00, no
-- offset, +24:00, +02:60 and a fraction point with no digit), so the shape is checked first
-- by position: a date, 'T', hh:mm:ss with hh < 24, a fraction only with digits, then 'Z' or
-- +hh:mm with hh < 24 and mm < 60; the cast then checks the digits and the calendar
-- (2026-10-32 is NULL).
create or replace temp macro mbi_ts_text(s) as case
    when substr(s, 5, 1) = '-' and substr(s, 8, 1) = '-' and substr(s, 11, 1) in ('T', 't', ' ')
        and substr(s, 14, 1) = ':' and substr(s, 17, 1) = ':' and substr(s, 12, 2) < '24'
        and (substr(s, 20, 1) <> '.' or substr(s, 21, 1) between '0' and '9')
        and (ends_with(s, 'Z') or ends_with(s, 'z')
            or (substr(s, -6, 1) in ('+', '-') and substr(s, -3, 1) = ':'
                and substr(s, -5, 2) < '24' and substr(s, -2, 2) < '60'))
    then coalesce(try_cast(s as timestamptz), try_cast(upper(s) as timestamptz))
end;

-- A comma before a closing brace or bracket, outside strings ({"a": 1,}): not JSON, though
-- DuckDB's reader takes it. The cheap search first; strings are blanked only when it hits.
create or replace temp macro mbi_trailing_comma(doc) as
    regexp_matches(doc, ',[ \t\n\r]*[}\]]')
    and regexp_matches(regexp_replace(doc, '"(\\.|[^"\\])*"', '', 'g'), ',[ \t\n\r]*[}\]]');

-- Epoch seconds, or milliseconds from 10^11 on (SPEC 2.2), in exact decimal arithmetic;
-- NaN, 1e30 and anything outside the years 0001-9999 give NULL.
create or replace temp macro mbi_epoch_us(d) as case
    when abs(d) < 100000000000 then cast(round(d * 1000000) as bigint)
    when abs(d) < 1000000000000000 then cast(round(d * 1000) as bigint)
end;
create or replace temp macro mbi_us_ts(us) as case
    when us between -62135596800000000 and 253402300799999999
    then to_timestamp(0) + to_microseconds(us)
end;
create or replace temp macro mbi_ts_number(x) as case
    when starts_with(x, '-') or ascii(x) between 48 and 57  -- a JSON number, not true/false
    then mbi_us_ts(mbi_epoch_us(try_cast(x as decimal(38, 6))))
end;

-- A JSON value that is a number DuckDB could not hold as a finite double (NaN, Infinity,
-- 1e400). The double is only a finiteness test here, never a value that is kept.
create or replace temp macro mbi_nonfinite(v) as
    not (starts_with(v, '"') or v in ('true', 'false') or starts_with(v, '{') or starts_with(v, '['))
    and not coalesce(isfinite(try_cast(v as double)), false);

-- A property value for comparison by value: a number, or a string holding a decimal number,
-- compares as that number ("2" = 2 = 2.0 = 2.50e0; CSV cells are strings), through a decimal
-- with 18 places (values beyond 10^20 compare by their JSON text); other strings and booleans
-- as themselves (the string "true" is not the boolean true).
create or replace temp macro mbi_value_canon(v) as case
    when v in ('true', 'false') then cast(v as varchar)
    else coalesce(
        cast(try_cast(coalesce(mbi_str(v), cast(v as varchar)) as decimal(38, 18)) as varchar),
        cast(v as varchar))
end;

-- payload_hash: event_name, the instant and the properties by value (key order ignored);
-- source is not part of it (SPEC 2.3).
create or replace temp macro mbi_payload_hash(event_name, event_ts, properties) as sha256(
    event_name || chr(31) || cast(epoch_us(event_ts) as varchar) || chr(31)
    || coalesce(array_to_string(list_sort(list_transform(
        map_entries(json_transform(properties, '"MAP(VARCHAR, JSON)"')),
        lambda e: to_json(e.key) || ':' || mbi_value_canon(e.value))), ','),
        -- an object with a repeated key has no map: compare its text
        cast(properties as varchar))
);
