-- Each charge of each segment with the quantities metering measured over the segment's
-- window: one row per group seen, or one row with group null and quantity 0 when there was
-- no usage (every charge yields a line in every segment). Free units come off per line.

with segment_charges as (
    select * from {{ ref('int_billing_segment_charges') }}
),

quantities as (
    select * from {{ ref('int_meter_quantities_windowed') }}
    where {{ billing_in_close_month('close_month') }}
),

joined as (
    select
        sc.*,
        q.group_key,
        coalesce(cast(q.quantity as decimal(38, 12)), cast(0 as decimal(38, 12))) as quantity,
        coalesce(q.event_count, 0) as event_count
    from segment_charges sc
    left join quantities q
        on q.close_month = sc.close_month
        and q.window_id = sc.window_id
        and q.meter_code = sc.meter_code
),

final as (
    select
        *,
        cast(greatest(quantity - free_units, 0) as decimal(38, 12)) as billable_quantity
    from joined
)

select * from final
