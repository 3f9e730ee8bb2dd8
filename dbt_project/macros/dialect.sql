{#
  Where DuckDB's SQL and Spark SQL differ, one macro each, dispatched on the target's adapter
  (adapter.dispatch): default__ is DuckDB's form (the embedded warehouse), spark__ Spark's.
  The models call these instead of writing either form; no model forks. Spark runs with the
  session time zone UTC and spark.sql.decimalOperations.allowPrecisionLoss=false
  (profiles.yml), which the Spark forms assume.
#}

{# A time zone-aware timestamp: Spark's TIMESTAMP is an instant shown in the session's zone. #}
{% macro mb_timestamptz() -%}{{ adapter.dispatch('mb_timestamptz', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_timestamptz() -%}timestamptz{%- endmacro %}
{% macro spark__mb_timestamptz() -%}timestamp{%- endmacro %}

{# A JSON document: Spark has no JSON type; the meters' Spark SQL reads the text (from_json). #}
{% macro mb_json() -%}{{ adapter.dispatch('mb_json', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_json() -%}json{%- endmacro %}
{% macro spark__mb_json() -%}string{%- endmacro %}

{# A CTE read by several branches and not to be buffered first (DuckDB's hint; Spark inlines
   CTEs unless told otherwise). #}
{% macro mb_not_materialized() -%}{{ adapter.dispatch('mb_not_materialized', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_not_materialized() -%}not materialized{%- endmacro %}
{% macro spark__mb_not_materialized() -%}{%- endmacro %}

{# The UTC calendar day of an instant. #}
{% macro mb_utc_date(ts) -%}{{ adapter.dispatch('mb_utc_date', 'meterbook')(ts) }}{%- endmacro %}
{% macro default__mb_utc_date(ts) -%}cast(timezone('UTC', {{ ts }}) as date){%- endmacro %}
{% macro spark__mb_utc_date(ts) -%}to_date({{ ts }}){%- endmacro %}

{# The texts of `value` over a group's rows, in the order of `order_by`, joined with '|'. #}
{% macro mb_ordered_text_agg(value, order_by) -%}
  {{ adapter.dispatch('mb_ordered_text_agg', 'meterbook')(value, order_by) }}
{%- endmacro %}
{% macro default__mb_ordered_text_agg(value, order_by) -%}
  string_agg({{ value }}, '|' order by {{ order_by }})
{%- endmacro %}
{% macro spark__mb_ordered_text_agg(value, order_by) -%}
  concat_ws('|', transform(array_sort(collect_list(named_struct('k', {{ order_by }}, 'v', {{ value }}))), x -> x.v))
{%- endmacro %}

{# A whole row of relation alias `alias` as one text (for a fingerprint: each engine compares
   only its own). #}
{% macro mb_row_text(alias) -%}{{ adapter.dispatch('mb_row_text', 'meterbook')(alias) }}{%- endmacro %}
{% macro default__mb_row_text(alias) -%}cast({{ alias }} as varchar){%- endmacro %}
{% macro spark__mb_row_text(alias) -%}to_json(struct({{ alias }}.*)){%- endmacro %}

{# What every invocation creates first: DuckDB's exact-decimal macros (decimal.sql). Spark has
   no SQL macros; the meters' Spark SQL writes exact division out (catalog/tables/dialects.py). #}
{% macro mb_on_run_start() -%}{{ adapter.dispatch('mb_on_run_start', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_on_run_start() -%}{{ create_decimal_macros() }}{%- endmacro %}
{% macro spark__mb_on_run_start() -%}{%- endmacro %}

{# Text of any length: Spark's VARCHAR needs a length. #}
{% macro mb_text() -%}{{ adapter.dispatch('mb_text', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_text() -%}varchar{%- endmacro %}
{% macro spark__mb_text() -%}string{%- endmacro %}

{# The instant a UTC calendar day `day` (a DATE) starts. #}
{% macro mb_utc_midnight(day) -%}{{ adapter.dispatch('mb_utc_midnight', 'meterbook')(day) }}{%- endmacro %}
{% macro default__mb_utc_midnight(day) -%}timezone('UTC', cast({{ day }} as timestamp)){%- endmacro %}
{% macro spark__mb_utc_midnight(day) -%}cast({{ day }} as timestamp){%- endmacro %}

{# `value` of the group's row that is last by the columns `by` (a comma-separated list). #}
{% macro mb_last_value(value, by) -%}{{ adapter.dispatch('mb_last_value', 'meterbook')(value, by) }}{%- endmacro %}
{% macro default__mb_last_value(value, by) -%}arg_max({{ value }}, ({{ by }})){%- endmacro %}
{% macro spark__mb_last_value(value, by) -%}max_by({{ value }}, struct({{ by }})){%- endmacro %}
