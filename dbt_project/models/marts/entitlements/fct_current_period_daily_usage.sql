{#
  Each subscription's current period day by day (UTC days), per meter over all its groups:
  the month-so-far chart. A day's quantity is that day's own aggregate (count and sum add up
  to the period's; the others do not, as in fct_daily_meter_usage); a time_weighted meter
  gives the last level set that day. Days without events have no row.
#}
with meters as (
    select meter_seq, meter_code from {{ ref('stg_catalog__meters') }}
),

in_window as not materialized (
    select * from {{ ref('int_current_period_events') }}
),

daily as (
    {{ metering_quantities(
        'in_window', 'window_id, meter_seq, event_date', ['latest', 'time_weighted']) }}
),

final as (
    select
        daily.window_id,
        meters.meter_code,
        daily.event_date as usage_date,
        cast(daily.quantity as decimal(38, 12)) as quantity,
        cast(daily.event_count as bigint) as event_count
    from daily
    inner join meters on daily.meter_seq = meters.meter_seq
)

select * from final
