-- The one place that dispatches a usage line to its charge model (macros/charge_model_*.sql).
-- Every model returns its tier breakdown; the line amount is the sum of its tiers, rounded
-- half-up to the currency's minor unit once. During a trial the line keeps its quantities
-- and explanation but is charged 0.

with usage_lines as (
    select * from {{ ref('int_billing_usage_quantified') }}
),

rated as (
    select
        *,
        case charge_model
            when 'per_unit' then {{ charge_model_per_unit('billable_quantity', 'unit_price') }}
            when 'package' then {{ charge_model_package('billable_quantity', 'package_size', 'package_price') }}
            when 'graduated' then {{ charge_model_graduated('billable_quantity', 'tiers') }}
            when 'volume' then {{ charge_model_volume('billable_quantity', 'tiers') }}
            when 'percentage' then {{ charge_model_percentage('billable_quantity', 'rate') }}
            else error('unknown charge model ' || charge_model)
        end as tier_breakdown
    from usage_lines
),

amounts as (
    select
        *,
        if(is_trial, cast(0 as decimal(38, 12)), {{ charge_model_amount('tier_breakdown') }})
            as unrounded_amount
    from rated
),

final as (
    select
        *,
        {{ billing_round_money('unrounded_amount', 'currency_exponent') }} as amount
    from amounts
)

select * from final
