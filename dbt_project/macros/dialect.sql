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
   no SQL macros: its exact division is written out where it is used (spark__mb_div, below);
   a close on Spark attaches there the inputs DuckDB handed over (spark_handoff.sql). #}
{% macro mb_on_run_start() -%}{{ adapter.dispatch('mb_on_run_start', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_on_run_start() -%}{{ create_decimal_macros() }}{%- endmacro %}
{% macro spark__mb_on_run_start() -%}{{ mb_spark_handoff_attach() }}{%- endmacro %}

{# What every invocation does last: nothing on DuckDB; on Spark, a close writes the models it
   built where DuckDB reads them back (spark_handoff.sql). #}
{% macro mb_on_run_end() -%}{{ adapter.dispatch('mb_on_run_end', 'meterbook')() }}{%- endmacro %}
{% macro default__mb_on_run_end() -%}{%- endmacro %}
{% macro spark__mb_on_run_end() -%}{{ mb_spark_handoff_export() }}{%- endmacro %}

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

{# Microseconds since the epoch of an instant. #}
{% macro mb_epoch_us(ts) -%}{{ adapter.dispatch('mb_epoch_us', 'meterbook')(ts) }}{%- endmacro %}
{% macro default__mb_epoch_us(ts) -%}epoch_us({{ ts }}){%- endmacro %}
{% macro spark__mb_epoch_us(ts) -%}unix_micros({{ ts }}){%- endmacro %}

{# An instant as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff', and that text as an instant literal. #}
{% macro mb_utc_text(ts) -%}{{ adapter.dispatch('mb_utc_text', 'meterbook')(ts) }}{%- endmacro %}
{% macro default__mb_utc_text(ts) -%}strftime(timezone('UTC', {{ ts }}), '%Y-%m-%d %H:%M:%S.%f'){%- endmacro %}
{% macro spark__mb_utc_text(ts) -%}date_format({{ ts }}, 'yyyy-MM-dd HH:mm:ss.SSSSSS'){%- endmacro %}
{% macro mb_utc_instant(text) -%}{{ adapter.dispatch('mb_utc_instant', 'meterbook')(text) }}{%- endmacro %}
{% macro default__mb_utc_instant(text) -%}timestamptz '{{ text }}+00'{%- endmacro %}
{% macro spark__mb_utc_instant(text) -%}timestamp '{{ text }}+00:00'{%- endmacro %}

{#
  Exact division, 12 decimals, half-up, NULL for a zero divisor: DuckDB's SQL macro mb_div
  (decimal.sql). Spark's form is the arithmetic written out, and is the one the meters' Spark
  SQL uses too (orchestration/catalog/tables/dialects.py renders it, with a `tag` that keeps
  the lambdas' names of nested divisions apart; tests/spark tests it against DuckDB's):
  - a and b as integers A, B in units of 10^-12 (below 10^26; NULL beyond, as DuckDB's
    overflow is), and NULL where DuckDB's HUGEINT overflows: 2 * A * 10^12 + B > 2^127 - 1,
    compared as its first 27 digits and its last 12 (the sum has 39, one more than a DECIMAL);
  - the whole quotient W by `div` (exact, but a BIGINT), in two parts: A div (B * 10^13), then
    what remains div B;
  - the 12 decimals from the remainder R = (A - W * B) * 10^12: R div B, plus one when twice
    what remains reaches B (half-up);
  - the sign by a subtraction from zero: Spark's unary minus and abs round a decimal to 34
    digits (Scala's default MathContext), and a zero keeps no sign.
#}
{% macro mb_div(a, b) -%}{{ adapter.dispatch('mb_div', 'meterbook')(a, b) }}{%- endmacro %}
{% macro default__mb_div(a, b) -%}mb_div({{ a }}, {{ b }}){%- endmacro %}
{% macro spark__mb_div(a, b, tag='') -%}
{%- set n = 'mbd' ~ tag ~ '_' -%}
{%- set e12, e13 = '1000000000000', '10000000000000' -%}
{%- set abs_ = 'case when {x} < 0 then 0 - {x} else {x} end' -%}
transform(array(named_struct('a', cast({{ a }} as decimal(38, 12)), 'b', cast({{ b }} as decimal(38, 12)))), {{ n }}v ->
  transform(array(named_struct(
      'a', cast(try_multiply({{ abs_.format(x=n ~ 'v.a') }}, {{ e12 }}) as decimal(38, 0)),
      'b', cast(try_multiply({{ abs_.format(x=n ~ 'v.b') }}, {{ e12 }}) as decimal(38, 0)))), {{ n }}i ->
    case
      when {{ n }}i.b = 0 or {{ n }}i.a is null or {{ n }}i.b is null then null
      when (2 * {{ n }}i.a + ({{ n }}i.b div {{ e12 }})) > 170141183460469231731687303
        or ((2 * {{ n }}i.a + ({{ n }}i.b div {{ e12 }})) = 170141183460469231731687303
            and ({{ n }}i.b - ({{ n }}i.b div {{ e12 }}) * {{ e12 }}) > 715884105727) then null
      else transform(array(
        transform(array(
          transform(array(cast(coalesce({{ n }}i.a div try_multiply({{ n }}i.b, {{ e13 }}), 0) as decimal(38, 0))), {{ n }}h ->
            ({{ n }}h * {{ e13 }} + (({{ n }}i.a - {{ n }}h * {{ e13 }} * {{ n }}i.b) div {{ n }}i.b)))[0]), {{ n }}w ->
          try_add({{ n }}w, transform(array(({{ n }}i.a - {{ n }}w * {{ n }}i.b) * {{ e12 }}), {{ n }}r ->
            (({{ n }}r div {{ n }}i.b) + case when 2 * ({{ n }}r - ({{ n }}r div {{ n }}i.b) * {{ n }}i.b) >= {{ n }}i.b
                                        then 1 else 0 end))[0] * cast('0.000000000001' as decimal(38, 12))))[0]), {{ n }}q ->
        case when ({{ n }}v.a < 0) <> ({{ n }}v.b < 0) and {{ n }}q <> 0 then (0 - {{ n }}q) else {{ n }}q end)[0]
    end)[0])[0]
{%- endmacro %}
