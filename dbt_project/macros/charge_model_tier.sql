{#
  Every charge model returns its explanation: a list of tier structs of exactly this type,
  so the dispatch in int_usage_lines_rated can pick any of them, and the line amount is the
  sum of the tier amounts (unrounded).
#}
{% macro charge_model_tier(tier, tier_from, up_to, quantity, unit_price, flat_fee, amount) -%}
struct_pack(
    tier := cast({{ tier }} as integer),
    tier_from := cast({{ tier_from }} as decimal(38, 12)),
    up_to := cast({{ up_to }} as decimal(38, 12)),
    quantity := cast({{ quantity }} as decimal(38, 12)),
    unit_price := cast({{ unit_price }} as decimal(38, 12)),
    flat_fee := cast({{ flat_fee }} as decimal(38, 12)),
    amount := cast({{ amount }} as decimal(38, 12))
)
{%- endmacro %}

{# The amount of a breakdown: the sum of its tiers (0 for an empty list). #}
{% macro charge_model_amount(breakdown) -%}
coalesce(list_sum(list_transform({{ breakdown }}, lambda t: t.amount)), cast(0 as decimal(38, 12)))
{%- endmacro %}
