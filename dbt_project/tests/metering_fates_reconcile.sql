{{ config(meta={"dagster": {"ref": {"name": "fct_event_fates"}}}) }}
-- depends_on: {{ ref('fct_event_fates') }}
-- (not read: the ref makes the asset this test is attached to one of its parents, which is
-- what dagster-dbt needs to show it as an asset check instead of a bare observation)
-- lines read = sum of fates: every raw event has exactly one fate. Counted on the fates table
-- that fct_event_fates reads (the view adds only the raw event's own columns, joined on
-- read_seq), so the proof does not pay for that join over every event. Each build proves it
-- for the events it read (usage_checks_from); `meterbook verify` for every event.
{%- set checked_from = usage_checks_from() %}
with raw as (
    select count(*) as n from {{ ref('stg_meterbook__raw_events') }}
    where read_seq > {{ checked_from }}
),

fated as (
    select count(*) as n
    from {{ ref('int_events_fated') }}
    where read_seq > {{ checked_from }}
),

-- read_seqs fated more than once. A GROUP BY, not count(distinct): DuckDB spills a grouping
-- to disk, while a distinct count holds every key in memory (out of memory at 100M events)
fated_twice as (
    select count(*) as n from (
        select read_seq
        from {{ ref('int_events_fated') }}
        where read_seq > {{ checked_from }}
        group by read_seq
        having count(*) > 1
    )
)

select raw.n as lines_read, fated.n as fated, fated_twice.n as read_seqs_fated_twice
from raw, fated, fated_twice
where raw.n <> fated.n or fated_twice.n > 0
