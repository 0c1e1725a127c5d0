-- The fact is imported twice on purpose: Postgres copies a CTE that is read twice into a
-- temporary result (the whole fact, every run) but inlines a CTE read once, where the fact's
-- primary-key index (asset_id, observed_at) finds each asset's latest row directly.
with

history_requests as (

    select * from {{ ref('stg_coincap__asset_history_requests') }}

),

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

observed_assets as (

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

),

-- an asset whose history was fetched but none of whose snapshots was accepted yet (each one held
-- back in fct_rejected_asset_prices): its 5-minute series exists, so it gets a row, with no
-- attributes, rather than leaving the series without its dimension
history_only_assets as (

    select distinct history_requests.asset_id

    from history_requests

    left join observation_spans
        on history_requests.asset_id = observation_spans.asset_id

    where
        history_requests.outcome = 'fetched'
        and observation_spans.asset_id is null

),

final as (

    select * from observed_assets

    union all

    select
        asset_id,
        cast(null as {{ text_type() }}) as symbol,
        -- `name` is a keyword, and the contract's column name (as in fct_asset_prices)
        cast(null as {{ text_type() }}) as name,  -- noqa: RF04
        cast(null as {{ text_type() }}) as explorer,
        cast(null as integer) as rank,
        cast(null as numeric(38, 18)) as latest_price_usd,
        cast(null as numeric(38, 18)) as latest_market_cap_usd,
        cast(null as numeric(38, 18)) as latest_volume_usd_24h,
        cast(null as numeric(38, 18)) as latest_supply,
        cast(null as numeric(38, 18)) as latest_max_supply,
        cast(0 as bigint) as observation_count,
        cast(null as {{ timestamptz_type() }}) as first_observed_at,
        cast(null as {{ timestamptz_type() }}) as last_observed_at

    from history_only_assets

)

select * from final
