{#
  The hand-off between the two engines when the workspace's settings.warehouse is spark
  (orchestration/defs/dbt/spark_stage.py): DuckDB writes the inputs of the usage models as
  Parquet into the lake folder, Spark builds the models from them, and DuckDB reads the
  results back from Parquet. Both sides of one dbt invocation on the spark target, so a Thrift
  server and an in-process session are driven alike.

  METERBOOK_SPARK_HANDOFF (JSON, set only for that invocation) says what to do:
    attach: [{relation: 'schema.table', path: folder}]  the inputs, as Parquet tables (with
            `query`, a view: the raw events of Spark's own ingest, warehouse/lake.py)
    drop:   ['schema.table']                              the models about to be built
    export: [{relation: 'schema.table', path: folder}]  the results, written as Parquet
  Read only while dbt executes (never at parse time, as meterbook_partition): a new value
  never makes dbt parse the project again. Unset, both macros do nothing.
#}
{% macro mb_spark_handoff() %}
  {%- if not execute -%}{{ return({}) }}{%- endif -%}
  {%- set text = env_var('METERBOOK_SPARK_HANDOFF', '') -%}
  {{ return(fromjson(text) if text else {}) }}
{% endmacro %}

{% macro mb_spark_handoff_attach() %}
  {%- set handoff = mb_spark_handoff() -%}
  {%- for relation in handoff.get('drop', []) + handoff.get('attach', []) | map(attribute='relation') | list %}
    {%- do run_query('drop table if exists ' ~ relation) -%}
    {%- do run_query('drop view if exists ' ~ relation) -%}
  {%- endfor %}
  {%- for table in handoff.get('attach', []) %}
    {%- do run_query('create database if not exists ' ~ table.relation.split('.')[0]) -%}
    {%- if table.get('query') %}
      {#- the raw events Spark's ingest keeps in the lake: a view of the rows that count -#}
      {%- do run_query('create view ' ~ table.relation ~ ' as ' ~ table.query) -%}
    {%- else %}
      {%- do run_query('create table ' ~ table.relation ~ ' using parquet location '
          ~ mb_spark_path(table.path)) -%}
    {%- endif %}
  {%- endfor %}
{% endmacro %}

{% macro mb_spark_handoff_export() %}
  {%- set handoff = mb_spark_handoff() -%}
  {%- if handoff.get('export') -%}
    {#- DuckDB reads Spark's default INT96 timestamps without their time zone -#}
    {%- do run_query('set spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS') -%}
  {%- endif -%}
  {%- for table in handoff.get('export', []) %}
    {%- do run_query('insert overwrite directory ' ~ mb_spark_path(table.path)
        ~ ' using parquet select * from ' ~ table.relation) -%}
  {%- endfor %}
{% endmacro %}

{# A folder as a Spark string literal: quotes and backslashes escaped. #}
{% macro mb_spark_path(path) -%}
  '{{ path | replace('\\', '\\\\') | replace("'", "\\'") }}'
{%- endmacro %}
