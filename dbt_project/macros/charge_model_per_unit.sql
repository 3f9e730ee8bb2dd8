{# per_unit (SPEC 3.2): q x unit_price. #}
{% macro charge_model_per_unit(q, unit_price) -%}
[{{ charge_model_tier(1, 0, 'null', q, unit_price, 0, 'mb_mul(' ~ q ~ ', ' ~ unit_price ~ ')') }}]
{%- endmacro %}
