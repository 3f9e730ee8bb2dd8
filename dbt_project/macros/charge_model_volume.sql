{#
  volume (SPEC 3.2): all of q at the unit_price of the tier containing q (tier_from < q <=
  up_to; q = 0 is in the first tier), plus that tier's flat_fee. The breakdown is that tier.
#}
{% macro charge_model_volume(q, tiers) -%}
list_transform(
    list_filter({{ tiers }}, lambda t:
        (t.tier = 1 and {{ q }} = 0)
        or ({{ q }} > t.tier_from and (t.up_to is null or {{ q }} <= t.up_to))),
    lambda t: {{ charge_model_tier('t.tier', 't.tier_from', 't.up_to', q, 't.unit_price',
        't.flat_fee', 'mb_mul(' ~ q ~ ', t.unit_price) + t.flat_fee') }}
)
{%- endmacro %}
