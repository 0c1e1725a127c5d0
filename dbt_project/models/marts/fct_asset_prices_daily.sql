{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'price_date'],
        on_schema_change='append_new_columns'
    )
}}

with

asset_prices as (

    select * from {{ ref('fct_asset_prices') }}

),

{% if is_incremental() %}

-- fact rows from loads this table has not seen yet (same watermark as the fact). A second
-- import of the fact, not a read of asset_prices: Postgres would copy a CTE read twice.
new_asset_prices as (

    select
        asset_id,
        observed_at

    from {{ ref('fct_asset_prices') }}

    where load_id > (select coalesce(max(load_id), '') from {{ this }})

),

-- only the (asset, UTC day) pairs that got new rows are recomputed, from all their rows
changed_asset_days as (

    select distinct
        asset_id,
        {{ utc_date('observed_at') }} as price_date

    from new_asset_prices

),

prices_to_aggregate as (

    select
        asset_prices.asset_id,
        asset_prices.price_usd,
        asset_prices.observed_at,
        asset_prices.load_id,
        changed_asset_days.price_date

    from asset_prices

    inner join changed_asset_days
        on asset_prices.asset_id = changed_asset_days.asset_id
        and {{ utc_date('asset_prices.observed_at') }} = changed_asset_days.price_date

    -- lets the database skip old rows before the join; every changed day starts after this
    where asset_prices.observed_at >= (
        select min(observed_at) - interval '1 day' from new_asset_prices
    )

),

{% else %}

prices_to_aggregate as (

    select
        asset_id,
        price_usd,
        observed_at,
        load_id,
        {{ utc_date('observed_at') }} as price_date

    from asset_prices

),

{% endif %}

-- open and close are the first and last priced observations of the UTC day
prices_ordered as (

    select
        *,
        row_number() over (
            partition by asset_id, price_date
            order by case when price_usd is null then 1 else 0 end, observed_at
        ) as position_from_open,
        row_number() over (
            partition by asset_id, price_date
            order by case when price_usd is null then 1 else 0 end, observed_at desc
        ) as position_from_close

    from prices_to_aggregate

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

    from prices_ordered

    group by asset_id, price_date

)

select * from final
