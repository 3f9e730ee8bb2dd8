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

{# The aggregates every meter's quantity is picked from (per day, or per window): which one
   applies is the meter's aggregation. latest: the last by timestamp, the larger event_id on a
   tie (read_seq: determinism). #}
{% macro metering_aggregates(latest_alias) -%}
count(*) as event_count,
        sum(value) as value_sum,
        max(value) as value_max,
        min(value) as value_min,
        count(distinct text_value) as distinct_count,
        arg_max(value, (event_ts, event_id, read_seq)) as {{ latest_alias }}
{%- endmacro %}
