{#
  The partition being built, from the environment: METERBOOK_MIN_DATE, METERBOOK_MAX_DATE
  (daily usage, [min, max)) and METERBOOK_CLOSE_MONTH (billing, 'YYYY-MM'; empty: every
  month), and METERBOOK_MAX_READ_SEQ (a price backtest's replay of a closed month: only events
  read up to its build; empty: all). orchestration/defs/dbt/runner.py sets them all for every invocation
  (partition_env). Read only while dbt executes: at parse time the defaults stand in, so a new
  partition never makes dbt parse the project again (as a changed --vars does). A dbt run by
  hand without them builds everything, as before.
#}
{% macro meterbook_partition(name) %}
  {%- set defaults = {'min_date': '1970-01-01', 'max_date': '9999-12-31', 'close_month': '',
                       'max_read_seq': ''} -%}
  {%- if name not in defaults -%}
    {{ exceptions.raise_compiler_error("unknown partition variable " ~ name) }}
  {%- endif -%}
  {%- if not execute -%}
    {{ return(defaults[name]) }}
  {%- endif -%}
  {{ return(env_var('METERBOOK_' ~ name | upper, defaults[name])) }}
{% endmacro %}
