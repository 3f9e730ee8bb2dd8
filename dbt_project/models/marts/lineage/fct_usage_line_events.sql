{#
  Lineage: every billable event behind every usage line of var close_month's invoices, one
  row per (line, event). A usage line is rated from one metering window (its segment) x meter
  x group, so its events are the billable events of the window's billing customer, counted by
  the line's meter, with the line's group, and timestamped in [window_start, window_end).
  The event key is (event_customer_id, event_id) - the event's own customer, a sub-account's
  id included - and read_seq finds the raw row (file, line) in meterbook_raw.raw_events.
  Replaced per close month like the billing marts.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='close_month',
        on_schema_change='fail',
        tags=['billing'],
        pre_hook="{{ billing_delete_close_month() }}",
    )
}}

with lines as (
    select close_month, invoice_id, line_id, subscription_id, meter, group_key,
        period_start, period_end
    from {{ ref('fct_invoice_lines') }}
    where kind = 'usage' and {{ billing_in_close_month('close_month') }}
),

segments as (
    select close_month, invoice_id, window_id, segment_start, segment_end
    from {{ ref('stg_billing__segments') }}
    where period_role = 'current' and {{ billing_in_close_month('close_month') }}
),

windows as (
    select close_month, window_id, billing_customer_id, window_start, window_end
    from {{ ref('stg_billing__meter_windows') }}
    where {{ billing_in_close_month('close_month') }}
),

-- only the events inside the close month's windows (literal bounds, as in
-- int_meter_quantities_windowed): otherwise every billable event of every month is read
{%- set from_first_start, before_last_end = metering_window_bounds('event_ts') %}
metered as (
    select * from {{ ref('int_events_metered') }}
    where {{ from_first_start }} and {{ before_last_end }}
),

-- a usage line covers exactly its segment's dates, which name the window it was rated from
line_windows as (
    select
        lines.*,
        windows.window_id,
        windows.billing_customer_id,
        windows.window_start,
        windows.window_end
    from lines
    inner join segments
        on segments.close_month = lines.close_month
        and segments.invoice_id = lines.invoice_id
        and segments.segment_start = lines.period_start
        and segments.segment_end = lines.period_end
    inner join windows
        on windows.close_month = segments.close_month
        and windows.window_id = segments.window_id
),

final as (
    select
        line_windows.close_month,
        line_windows.invoice_id,
        line_windows.line_id,
        line_windows.subscription_id,
        line_windows.window_id,
        line_windows.meter as meter_code,
        cast(line_windows.group_key as json) as group_key,
        metered.customer_id as event_customer_id,
        metered.event_id,
        cast(metered.read_seq as bigint) as read_seq,
        metered.event_ts
    from line_windows
    inner join metered
        on metered.billing_customer_id = line_windows.billing_customer_id
        and metered.meter_code = line_windows.meter
        and metered.event_ts >= line_windows.window_start
        and metered.event_ts < line_windows.window_end
        and cast(metered.group_key as varchar)
            is not distinct from cast(line_windows.group_key as varchar)
)

select * from final
