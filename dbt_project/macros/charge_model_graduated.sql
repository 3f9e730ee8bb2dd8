{#
  graduated (SPEC 3.2): tier i covers (up_to[i-1], up_to[i]] (tier_from = up_to[i-1], 0 for
  the first); its units are priced at its unit_price, and its flat_fee is added once q enters
  it (q > tier_from), the first tier's even at q = 0. Only the tiers entered are listed.
  `tiers` is a list of structs (tier, tier_from, up_to, unit_price, flat_fee), up_to null in
  the last (open) tier.
#}
{% macro charge_model_graduated(q, tiers) -%}
{%- set units = 'greatest(0, least(' ~ q ~ ', coalesce(t.up_to, ' ~ q ~ ')) - t.tier_from)' -%}
list_transform(
    list_filter({{ tiers }}, lambda t: t.tier = 1 or {{ q }} > t.tier_from),
    lambda t: {{ charge_model_tier('t.tier', 't.tier_from', 't.up_to', units, 't.unit_price',
        't.flat_fee', 'mb_mul(' ~ units ~ ', t.unit_price) + t.flat_fee') }}
)
{%- endmacro %}
