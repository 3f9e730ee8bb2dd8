{#
  What each subscription has used of every meter in its current period so far (SPEC 9):
  the entitlements' `used` and the alerts' `usage`. One row per window x catalog meter (0 when
  nothing was used), over all of the meter's groups: a limit is on the meter, not on a group.

  Unlike the close, the quantity is the meter's own (before the unit's division and rounding),
  and a time_weighted meter (seats) gives the level held at the watermark, summed over its
  groups: a limit on seats limits the seats held now, not the period's weighted average.

  It reads only the current periods' events (int_current_period_events), so the cost follows
  the current period's usage, not the history's. time_weighted meters also read their earlier
  levels (the value held when the period opened), as the close does.
#}
{%- set windows = ref('stg_entitlements__current_windows') -%}
{%- set meter_rows = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') -%}
{%- set time_weighted_rows = meter_rows
    | selectattr('aggregation', 'equalto', 'time_weighted') | list -%}
{%- set before_last_end = metering_window_bounds('events.event_ts', windows)[1] %}
{%- set window_customers = metering_window_customers(
    'fates.billing_customer_id', windows=windows) %}

with windows as (
    select * from {{ windows }}
),

meters as (
    select meter_seq, meter_code, aggregation from {{ ref('stg_catalog__meters') }}
),

in_window as not materialized (
    select * from {{ ref('int_current_period_events') }}
    where aggregation <> 'time_weighted'
),

aggregated as (
    {{ metering_quantities('in_window', 'window_id, meter_seq', ['latest']) }}
),

-- time_weighted: each group's last level set before the window's end, then their sum
levels as (
    select
        windows.window_id,
        earlier.meter_seq,
        earlier.group_key,
        count(*) filter (where earlier.event_ts >= windows.window_start) as event_count,
        arg_max(earlier.value, (earlier.event_ts, earlier.event_id, earlier.read_seq)) as value
    from windows
    inner join (
        {{ metering_events(time_weighted_rows, before_last_end ~ ' and ' ~ window_customers) }}
    ) as earlier
        on earlier.billing_customer_id = windows.billing_customer_id
        and earlier.event_ts < windows.window_end
    group by all
),

held as (
    select window_id, meter_seq, sum(event_count) as event_count, sum(value) as quantity
    from levels
    group by all
),

quantities as (
    select window_id, meter_seq, event_count, quantity from aggregated
    union all
    select window_id, meter_seq, event_count, quantity from held
),

final as (
    select
        windows.window_id,
        windows.subscription_id,
        windows.billing_customer_id,
        meters.meter_code,
        cast(coalesce(quantities.quantity, 0) as decimal(38, 12)) as quantity,
        cast(coalesce(quantities.event_count, 0) as bigint) as event_count,
        windows.window_start,
        windows.window_end,
        windows.as_of
    from windows
    cross join meters
    left join quantities
        on quantities.window_id = windows.window_id
        and quantities.meter_seq = meters.meter_seq
)

select * from final
