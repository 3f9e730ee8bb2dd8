{#
  Every raw event with exactly one fate and reason, checks in SPEC 2.3 order. The catalog's
  compiled SQL (meters.match_sql and value_sql, exclusions.condition_sql) is spliced in per
  meter / value expression / rule; see macros/metering_catalog.sql for where it comes from.
  Incremental by read order (macros/usage_incremental.sql): a build fates the events read
  since the last one, plus the stored occurrences of the keys they repeat. On Spark, whose
  Parquet tables cannot delete rows, by event day instead: a build overwrites the days of the
  events read since DuckDB's last fates (insert_overwrite of those partitions), also in the
  Spark stage's runs with --full-refresh, which are for the other models.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy=('insert_overwrite' if target.type == 'spark' else 'append'),
        partition_by=(['event_date'] if target.type == 'spark' else none),
        on_schema_change='fail',
        pre_hook=("" if target.type == 'spark' else "{{ fates_delete_replaced(this) }}"),
        full_refresh=(false if target.type == 'spark' else none),
    )
}}
{%- set plan = fates_build_plan(this) -%}
{%- if execute %}{{ log('int_events_fated: ' ~ ('every event (' if plan['full'] else 'incremental (')
    ~ plan['reason'] ~ ')', info=True) }}{% endif -%}
{%- set meters = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') -%}
{%- set exclusions = metering_catalog_rows(ref('stg_catalog__exclusions'), 'exclusion_seq') -%}
{%- set value_meters = meters | selectattr('value_sql') | list -%}

-- every CTE read by both branches of `keyed` is marked not materialized: DuckDB otherwise
-- buffers it first, and `events` buffered is every event with all its columns (at 50M
-- events the model took 90 s that way, 32 s reading the raw events once per branch)
-- the events this build fates: every event, or those read since the last build and the stored
-- occurrences of the keys they repeat (a literal bound on read_seq, the raw events' storage
-- order, so the scan skips the stored row groups)
with fated_now as {{ mb_not_materialized() }} (
    select * from {{ ref('stg_meterbook__raw_events') }}
    {%- if plan.get('days') is not none %}
    -- Spark: every event of the days rebuilt, and the other occurrences of their keys
    where {{ fates_on_days(mb_utc_date('event_ts'), plan['days']) }}
        or read_seq in ({{ fates_occurrences_of_keys_on_days(plan['days']) }})
    {%- elif not plan['full'] %}
    where read_seq > {{ plan['after'] }}
    union all
    select * from {{ ref('stg_meterbook__raw_events') }}
    where read_seq <= {{ plan['after'] }}
        and read_seq in ({{ fates_recomputed_read_seqs(plan['after']) }})
    {%- endif %}
),

events as {{ mb_not_materialized() }} (
    select
        raw.*,
        repeats.read_seq is not null as key_repeated,
        repeats.payload_hash
    from fated_now as raw
    left join {{ ref('stg_meterbook__repeated_events') }} as repeats
        on raw.read_seq = repeats.read_seq
),

customers as {{ mb_not_materialized() }} (
    select customer_id as known_customer_id, billing_customer_id
    from {{ ref('stg_catalog__customers') }}
),

-- one relation, so the compiled SQL's bare column names (properties, event_name,
-- customer_id, source) are never ambiguous
joined as {{ mb_not_materialized() }} (
    select events.*, customers.*
    from events
    left join customers on events.customer_id = customers.known_customer_id
),

-- ingest's own verdicts come first, except bad_property (object / array values), which
-- SPEC 2.3 checks after unknown_customer
checked as {{ mb_not_materialized() }} (
    select
        *,
        case
            when parse_reason in ('malformed', 'missing_field', 'bad_timestamp', 'too_far_in_future')
                then parse_reason
            when known_customer_id is null then 'unknown_customer'
            when parse_reason is not null then parse_reason
            {#- one check per value expression, not per meter: meters that share one (tokens
                by model) have their events valued in one pass over all of them, instead of
                one sparse pass per meter (the benchmark's 10 sum meters of one expression,
                the fates query alone, old and new in turn: 10M events 6.2-7.1 s -> 4.0-4.6 s,
                50M 38-42 s -> 27-28 s). A meter's event is bad_property when it matches
                and its value_sql gives NULL (missing, non-numeric, division by zero, overflow). #}
            {%- for same_value in value_meters | groupby('value_sql') %}
            when ({{ same_value.list | map(attribute='match_sql') | join(' or ') }})
                and {{ same_value.grouper }} is null then 'bad_property'
            {%- endfor %}
        end as reject_reason
    from joined
),

-- a rejected event does not claim its key. Only keys that ingest saw more than once need
-- the window; the other events (nearly all) skip it. The branches are split on ingest's
-- columns only: a filter on reject_reason would be pushed below the projection and evaluate
-- every meter's checks once more per event. Rejected rows of a repeated key are ranked in a
-- partition of their own, so they take no position from the events that count.
keyed as (
    select
        *,
        1 as key_position,
        payload_hash as first_payload_hash
    from checked
    where not key_repeated or parse_reason is not null
    union all
    select
        *,
        row_number() over key_order as key_position,
        first_value(payload_hash) over key_order as first_payload_hash
    from checked
    where key_repeated and parse_reason is null
    window key_order as (
        partition by customer_id, event_id, reject_reason is null order by read_seq
    )
),

matched as (
    select
        keyed.*,
        cast(case
            {%- for rule in exclusions %}
            when {{ rule['condition_sql'] }} then {{ rule['exclusion_seq'] }}
            {%- endfor %}
            when false then null
        end as integer) as exclusion_seq,
        (false
            {%- for meter in meters %}
            or {{ meter['match_sql'] }}
            {%- endfor %}
        ) as is_metered
    from keyed
),

fated as (
    select
        matched.*,
        case
            when reject_reason is not null then 'rejected'
            when key_position > 1 and payload_hash = first_payload_hash then 'duplicate'
            when key_position > 1 then 'conflict'
            when exclusion_seq is not null then 'excluded'
            when is_metered then 'billable'
            else 'unmetered'
        end as fate
    from matched
),

exclusions as (
    select exclusion_seq, exclusion_reason from {{ ref('stg_catalog__exclusions') }}
),

-- narrow on purpose: storing every event's columns once more (properties, ids, file) cost as
-- much as computing the fates; fct_event_fates and int_events_metered join back to the raw
-- events on read_seq for them
final as (
    select
        fated.read_seq,
        fated.billing_customer_id,
        {{ mb_utc_date('fated.event_ts') }} as event_date,
        fated.fate,
        case fated.fate
            when 'rejected' then fated.reject_reason
            when 'excluded' then exclusions.exclusion_reason
            when 'duplicate' then 'same_payload'
            when 'conflict' then 'different_payload'
        end as reason,
        -- the same on every row of a build (stored nearly free): what the build assumed
        '{{ plan['fingerprint'] }}' as catalog_fingerprint,
        '{{ invocation_id }}' as fated_in,
        cast({{ plan['after'] }} as bigint) as fated_after
    from fated
    left join exclusions on fated.exclusion_seq = exclusions.exclusion_seq
)

-- stored in read order, as incremental builds append: a month's events are then found from
-- the row groups' min and max (read_seq, event_date), without reading other months' rows
select * from final
{%- if plan.get('days') is not none %}
-- only the days rebuilt: a row of another day would overwrite that day's partition alone
where {{ fates_on_days('event_date', plan['days']) }}
{%- endif %}
order by read_seq
