{#-
    The one-day log returns of fct_asset_returns_daily in the 30 UTC days that end on the latest
    day there (at most 30 rows per asset), each with that window's first and last day: what
    fct_asset_correlations_30d pairs up. Ephemeral: a CTE inside that mart, nothing in the
    warehouse.
-#}

with

asset_returns as (

    select * from {{ ref('fct_asset_returns_daily') }}

),

window_end as (

    select max(price_date) as as_of_date

    from asset_returns

),

final as (

    select
        asset_returns.asset_id,
        asset_returns.price_date,
        asset_returns.days_since_previous_close,
        cast(asset_returns.log_return as {{ double_type() }}) as log_return,
        window_end.as_of_date,
        cast(window_end.as_of_date - interval '29 days' as date) as window_start_date

    from asset_returns

    cross join window_end

    where asset_returns.price_date >= cast(window_end.as_of_date - interval '29 days' as date)

)

select * from final
