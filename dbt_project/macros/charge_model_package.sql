{# package (SPEC 3.2): ceil(q / package_size) x package_price; the tier's quantity is the
   number of packages. #}
{% macro charge_model_package(q, package_size, package_price) -%}
{%- set packages = billing_ceil_div(q, package_size) -%}
[{{ charge_model_tier(1, 0, 'null', packages, package_price, 0,
    'mb_mul(' ~ packages ~ ', ' ~ package_price ~ ')') }}]
{%- endmacro %}
