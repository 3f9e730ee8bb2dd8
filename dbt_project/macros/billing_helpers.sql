{#
  Helpers of the rating models (intermediate/billing, marts/billing).
  Amounts stay DECIMAL(38, 12); division goes through mb_div (macros/decimal.sql).
#}

{# Half-up (away from zero) to the currency's minor unit. round() needs a constant number of
   digits, so the row's exponent picks a branch; an exponent we do not know fails loudly. #}
{% macro billing_round_money(amount, exponent) -%}
{#- each branch is cast on its own: CASE would otherwise unify round(x, 0) and round(x, 2) to
    the first branch's scale -#}
case {{ exponent }}
    {%- for digits in [0, 1, 2, 3, 4] %}
    when {{ digits }} then cast(round(cast({{ amount }} as decimal(38, 12)), {{ digits }}) as decimal(38, 12))
    {%- endfor %}
    else cast(error('unsupported currency exponent ' || cast({{ exponent }} as varchar)) as decimal(38, 12))
end
{%- endmacro %}

{# ceil(a / b) for a >= 0, b > 0, exactly: on the scaled integers, with no rounded quotient
   in between (mb_div would round 2.0000000000004 down to 2 before the ceiling). #}
{% macro billing_ceil_div(a, b) -%}
cast(
    (cast(cast({{ a }} as decimal(38, 12)) * 1000000000000 as hugeint)
     + cast(cast({{ b }} as decimal(38, 12)) * 1000000000000 as hugeint) - 1)
    // cast(cast({{ b }} as decimal(38, 12)) * 1000000000000 as hugeint)
as decimal(38, 12))
{%- endmacro %}

{# The close month being built, checked to be YYYY-MM (it is spliced into SQL), or none when
   unset: an unset close month means "every month the close tables hold". #}
{% macro billing_close_month() -%}
    {%- set value = meterbook_partition('close_month') -%}
    {%- if value is none or value | string == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-(0[1-9]|1[0-2])', value | string) -%}
        {{ exceptions.raise_compiler_error("close_month must be YYYY-MM, got " ~ value) }}
    {%- endif -%}
    {{ return(value | string) }}
{%- endmacro %}

{# A predicate keeping the rows of the close month being built. #}
{% macro billing_in_close_month(column) -%}
    {%- set month = billing_close_month() -%}
    {%- if month is none -%} true {%- else -%} {{ column }} = '{{ month }}' {%- endif -%}
{%- endmacro %}

{# Pre-hook of the incremental marts: a re-run replaces the month even when it now has no
   rows at all (delete+insert alone would keep the old ones). #}
{% macro billing_delete_close_month() -%}
    {%- set month = billing_close_month() -%}
    {%- if is_incremental() and month is not none -%}
        delete from {{ this }} where close_month = '{{ month }}'
    {%- endif -%}
{%- endmacro %}

{# A decimal as text without trailing zeros (20.000000000000 -> 20), for descriptions. #}
{% macro billing_decimal_text(value) -%}
rtrim(rtrim(cast(cast({{ value }} as decimal(38, 12)) as varchar), '0'), '.')
{%- endmacro %}

{# An aggregate: amount prorated by days over the paid segments of a period, summed, with a
   single division (sum(amount x days) / period_days), so the pieces of one fee or minimum
   cannot drift apart by rounding; the caller rounds the result once. NULL when no row
   counts. #}
{% macro billing_prorated_sum(amount, days, period_days, counts) -%}
mb_div(
    sum(mb_mul({{ amount }}, {{ days }})) filter (where {{ counts }}),
    any_value({{ period_days }})
)
{%- endmacro %}

{# Each price's tiers as one list of structs in tier order, grouped by `keys` (the columns
   that name the price: a plan version's charge, or a price override). #}
{% macro billing_tier_lists(relation, keys) -%}
select
    {{ keys | join(', ') }},
    list(
        struct_pack(
            tier := tier_no,
            tier_from := tier_from,
            up_to := up_to,
            unit_price := unit_price,
            flat_fee := flat_fee
        )
        order by tier_no
    ) as tiers
from {{ relation }}
group by all
{%- endmacro %}

{# A minimum and a maximum on the same amount (a charge, or a subscription's spend): the
   true-up lifts usage to the minimum due; the cap (zero or negative) then brings usage plus
   true-up down to the maximum. A NULL minimum or maximum adds nothing. #}
{% macro billing_true_up(minimum_due, usage) -%}
cast(greatest(coalesce({{ minimum_due }} - {{ usage }}, 0), 0) as decimal(38, 12))
{%- endmacro %}

{% macro billing_cap(maximum, usage, true_up) -%}
cast(least(coalesce({{ maximum }} - ({{ usage }} + {{ true_up }}), 0), 0) as decimal(38, 12))
{%- endmacro %}
