{#
  DuckDB turns DECIMAL / DECIMAL into DOUBLE. Money and quantities must never pass through a
  float, so every division in the project goes through mb_div: exact, 12 decimals, half-up.
  It multiplies first and divides once, so prorate(15.50 * 22, 31) is exactly 11.000000000000.
  Inputs must stay below 10^14 in magnitude; larger values raise an overflow error rather than
  lose digits.
#}
{% macro create_decimal_macros() %}
create or replace macro mb_div(a, b) as cast(
  cast(
    sign(cast(a as decimal(38, 12))) * sign(cast(b as decimal(38, 12))) *
    ((2 * abs(cast(cast(a as decimal(38, 12)) * 1000000000000 as hugeint)) * 1000000000000
      + abs(cast(cast(b as decimal(38, 12)) * 1000000000000 as hugeint)))
     // (2 * abs(cast(cast(b as decimal(38, 12)) * 1000000000000 as hugeint))))
  as decimal(38, 0)) * cast('0.000000000001' as decimal(38, 12)) as decimal(38, 12));
create or replace macro mb_mul(a, b) as
  cast(cast(a as decimal(38, 12)) * cast(b as decimal(38, 12)) as decimal(38, 12));
{% endmacro %}
