{#
  The hand-off between the two engines when the workspace's settings.warehouse is spark
  (orchestration/defs/dbt/spark_stage.py): DuckDB writes the inputs of the usage models as
  Parquet into the lake folder, Spark builds the models from them, and DuckDB reads the
  results back from Parquet. Both sides of one dbt invocation on the spark target, so a Thrift
  server and an in-process session are driven alike.

  METERBOOK_SPARK_HANDOFF (JSON, set only for that invocation) says what to do:
    attach: [{relation: 'schema.table', path: folder}]  the inputs, as Parquet tables (with
            `query`, a view: the raw events of Spark's own ingest, warehouse/lake.py; with
            `unless_same`: {rows, max_read_seq}, not when Spark's table holds those rows)
    drop_unless_partitioned: ['schema.table']           a model Spark keeps between steps,
            dropped when it is a copy handed over (to be built anew)
    drop:   ['schema.table']                              the models about to be built
    export: [{relation: 'schema.table', path: folder}]  the results, written as Parquet
            (with `rebuilt_only`, the rows of this run only)
    fates:  {after, days} or null                       the days the fates rebuild
            (macros/usage_incremental.sql: fates_spark_plan)
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
  {%- set kept = [] -%}
  {%- for table in handoff.get('attach', []) if table.get('unless_same') -%}
    {%- if mb_spark_holds(table.relation, table.unless_same) -%}{%- do kept.append(table.relation) -%}{%- endif -%}
  {%- endfor -%}
  {%- for relation in handoff.get('drop_unless_partitioned', []) -%}
    {%- if mb_spark_exists(relation) and not mb_spark_partitioned(relation) -%}
      {#- through the adapter, whose cache of relations (filled before this hook) must learn
          that the model is gone: it is then built anew, not inserted into -#}
      {%- set schema, name = relation.split('.') -%}
      {%- do adapter.drop_relation(api.Relation.create(schema=schema, identifier=name, type='table')) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- for relation in handoff.get('drop', []) + handoff.get('attach', []) | map(attribute='relation') | list %}
    {%- if relation not in kept -%}
      {%- do run_query('drop table if exists ' ~ relation) -%}
      {%- do run_query('drop view if exists ' ~ relation) -%}
    {%- endif -%}
  {%- endfor %}
  {%- for table in handoff.get('attach', []) if table.relation not in kept %}
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

{# The table `relation` ('schema.table') exists on Spark. #}
{% macro mb_spark_exists(relation) %}
  {%- set schema, name = relation.split('.') -%}
  {%- do run_query('create database if not exists ' ~ schema) -%}
  {{ return(run_query("show tables in " ~ schema ~ " like '" ~ name ~ "'").rows | length > 0) }}
{% endmacro %}

{# Spark's table `relation` is partitioned (the fates Spark built, not a copy handed over). #}
{% macro mb_spark_partitioned(relation) %}
  {%- for row in run_query('describe table extended ' ~ relation).rows
      if row[0] == '# Partition Information' -%}
    {{ return(true) }}
  {%- endfor -%}
  {{ return(false) }}
{% endmacro %}

{# Spark's table `relation` holds the rows DuckDB's does: as many, up to the same read_seq
   (the fates: built from the same events, so then equal). A step that only reads the fates
   keeps Spark's own, partitioned by day, rather than replacing it with DuckDB's copy. #}
{% macro mb_spark_holds(relation, expected) %}
  {%- if not mb_spark_exists(relation) -%}{{ return(false) }}{%- endif -%}
  {%- set row = run_query('select count(*), coalesce(max(read_seq), -1) from ' ~ relation).rows[0] -%}
  {{ return(row[0] | int == expected.rows | int and row[1] | int == expected.max_read_seq | int) }}
{% endmacro %}

{% macro mb_spark_handoff_export() %}
  {%- set handoff = mb_spark_handoff() -%}
  {%- if handoff.get('export') -%}
    {#- DuckDB reads Spark's default INT96 timestamps without their time zone -#}
    {%- do run_query('set spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS') -%}
  {%- endif -%}
  {%- for table in handoff.get('export', []) %}
    {#- rebuilt_only: the rows this run wrote (a model built by partition, the fates), found
        by the column holding the invocation that wrote them -#}
    {%- set where = (' where ' ~ table.rebuilt_only ~ " = '" ~ invocation_id ~ "'")
        if table.get('rebuilt_only') else '' -%}
    {%- do run_query('insert overwrite directory ' ~ mb_spark_path(table.path)
        ~ ' using parquet select * from ' ~ table.relation ~ where) -%}
  {%- endfor %}
{% endmacro %}

{# A folder as a Spark string literal: quotes and backslashes escaped. #}
{% macro mb_spark_path(path) -%}
  '{{ path | replace('\\', '\\\\') | replace("'", "\\'") }}'
{%- endmacro %}
