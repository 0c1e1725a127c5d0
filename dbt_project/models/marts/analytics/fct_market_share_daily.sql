{{
    config(
        materialized=incremental_mart(),
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'price_date'],
        on_schema_change='append_new_columns'
    )
}}

{%- set plausible_cap = 'market_cap_usd > 0 and market_cap_usd < 1e16' %}

{#-
    Each asset's market cap at its last observation of the UTC day that has one (CoinCap's own
    marketCapUsd, from fct_asset_prices), its share of the day's total over the tracked assets
    and its rank. The 5-minute history carries no market cap, so backfilled days before the
    first cycle have no row here.

    A market cap counts when it is above 0 and below 1e16 USD (thousands of times the whole
    crypto market's): 0 or below is no share of anything, and staging lets through caps up to
    1e20, which two assets would sum past what total_market_cap_usd (numeric(38, 18)) holds,
    failing the build for the day (9,999 assets below 1e16 never do). Such an observation stays in fct_asset_prices; here the
    asset's last plausible cap of the day counts, or it has no row that day.

    Incremental: a day that got observations from new loads is recomputed for every asset (one
    asset's new figure moves every share of that day); other days are not read.
-#}

with

asset_prices as (

    select * from {{ ref('fct_asset_prices') }}

),

{% if is_incremental() %}

    -- observations from loads this table has not seen yet. A second import, not a read of
    -- asset_prices: Postgres would copy a CTE read twice.
    new_observations as (

        select observed_at

        from {{ ref('fct_asset_prices') }}

        where load_id > {{ load_id_watermark() }}

    ),

    changed_days as (

        select distinct {{ utc_date('observed_at') }} as price_date

        from new_observations

    ),

    observations_to_read as (

        select
            asset_prices.asset_id,
            asset_prices.market_cap_usd,
            asset_prices.observed_at,
            asset_prices.load_id,
            changed_days.price_date

        from asset_prices

        inner join changed_days
            on {{ utc_date('asset_prices.observed_at') }} = changed_days.price_date

        -- lets the database skip old observations before the join (the observed_at index)
        where asset_prices.observed_at >= (
            select min(new_observations.observed_at) - interval '1 day' from new_observations
        )

    ),

{% else %}

    observations_to_read as (

        select
            asset_id,
            market_cap_usd,
            observed_at,
            load_id,
            {{ utc_date('observed_at') }} as price_date

        from asset_prices

    ),

{% endif %}

-- per asset and day, the latest observation with a plausible market cap (above 0: a day whose
-- caps were all 0 would divide by 0; below 1e16: see above); load_id is the newest load
-- among all the day's observations, so the next run's watermark is past every one of them
ranked as (

    select
        *,
        row_number() over (
            partition by asset_id, price_date
            order by
                case when {{ plausible_cap }} then 0 else 1 end,
                observed_at desc
        ) as position_from_close,
        max(load_id) over (partition by price_date) as newest_load_id

    from observations_to_read

),

day_market_caps as (

    select
        asset_id,
        price_date,
        market_cap_usd,
        observed_at as market_cap_observed_at,
        newest_load_id as load_id

    from ranked

    where
        position_from_close = 1
        and {{ plausible_cap }}

),

day_totals as (

    select
        *,
        sum(market_cap_usd) over (partition by price_date) as total_market_cap_usd,
        count(*) over (partition by price_date) as asset_count,
        rank() over (
            partition by price_date
            order by market_cap_usd desc
        ) as market_share_rank

    from day_market_caps

),

final as (

    select
        asset_id,
        price_date,
        market_cap_usd,
        cast(total_market_cap_usd as numeric(38, 18)) as total_market_cap_usd,
        cast(
            cast(market_cap_usd as {{ double_type() }})
            / cast(total_market_cap_usd as {{ double_type() }})
            as numeric(38, 12)
        ) as market_share,
        market_share_rank,
        asset_count,
        market_cap_observed_at,
        load_id

    from day_totals

)

select * from final
