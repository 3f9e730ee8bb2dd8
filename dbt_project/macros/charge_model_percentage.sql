{# percentage (SPEC 3.2): q x rate / 100, for a share of a summed money property. The tier's
   unit_price is the rate in percent. #}
{% macro charge_model_percentage(q, rate) -%}
[{{ charge_model_tier(1, 0, 'null', q, rate, 0,
    'mb_div(mb_mul(' ~ q ~ ', ' ~ rate ~ '), 100)') }}]
{%- endmacro %}
