-- The fact is imported twice on purpose: Postgres copies a CTE that is read twice into a
-- temporary result (the whole fact, every run) but inlines a CTE read once, where the fact's
-- primary-key index (asset_id, observed_at) finds each asset's latest row directly.
with

asset_prices as (

    select * from {{ ref('fct_asset_prices') }}

),

asset_observations as (

    select
        asset_id,
        observed_at

    from {{ ref('fct_asset_prices') }}

),

observation_spans as (

    select
        asset_id,
        count(*) as observation_count,
        min(observed_at) as first_observed_at,
        max(observed_at) as last_observed_at

    from asset_observations

    group by asset_id

),

final as (

    select
        asset_prices.asset_id,
        asset_prices.symbol,
        asset_prices.name,
        asset_prices.explorer,
        asset_prices.rank,
        asset_prices.price_usd as latest_price_usd,
        asset_prices.market_cap_usd as latest_market_cap_usd,
        asset_prices.volume_usd_24h as latest_volume_usd_24h,
        asset_prices.supply as latest_supply,
        asset_prices.max_supply as latest_max_supply,
        observation_spans.observation_count,
        observation_spans.first_observed_at,
        observation_spans.last_observed_at

    from observation_spans

    -- (asset_id, observed_at) is the fact's primary key: exactly one latest row per asset
    inner join asset_prices
        on observation_spans.asset_id = asset_prices.asset_id
        and observation_spans.last_observed_at = asset_prices.observed_at

)

select * from final
