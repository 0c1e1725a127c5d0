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
    a year as after a month; it keeps no history (see the docs). The window's rows
    (int_asset_returns_windowed) and the pairs (int_asset_pairs_enumerated) are intermediate
    models; this mart computes each pair's statistics and keeps those with enough overlap.
-#}

with

window_rows as (

    select * from {{ ref('int_asset_returns_windowed') }}

),

asset_pairs as (

    select * from {{ ref('int_asset_pairs_enumerated') }}

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
