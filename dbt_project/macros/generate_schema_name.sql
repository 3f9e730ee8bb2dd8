{# Use the folder's schema name as is (staging, intermediate, marts), not target_schema + name;
   on Spark, under the workspace's prefix (mb_spark_schema). #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ mb_spark_schema(custom_schema_name) if custom_schema_name else target.schema }}
{%- endmacro %}

{#
  A schema's name on the target. DuckDB: the name itself (meterbook_raw, staging, ...), one
  warehouse file per workspace. Spark: `<target.schema>_<name>`, where target.schema is the
  workspace's own prefix (METERBOOK_SPARK_SCHEMA, set per workspace by
  orchestration/defs/dbt/spark_stage.py), so that several workspaces building on one Spark
  server never read or replace each other's tables. The sources' yml writes the same rule
  out (macros are not callable there).
#}
{% macro mb_spark_schema(name) -%}
    {{ target.schema ~ '_' ~ name if target.type == 'spark' else name }}
{%- endmacro %}
