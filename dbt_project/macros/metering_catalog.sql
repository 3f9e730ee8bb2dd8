{#
  Metering reads the compiled SQL of meters and exclusions from meterbook_catalog at compile
  time. That SQL is written only by orchestration/catalog/tables/metering.py, from the
  validated catalog (names quoted, values as literals, expressions through the safe parser).
  At parse time (execute is false) there are no rows: the model SQL then has no branches.
#}
{% macro metering_catalog_rows(relation, order_by) %}
  {% if not execute %}
    {{ return([]) }}
  {% endif %}
  {% set result = run_query('select * from ' ~ relation ~ ' order by ' ~ order_by) %}
  {{ return(result.rows) }}
{% endmacro %}

{# A var that must be a date 'YYYY-MM-DD', as a SQL date literal; anything else fails. #}
{% macro metering_date_literal(name) %}
  {%- set value = var(name) | string -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
    {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a date YYYY-MM-DD, got " ~ value) }}
  {%- endif -%}
  date '{{ value }}'
{%- endmacro %}

{# The close_month var (checked by billing_close_month) as a SQL string literal, or none. #}
{% macro metering_close_month_literal() %}
  {%- set value = billing_close_month() -%}
  {{ return(none if value is none else "'" ~ value ~ "'") }}
{%- endmacro %}

{#
  meterbook_billing.meter_windows is written by the close stage; a usage-only run must work
  before any close, so the table is created empty when it does not exist (never replaced).
#}
{% macro metering_ensure_meter_windows() %}
create schema if not exists meterbook_billing;
create table if not exists meterbook_billing.meter_windows (
  close_month varchar,
  window_id varchar,
  billing_customer_id varchar,
  window_start timestamptz,
  window_end timestamptz
);
{% endmacro %}

{#
  The span of the metering windows of var close_month (of every month when it is not set), as
  SQL predicates on `column`, read at compile time like the catalog: (from the first window's
  start, before the last window's end), or `false` twice when there is no window. A literal
  bound reaches the scan of the raw events inside int_events_metered; a bound read from a
  subquery does not, and DuckDB then joins and buffers every billable event with its
  properties first (152 s of a 100M-event usage build that had no windows at all).
#}
{% macro metering_window_bounds(column) %}
  {% if not execute %}
    {{ return(('false', 'false')) }}
  {% endif %}
  {%- set month = metering_close_month_literal() -%}
  {%- set query -%}
    select
        strftime(timezone('UTC', min(window_start)), '%Y-%m-%d %H:%M:%S.%f'),
        strftime(timezone('UTC', max(window_end)), '%Y-%m-%d %H:%M:%S.%f')
    from {{ ref('stg_billing__meter_windows') }}
    {%- if month %} where close_month = {{ month }}{% endif %}
  {%- endset -%}
  {%- set row = run_query(query).rows[0] -%}
  {%- if row[0] is none -%}
    {{ return(('false', 'false')) }}
  {%- endif -%}
  {{ return((
      column ~ " >= timestamptz '" ~ row[0] ~ "+00'",
      column ~ " < timestamptz '" ~ row[1] ~ "+00'")) }}
{% endmacro %}

{# The months a fct_period_meter_quantities run recomputes, deleted before it inserts them. #}
{% macro period_quantities_delete_months(relation) %}
  {%- set month = metering_close_month_literal() -%}
  {%- if month -%}
    delete from {{ relation }} where close_month = {{ month }}
  {%- else -%}
    delete from {{ relation }} where close_month in (
        select close_month from {{ ref('stg_billing__meter_windows') }})
  {%- endif -%}
{% endmacro %}

{# Quantity and event count per group of `source`, each meter by its own aggregation:
   one branch per aggregation, each reading only its meters' rows (the filter on the literal
   `aggregation` column of int_events_metered prunes the other meters' branches, so their
   values are never computed). Computing every aggregate for every row made daily usage 2.5x
   as slow (arg_max over a struct and count distinct cost the most). `last_value_for`:
   the aggregations whose quantity is the last value by timestamp (tie: the larger event_id,
   then read_seq for determinism). `source` must be a view or a not-materialized CTE. #}
{% macro metering_quantities(source, group_columns, last_value_for) -%}
{%- set branches = [
    ('count', 'cast(count(*) as decimal(38, 12))'),
    ('sum', 'sum(value)'),
    ('count_unique', 'cast(count(distinct text_value) as decimal(38, 12))'),
    ('max', 'max(value)'),
    ('min', 'min(value)'),
] -%}
{%- for aggregation, quantity in branches %}
    select {{ group_columns }}, count(*) as event_count, {{ quantity }} as quantity
    from {{ source }}
    where aggregation = '{{ aggregation }}'
    group by all
    union all
{%- endfor %}
    select
        {{ group_columns }},
        count(*) as event_count,
        arg_max(value, (event_ts, event_id, read_seq)) as quantity
    from {{ source }}
    where aggregation in ('{{ last_value_for | join("', '") }}')
    group by all
{%- endmacro %}

{# A meter's aggregation as a SQL literal (the catalog admits only the seven names; quoted all
   the same, like every other catalog value spliced into SQL). #}
{% macro metering_aggregation_literal(aggregation) -%}
  '{{ aggregation | replace("'", "''") }}'
{%- endmacro %}
