{#
  Revenue recognition arithmetic (SPEC 8). Amounts are spread in minor units (integers), with
  cumulative rounding: part `upto` of `whole` gets round(A * upto / whole), half away from
  zero, computed exactly on HUGEINT (A * upto would overflow DECIMAL(38, 12) for large
  quantities, and a 12-decimal share first can round a half-cent the wrong way).
  `upto` and `whole` are DECIMAL(38, 12) below 10^14 in magnitude, as everywhere (decimal.sql),
  and amount (minor units) x total weight stays below about 1.7 x 10^26 (HUGEINT): past it
  the build fails on an overflow, it never rounds wrong.
#}
{% macro revenue_scaled(value) -%}
cast(cast({{ value }} as decimal(38, 12)) * 1000000000000 as hugeint)
{%- endmacro %}

{% macro revenue_share_minor(amount_minor, upto, whole) -%}
(sign(cast({{ amount_minor }} as hugeint)) * sign({{ revenue_scaled(upto) }}) * sign({{ revenue_scaled(whole) }})
 * ((2 * abs(cast({{ amount_minor }} as hugeint) * {{ revenue_scaled(upto) }}) + abs({{ revenue_scaled(whole) }}))
    // (2 * abs({{ revenue_scaled(whole) }}))))
{%- endmacro %}

{# One day's part of a cumulative spread: what days up to this one get, less what the days
   before it got. #}
{% macro revenue_cumulative_part(amount_minor, upto, weight, whole) -%}
({{ revenue_share_minor(amount_minor, upto, whole) }} - {{ revenue_share_minor(amount_minor, '(' ~ upto ~ ') - (' ~ weight ~ ')', whole) }})
{%- endmacro %}

{% macro revenue_to_minor(amount, exponent) -%}
cast({{ revenue_scaled(amount) }} // cast(power(10, 12 - {{ exponent }}) as hugeint) as hugeint)
{%- endmacro %}

{% macro revenue_from_minor(minor, exponent) -%}
cast(cast(cast({{ minor }} as hugeint) * cast(power(10, 12 - {{ exponent }}) as hugeint) as decimal(38, 0)) * cast('0.000000000001' as decimal(38, 12)) as decimal(38, 12))
{%- endmacro %}

{# The calendar months the roll-forward and journal build: the partition's, or (unset) every
   month from the first day anything was billed or recognized to the last (`movements`: one
   row per day with a `day` column, int_revenue_movements). #}
{% macro revenue_months(movements) -%}
{%- set month = billing_close_month() -%}
{%- if month is none %}
select cast(m as date) as month_start, cast(m + interval 1 month as date) as month_end
from (select min(day) as first_day, max(day) as last_day from {{ movements }}) b,
     range(date_trunc('month', b.first_day), b.last_day + interval 1 day, interval 1 month) as t(m)
where b.first_day is not null
{%- else %}
select cast('{{ month }}-01' as date) as month_start, cast(cast('{{ month }}-01' as date) + interval 1 month as date) as month_end
{%- endif %}
{%- endmacro %}

{# Pre-hook of the incremental revenue marts: a re-run replaces its month(s). #}
{% macro revenue_delete_months() -%}
{%- set month = billing_close_month() -%}
{%- if is_incremental() and month is not none -%}
    delete from {{ this }} where revenue_month = '{{ month }}'
{%- elif is_incremental() -%}
    delete from {{ this }}
{%- endif -%}
{%- endmacro %}

{# Pre-hook of an incremental revenue mart that gained columns (`columns`: name -> type):
   a table built before them is given them, 0 in the months it holds, so the build's schema
   check finds the table and the model alike (each of those months is rebuilt when it is run
   again). A new table, or a full refresh, has them already. #}
{% macro revenue_add_columns(columns) -%}
{%- if is_incremental() -%}
    {%- set have = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- for name, type in columns.items() if name not in have %}
    alter table {{ this }} add column {{ name }} {{ type }} default 0;
    {%- endfor -%}
{%- endif -%}
{%- endmacro %}
