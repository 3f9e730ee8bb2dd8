{#
  int_events_fated is built incrementally, by read order (read_seq): a build fates the events
  read since the last one (read_seq above the table's watermark) and recomputes the stored
  events whose key (customer_id, event_id) a new event repeats, because which occurrence is
  first and which a duplicate or conflict is decided over all of them. Every other stored fate
  stays as it is: a fate depends only on its event, its key's other occurrences and the
  catalog's meters, exclusions and customers.

  Those parts of the catalog are fingerprinted; the fingerprint is stored on every fate row,
  and a build whose fingerprint differs from the stored one fates every event again (and says
  so in the dbt log; the usage step says so in its Dagster metadata).
#}

{# What the next build of `relation` (int_events_fated) does: {'full': bool, 'after': the
   read_seq above which events are fated (0 for a full build), 'fingerprint', 'reason'}.
   Read once when the model compiles and once when its pre-hook renders, both before either
   changes anything, so the two agree. #}
{% macro fates_build_plan(relation) %}
  {%- set fingerprint = metering_catalog_fingerprint() -%}
  {%- if not execute or not is_incremental() -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint, 'reason': 'first build'}) }}
  {%- endif -%}
  {%- if target.type == 'spark' -%}
    {{ return(fates_spark_plan(relation, fingerprint)) }}
  {%- endif -%}
  {%- set stored = run_query(
      'select catalog_fingerprint, (select coalesce(max(read_seq), 0) from ' ~ relation ~ ')'
      ~ ' from ' ~ relation ~ ' limit 1').rows -%}
  {%- if not stored -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint, 'reason': 'no fates stored'}) }}
  {%- endif -%}
  {%- if stored[0][0] != fingerprint -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint,
               'reason': 'the catalog\'s meters, exclusions or customers changed'}) }}
  {%- endif -%}
  {{ return({'full': false, 'after': stored[0][1] | int, 'fingerprint': fingerprint,
             'reason': 'events read after read_seq ' ~ stored[0][1]}) }}
{% endmacro %}

{# A digest of everything a fate or a metered value depends on besides the event: every
   column of the meters, the exclusions, which customers exist and whom they bill, and the
   fates model's own SQL (a new meterbook version that fates differently rebuilds). #}
{% macro metering_catalog_fingerprint() %}
  {%- if not execute -%}
    {{ return('') }}
  {%- endif -%}
  {%- set query -%}
    select md5(concat_ws('#',
        (select {{ mb_ordered_text_agg(mb_row_text('m'), 'meter_seq') }}
         from {{ ref('stg_catalog__meters') }} as m),
        (select {{ mb_ordered_text_agg(mb_row_text('x'), 'exclusion_seq') }}
         from {{ ref('stg_catalog__exclusions') }} as x),
        (select {{ mb_ordered_text_agg(
                    "concat(customer_id, '>', coalesce(billing_customer_id, ''))", 'customer_id') }}
         from {{ ref('stg_catalog__customers') }}),
        '{{ local_md5(model.raw_code) }}'
    ))
  {%- endset -%}
  {{ return(run_query(query).rows[0][0]) }}
{% endmacro %}

{# The stored fates a build replaces: every fate for a full build, else those of the stored
   occurrences of the keys the new events repeat. A pre-hook; nothing on a first build. #}
{% macro fates_delete_replaced(relation) %}
  {%- if is_incremental() -%}
    {%- set plan = fates_build_plan(relation) -%}
    {%- if plan['full'] -%}
      delete from {{ relation }}
    {%- else -%}
      delete from {{ relation }}
      where read_seq in ({{ fates_recomputed_read_seqs(plan['after']) }})
    {%- endif -%}
  {%- endif -%}
{% endmacro %}

{# read_seq of the stored occurrences (at or below `after`) of keys that an event read after
   `after` repeats: repeated_events carries the key, so no stored raw event is read. #}
{% macro fates_recomputed_read_seqs(after) -%}
    select stored.read_seq
    from {{ ref('stg_meterbook__repeated_events') }} as stored
    semi join (
        select customer_id, event_id
        from {{ ref('stg_meterbook__repeated_events') }}
        where read_seq > {{ after }}
    ) as repeated_now using (customer_id, event_id)
    where stored.read_seq <= {{ after }}
{%- endmacro %}

{#
  Where the usage stage's data tests start: the read_seq above which this build's rows lie,
  so that each build checks what it added (every event ever read is checked once, by the build
  that read it). METERBOOK_VERIFY_ALL=1 (`meterbook verify`) checks everything.
  Rendered when a test runs: before int_events_fated is built in this invocation, its
  watermark is the last build's; after, the build records where it started (fated_after).
#}
{% macro usage_checks_from() %}
  {%- if not execute or env_var('METERBOOK_VERIFY_ALL', '') == '1' -%}
    {{ return(0) }}
  {%- endif -%}
  {#- found through the graph, not ref(): tests of the models upstream of the fates use it,
      and a ref would make the fates their parent -#}
  {%- set node = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
      | selectattr('name', 'equalto', 'int_events_fated') | first -%}
  {%- set fates = adapter.get_relation(
      database=node.database, schema=node.schema, identifier=node.alias or node.name) -%}
  {%- if fates is none -%}
    {{ return(0) }}
  {%- endif -%}
  {%- set row = run_query(
      "select coalesce((select min(fated_after) from " ~ fates
      ~ " where fated_in = '" ~ invocation_id ~ "'), (select max(read_seq) from " ~ fates
      ~ "), 0)").rows[0] -%}
  {{ return(row[0] | int) }}
{% endmacro %}

{# dbt's own macro, overridden as its documentation suggests: a test's `where` config is
   fixed at parse time, so the placeholder __usage_checks_from__ stands for
   usage_checks_from(), resolved when the test runs. #}
{% macro get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}
    {%- if '__usage_checks_from__' in where -%}
      {%- set where = where | replace('__usage_checks_from__', usage_checks_from() | string) -%}
    {%- endif -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') }}
  {%- else -%}
    {{ return(relation) }}
  {%- endif -%}
{%- endmacro %}

{#
  On Spark (settings.warehouse: spark) the fates are rebuilt by event day: the hand-off
  (orchestration/defs/dbt/spark_stage.py) names the days of the events DuckDB's fates do not
  have yet, and the read_seq they start after (`fates`: {after, days}; a day null: events
  without a timestamp). Those days are rebuilt whole and overwrite their partitions; every
  other day's fates stay, as they depend only on their own events, the other occurrences of
  their keys (read with them) and the fingerprinted catalog. No days named (DuckDB holds no
  fates), no fates stored, or another fingerprint: every event.
#}
{% macro fates_spark_plan(relation, fingerprint) %}
  {%- set handed = mb_spark_handoff().get('fates') -%}
  {%- if handed is none -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint,
               'reason': 'the warehouse holds no fates'}) }}
  {%- endif -%}
  {%- set stored = run_query('select catalog_fingerprint from ' ~ relation ~ ' limit 1').rows -%}
  {%- if not stored -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint, 'reason': 'no fates stored'}) }}
  {%- endif -%}
  {%- if stored[0][0] != fingerprint -%}
    {{ return({'full': true, 'after': 0, 'fingerprint': fingerprint,
               'reason': 'the catalog\'s meters, exclusions or customers changed'}) }}
  {%- endif -%}
  {{ return({'full': false, 'after': handed['after'] | int, 'days': handed['days'],
             'fingerprint': fingerprint,
             'reason': (handed['days'] | length) ~ ' days of the events read after read_seq '
                       ~ handed['after']}) }}
{% endmacro %}

{# `date_sql` (a date) on one of `days` ('YYYY-MM-DD' texts; none: no date). No day is
   `1 = 0`, not `false`: Spark 4.3 reads `t where (false)` as an alias of t with a column
   list (ASSIGNMENT_ARITY_MISMATCH). #}
{% macro fates_on_days(date_sql, days) -%}
  {%- set dated = days | reject('none') | list -%}
  ({%- if dated %}{{ date_sql }} in ({% for day in dated %}date '{{ day }}'{{ ', ' if not loop.last }}{% endfor %}){% else %}1 = 0{% endif %}
  {%- if none in days %} or {{ date_sql }} is null{% endif %})
{%- endmacro %}

{# read_seq of every occurrence of the repeated keys of events on `days`, whatever their day. #}
{% macro fates_occurrences_of_keys_on_days(days) -%}
    select other.read_seq
    from {{ ref('stg_meterbook__repeated_events') }} as other
    inner join (
        select distinct mine.customer_id, mine.event_id
        from {{ ref('stg_meterbook__repeated_events') }} as mine
        inner join {{ ref('stg_meterbook__raw_events') }} as raw on raw.read_seq = mine.read_seq
        where {{ fates_on_days(mb_utc_date('raw.event_ts'), days) }}
    ) as keys_on_days
        on other.customer_id = keys_on_days.customer_id and other.event_id = keys_on_days.event_id
{%- endmacro %}
