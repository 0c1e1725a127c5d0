{{
    config(
        materialized='table'
    )
}}

{%- set min_overlap_days = var('correlation_min_overlap_days') %}

{#-
    Pairwise Pearson correlation of the one-day log returns (fct_asset_returns_daily) over the
    30 UTC days that end on the latest day there, both orders of every pair. A table rebuilt on
    every build from those 30 days only (at most 30 rows per asset), so it costs the same after
    a year as after a month; it keeps no history (see the docs).
-#}

with

asset_returns as (

    select * from {{ ref('fct_asset_returns_daily') }}

),

window_end as (

    select max(price_date) as as_of_date

    from asset_returns

),

window_rows as (

    select
        asset_returns.asset_id,
        asset_returns.price_date,
        asset_returns.days_since_previous_close,
        cast(asset_returns.log_return as double precision) as log_return,
        window_end.as_of_date,
        cast(window_end.as_of_date - interval '29 days' as date) as window_start_date

    from asset_returns

    cross join window_end

    where asset_returns.price_date >= cast(window_end.as_of_date - interval '29 days' as date)

),

-- every asset with a day in the window, so a pair without overlapping days still has its row
window_assets as (

    select distinct
        asset_id,
        as_of_date,
        window_start_date

    from window_rows

),

asset_pairs as (

    select
        window_assets.as_of_date,
        window_assets.window_start_date,
        window_assets.asset_id,
        other_assets.asset_id as other_asset_id

    from window_assets

    inner join window_assets as other_assets
        on window_assets.asset_id <> other_assets.asset_id

),

-- returns over exactly one day only, as in the volatility
one_day_returns as (

    select
        asset_id,
        price_date,
        log_return

    from window_rows

    where days_since_previous_close = 1

),

pair_statistics as (

    select
        one_day_returns.asset_id,
        other_returns.asset_id as other_asset_id,
        count(*) as overlap_days,
        corr(one_day_returns.log_return, other_returns.log_return) as correlation,
        var_samp(one_day_returns.log_return) as variance,
        var_samp(other_returns.log_return) as other_variance

    from one_day_returns

    inner join one_day_returns as other_returns
        on one_day_returns.price_date = other_returns.price_date
        and one_day_returns.asset_id <> other_returns.asset_id

    group by one_day_returns.asset_id, other_returns.asset_id

),

final as (

    select
        asset_pairs.as_of_date,
        asset_pairs.asset_id,
        asset_pairs.other_asset_id,
        asset_pairs.window_start_date,
        coalesce(pair_statistics.overlap_days, 0) as overlap_days,
        -- null for a flat series (no variance): DuckDB's corr() says NaN there, PostgreSQL null
        cast(
            case
                when
                    pair_statistics.overlap_days >= {{ min_overlap_days }}
                    and pair_statistics.variance > 0
                    and pair_statistics.other_variance > 0
                    then pair_statistics.correlation
            end
            as numeric(38, 12)
        ) as correlation_30d

    from asset_pairs

    left join pair_statistics
        on asset_pairs.asset_id = pair_statistics.asset_id
        and asset_pairs.other_asset_id = pair_statistics.other_asset_id

)

select * from final
