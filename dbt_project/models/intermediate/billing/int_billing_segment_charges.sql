-- Every charge in force in every current segment, with the pricing that applies there: the
-- plan version's charge, its pricing fields replaced as a whole by a price override in force
-- over the segment (free units, minimum and maximum stay the plan's). Segments are cut at
-- override dates, so an override covers a segment entirely or not at all.

with invoices as (
    select * from {{ ref('int_billing_invoices') }}
),

segments as (
    select * from {{ ref('stg_billing__segments') }}
    where period_role = 'current' and {{ billing_in_close_month('close_month') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

charge_tiers as (
    {{ billing_tier_lists(ref('stg_catalog__tiers'), ['plan_code', 'version', 'meter_code']) }}
),

overrides as (
    select * from {{ ref('stg_catalog__price_overrides') }}
),

override_tiers as (
    {{ billing_tier_lists(ref('stg_catalog__price_override_tiers'), ['subscription_id', 'override_no']) }}
),

in_force as (
    select
        s.close_month,
        s.invoice_id,
        i.subscription_id,
        i.currency_exponent,
        s.window_id,
        s.segment_no,
        s.segment_start,
        s.segment_end,
        s.plan_code,
        s.version,
        s.is_trial,
        s.days,
        s.period_days,
        c.charge_no,
        c.meter_code,
        c.meter_name,
        c.free_units,
        c.minimum,
        c.maximum,
        o.override_no,
        -- an override replaces the pricing fields as a whole, never one by one
        if(o.override_no is null, c.model, o.model) as charge_model,
        if(o.override_no is null, c.unit_price, o.unit_price) as unit_price,
        if(o.override_no is null, c.package_size, o.package_size) as package_size,
        if(o.override_no is null, c.package_price, o.package_price) as package_price,
        if(o.override_no is null, c.rate, o.rate) as rate,
        if(o.override_no is null, ct.tiers, ot.tiers) as tiers,
        -- SPEC 7: per_unit only; an override to another model leaves no credit price
        if(if(o.override_no is null, c.model, o.model) = 'per_unit', c.credit_price, null) as credit_price
    from segments s
    join invoices i using (close_month, invoice_id)
    join charges c on c.plan_code = s.plan_code and c.version = s.version
    left join charge_tiers ct
        on ct.plan_code = c.plan_code and ct.version = c.version and ct.meter_code = c.meter_code
    left join overrides o
        on o.subscription_id = i.subscription_id
        and o.meter_code = c.meter_code
        and o.effective_from <= s.segment_start
        and (o.effective_to is null or o.effective_to >= s.segment_end)
    left join override_tiers ot
        on ot.subscription_id = o.subscription_id and ot.override_no = o.override_no
),

final as (
    select * from in_force
)

select * from final
