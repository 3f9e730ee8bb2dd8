{{ config(meta={"dagster": {"ref": {"name": "int_meter_quantities_windowed"}}}) }}
-- one row per window x meter x group, and every window x meter of the catalog has a row
with windowed as (
    select * from {{ ref('int_meter_quantities_windowed') }}
),

repeated as (
    select close_month, window_id, meter_code, cast(group_key as varchar) as group_key, count(*) as n
    from windowed
    group by all
    having count(*) > 1
),

expected as (
    {%- set month = metering_close_month_literal() %}
    select windows.close_month, windows.window_id, meters.meter_code
    from {{ ref('stg_billing__meter_windows') }} as windows
    cross join {{ ref('stg_catalog__meters') }} as meters
    {%- if month %}
    where windows.close_month = {{ month }}
    {%- endif %}
),

missing as (
    select expected.close_month, expected.window_id, expected.meter_code, null as group_key, 0 as n
    from expected
    anti join windowed using (close_month, window_id, meter_code)
)

select * from repeated
union all
select * from missing
