{#
  Quantity per metering window x meter x group for var close_month (all months of
  meter_windows when it is not set), computed from the window's billable events directly
  (SPEC 3.1): never by adding daily results. Windows are half-open [window_start, window_end).
#}
{%- set close_month = metering_close_month_literal() -%}
{%- set meter_rows = metering_catalog_rows(ref('stg_catalog__meters'), 'meter_seq') -%}
{%- set time_weighted_rows = meter_rows
    | selectattr('aggregation', 'equalto', 'time_weighted') | list -%}

with windows as (
    select * from {{ ref('stg_billing__meter_windows') }}
    {%- if close_month %}
    where close_month = {{ close_month }}
    {%- endif %}
),

meters as (
    select meter_seq, meter_code, aggregation, unit_divide_by, unit_rounding
    from {{ ref('stg_catalog__meters') }}
),

-- events outside the windows' span are never priced: the span is a literal read at compile
-- time and passed down to the scans of the fates (by event_date) and the raw events (by
-- event_ts), both stored in read order, so a month's close reads that month's row groups and
-- no other (tests/metering/test_metering_history.py proves it from DuckDB's profile); when
-- the windows are those of a few customers (a re-rate), only their fates are read
{%- set from_first_start, before_last_end = metering_window_bounds('events.event_ts') %}
{%- set window_customers = metering_window_customers('fates.billing_customer_id') %}
metered as {{ mb_not_materialized() }} (
    {{ metering_events(meter_rows, metering_window_dates('fates.event_date')
        ~ ' and ' ~ from_first_start ~ ' and ' ~ before_last_end
        ~ ' and ' ~ window_customers) }}
),

in_window as {{ mb_not_materialized() }} (
    select
        windows.close_month,
        windows.window_id,
        metered.meter_seq,
        metered.aggregation,
        metered.group_key,
        metered.event_ts,
        metered.event_id,
        metered.read_seq,
        metered.value,
        metered.text_value
    from windows
    inner join metered
        on metered.billing_customer_id = windows.billing_customer_id
        and metered.event_ts >= windows.window_start
        and metered.event_ts < windows.window_end
),

-- count, sum, count_unique, max, min, latest: plain aggregates of the window's events
aggregated as (
    {{ metering_quantities(
        'in_window', 'close_month, window_id, meter_seq, group_key', ['latest']) }}
),

-- time_weighted: the value held when the window opens, per group (the last one set before).
-- Only time_weighted meters' events before the last window's end are read for it: with none
-- in the catalog, nothing at all (its history is the one thing a close reads beyond its month)
carried_in as (
    select
        windows.close_month,
        windows.window_id,
        earlier.meter_seq,
        earlier.group_key,
        {{ mb_last_value('earlier.value', 'earlier.event_ts, earlier.event_id, earlier.read_seq') }}
            as value
    from windows
    inner join (
        {{ metering_events(time_weighted_rows, before_last_end ~ ' and ' ~ window_customers) }}
    ) as earlier
        on earlier.billing_customer_id = windows.billing_customer_id
        and earlier.event_ts < windows.window_start
    group by all
),

level_changes as (
    select close_month, window_id, meter_seq, group_key,
        windows.window_start as changed_at, 0 as is_event, '' as event_id, 0 as read_seq, value
    from carried_in
    inner join windows using (close_month, window_id)
    union all
    select close_month, window_id, meter_seq, group_key,
        event_ts, 1, event_id, read_seq, value
    from in_window
    where aggregation = 'time_weighted'
),

-- each level holds from its change until the next change or the window's end; its weight is
-- that span's share of the full period (SPEC 3.1: the integral over the period divided by its
-- length), not of the window: the segments of a period, and the subscriptions of a plan
-- change, then add up to the period's level instead of each counting it whole (exact decimal)
level_spans as (
    select
        level_changes.*,
        coalesce(
            lead(changed_at) over (
                partition by close_month, window_id, meter_seq, group_key
                order by changed_at, is_event, event_id, read_seq
            ),
            windows.window_end
        ) as held_until,
        windows.period_start,
        windows.period_end
    from level_changes
    inner join windows using (close_month, window_id)
),

time_weighted as (
    select
        close_month,
        window_id,
        meter_seq,
        group_key,
        sum(is_event) as event_count,
        sum(cast(value * {{ mb_div(
            mb_epoch_us('held_until') ~ ' - ' ~ mb_epoch_us('changed_at'),
            mb_epoch_us('period_end') ~ ' - ' ~ mb_epoch_us('period_start')) }}
        as decimal(38, 12))) as value_weighted,
        -- a group only carried in at level 0 and never changed adds nothing worth a line
        bool_or(is_event = 1 or value <> 0) as keep_group
    from level_spans
    group by all
),

raw_quantities as (
    select
        close_month,
        window_id,
        meter_seq,
        group_key,
        event_count,
        coalesce(quantity, cast(0 as decimal(38, 12))) as raw_quantity
    from aggregated
    union all
    select close_month, window_id, meter_seq, group_key, event_count, value_weighted
    from time_weighted
    where keep_group
),

-- every window x meter of the catalog; with no events at all, one row with group NULL and 0
window_meters as (
    select windows.close_month, windows.window_id, windows.billing_customer_id, meters.*
    from windows
    cross join meters
),

quantities as (
    select
        window_meters.*,
        raw_quantities.group_key,
        coalesce(raw_quantities.event_count, 0) as event_count,
        coalesce(raw_quantities.raw_quantity, cast(0 as decimal(38, 12))) as raw_quantity
    from window_meters
    left join raw_quantities
        on window_meters.close_month = raw_quantities.close_month
        and window_meters.window_id = raw_quantities.window_id
        and window_meters.meter_seq = raw_quantities.meter_seq
),

-- unit: divide, then round to a whole number (nearest = half-up); no rounding keeps the fraction
divided as (
    select
        *,
        case when unit_divide_by is null then raw_quantity
            else {{ mb_div('raw_quantity', 'unit_divide_by') }} end as divided_quantity
    from quantities
),

final as (
    select
        close_month,
        window_id,
        billing_customer_id,
        meter_code,
        cast(group_key as {{ mb_json() }}) as group_key,
        -- each branch cast on its own: DuckDB would type the CASE as ceil's DECIMAL(38, 0)
        case unit_rounding
            when 'up' then cast(ceil(divided_quantity) as decimal(38, 12))
            when 'down' then cast(floor(divided_quantity) as decimal(38, 12))
            when 'nearest' then cast(round(divided_quantity, 0) as decimal(38, 12))
            else cast(divided_quantity as decimal(38, 12))
        end as quantity,
        cast(event_count as bigint) as event_count
    from divided
)

select * from final
