{#-
    Every ordered pair of distinct assets with a day in the 30-day window
    (int_asset_returns_windowed), whether or not their returns overlap: the rows of
    fct_asset_correlations_30d. Ephemeral: a CTE inside that mart, nothing in the warehouse.
-#}

with

window_rows as (

    select * from {{ ref('int_asset_returns_windowed') }}

),

-- every asset with a day in the window, so a pair without overlapping days still has its row
window_assets as (

    select distinct
        asset_id,
        as_of_date,
        window_start_date

    from window_rows

),

final as (

    select
        window_assets.as_of_date,
        window_assets.window_start_date,
        window_assets.asset_id,
        other_assets.asset_id as other_asset_id

    from window_assets

    inner join window_assets as other_assets
        on window_assets.asset_id <> other_assets.asset_id

)

select * from final
