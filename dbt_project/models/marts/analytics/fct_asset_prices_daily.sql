{{
    config(
        materialized=incremental_mart(),
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'price_date'],
        on_schema_change='append_new_columns'
    )
}}

-- Daily OHLC from the continuous 5-minute series (fct_asset_price_history), so a day an outage
-- interrupted still has all its points once the ingest has filled the hole from CoinCap's history.

with

price_points as (

    select * from {{ ref('fct_asset_price_history') }}

),

{% if is_incremental() %}

    -- series points from loads this table has not seen yet (the series carries the newest load
    -- id of each slot). A second import, not a read of price_points: Postgres would copy a CTE
    -- read twice.
    new_price_points as (

        select
            asset_id,
            price_at

        from {{ ref('fct_asset_price_history') }}

        where load_id > {{ load_id_watermark() }}

    ),

    -- only the (asset, UTC day) pairs that got new points are recomputed, from all their points
    changed_asset_days as (

        select distinct
            asset_id,
            {{ utc_date('price_at') }} as price_date

        from new_price_points

    ),

    points_to_aggregate as (

        select
            price_points.asset_id,
            price_points.price_at,
            price_points.price_usd,
            price_points.observed_at,
            price_points.load_id,
            changed_asset_days.price_date

        from price_points

        inner join changed_asset_days
            on price_points.asset_id = changed_asset_days.asset_id
            and {{ utc_date('price_points.price_at') }} = changed_asset_days.price_date

        -- lets the database skip old points before the join; every changed day starts after this
        where price_points.price_at >= (
            select min(price_at) - interval '1 day' from new_price_points
        )

    ),

{% else %}

    points_to_aggregate as (

        select
            asset_id,
            price_at,
            price_usd,
            observed_at,
            load_id,
            {{ utc_date('price_at') }} as price_date

        from price_points

    ),

{% endif %}

-- open and close are the prices of the day's first and last 5-minute points
points_ordered as (

    select
        *,
        row_number() over (
            partition by asset_id, price_date
            order by price_at
        ) as position_from_open,
        row_number() over (
            partition by asset_id, price_date
            order by price_at desc
        ) as position_from_close

    from points_to_aggregate

),

final as (

    select
        asset_id,
        price_date,
        max(case when position_from_open = 1 then price_usd end) as open_price_usd,
        max(price_usd) as high_price_usd,
        min(price_usd) as low_price_usd,
        max(case when position_from_close = 1 then price_usd end) as close_price_usd,
        count(*) as observation_count,
        min(observed_at) as first_observed_at,
        max(observed_at) as last_observed_at,
        max(load_id) as load_id

    from points_ordered

    group by asset_id, price_date

)

select * from final
