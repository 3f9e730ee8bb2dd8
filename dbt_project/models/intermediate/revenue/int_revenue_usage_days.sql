-- The daily quantities of the usage lines of count and sum meters (SPEC 8: usage is
-- recognized on the days it happened, in proportion to daily quantity), per local day of the
-- customer, from the events the invoice was built from (read_seq up to its finalization's).

with meters as (
    select meter_code, from_json(group_by, '["VARCHAR"]') as group_by
    from {{ ref('stg_catalog__meters') }}
),

lines as (
    select
        l.line_id, l.customer_id, l.meter, l.period_start, l.period_end, l.timezone,
        l.raw_read_seq, l.aggregation,
        -- the ledger keeps a group's keys sorted; events name them in the meter's group_by
        -- order (json_object): the line's key is rewritten in that order to match them
        case when l.group_key is null then null else
            '{' || array_to_string(list_transform(
                m.group_by,
                lambda k: to_json(k)::varchar || ':'
                     || coalesce(json_extract(l.group_key, '$.' || to_json(k)::varchar)::varchar, 'null')
            ), ',') || '}'
        end as group_key
    from {{ ref('int_revenue_lines') }} l
    left join meters m on m.meter_code = l.meter
    where l.revenue_rule = 'daily_usage' and l.aggregation in ('count', 'sum') and l.amount_minor <> 0
),

events as (
    select billing_customer_id, meter_code, cast(group_key as varchar) as group_key, event_ts, value, read_seq
    from {{ ref('int_events_metered') }}
    where aggregation in ('count', 'sum')
),

located as (
    select
        l.line_id,
        l.aggregation,
        cast(timezone(l.timezone, e.event_ts) as date) as revenue_date,
        e.value,
        l.period_start,
        l.period_end
    from lines l
    join events e
        on e.billing_customer_id = l.customer_id
        and e.meter_code = l.meter
        and e.group_key is not distinct from l.group_key
        -- a day either side covers every time zone's local days
        and e.event_ts >= cast(l.period_start - interval 1 day as timestamptz)
        and e.event_ts < cast(l.period_end + interval 1 day as timestamptz)
        and (l.raw_read_seq is null or e.read_seq <= l.raw_read_seq)
)

select
    line_id,
    revenue_date,
    cast(case any_value(aggregation) when 'count' then count(*) else sum(value) end as decimal(38, 12)) as quantity
from located
where revenue_date >= period_start and revenue_date < period_end
group by line_id, revenue_date
