{{
    config(
        materialized=incremental_mart(),
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'price_date'],
        on_schema_change='append_new_columns'
    )
}}

{%- set points_per_day = 1440 // var('price_interval_minutes') %}
{%- set min_returns_7d = var('volatility_min_returns_7d') %}
{%- set min_returns_30d = var('volatility_min_returns_30d') %}

{#-
    Daily returns, volatility and drawdown from the daily closes of fct_asset_prices_daily (one
    row per asset per day, 288 times fewer rows than the 5-minute series it is built from).
    Ratios are computed in double precision and stored rounded to 12 decimal places, the same
    way on both engines; prices stay exact decimals. Any two prices the marts hold (above 0 and
    below 1e20, down to 1e-18) give a ratio between 1e-38 and 1e38, which double precision holds:
    the log return is always defined (at most 88 in size). A fall of more than 99.99999999995 %
    rounds to a simple return of exactly -1 (the column's 12 decimals cannot say more; the log
    return still does), and a rise beyond what numeric(38, 12) holds (ratio - 1 of 1e26 or more)
    leaves simple_return null, so no legal price fails the build.

    Incremental: per asset, the earliest day that got new points and every later day are
    recomputed (a changed close moves the next day's return, the next 30 days' volatility and
    every later running peak). The 30 days before it are read again for the rolling windows and
    the previous close; the running peak so far and the previous close of a day with no day in
    those 30 come from the latest row already in this table before the first changed day.
-#}

with

daily_prices as (

    select * from {{ ref('fct_asset_prices_daily') }}

),

{% if is_incremental() %}

    -- per asset, the earliest day that got points from loads this table has not seen. A second
    -- import, not a read of daily_prices: Postgres would copy a CTE read twice.
    changed_assets as (

        select
            asset_id,
            min(price_date) as first_changed_date

        from {{ ref('fct_asset_prices_daily') }}

        where load_id > {{ load_id_watermark() }}

        group by asset_id

    ),

    -- the latest day already here before each asset's first changed day
    anchor_dates as (

        select
            returns_so_far.asset_id,
            max(returns_so_far.price_date) as anchor_date

        from {{ this }} as returns_so_far

        inner join changed_assets
            on returns_so_far.asset_id = changed_assets.asset_id
            and returns_so_far.price_date < changed_assets.first_changed_date

        group by returns_so_far.asset_id

    ),

    anchors as (

        select
            returns_so_far.asset_id,
            returns_so_far.price_date as anchor_date,
            returns_so_far.close_price_usd as anchor_close_price_usd,
            returns_so_far.running_peak_close_usd as anchor_running_peak_usd

        from {{ this }} as returns_so_far

        inner join anchor_dates
            on returns_so_far.asset_id = anchor_dates.asset_id
            and returns_so_far.price_date = anchor_dates.anchor_date

    ),

    -- the changed days and the 30 days before them: the 30-day window of the first changed day
    -- reaches 29 days back, and the return of that window's first day needs the day before it
    prices_to_read as (

        select
            daily_prices.asset_id,
            daily_prices.price_date,
            daily_prices.close_price_usd,
            daily_prices.observation_count,
            daily_prices.load_id,
            changed_assets.first_changed_date

        from daily_prices

        inner join changed_assets
            on daily_prices.asset_id = changed_assets.asset_id

        where
            daily_prices.price_date
            >= cast(changed_assets.first_changed_date - interval '30 days' as date)

    ),

{% else %}

    prices_to_read as (

        select
            asset_id,
            price_date,
            close_price_usd,
            observation_count,
            load_id

        from daily_prices

    ),

{% endif %}

with_previous_close as (

    select
        *,
        lag(price_date) over (
            partition by asset_id
            order by price_date
        ) as lag_price_date,
        lag(close_price_usd) over (
            partition by asset_id
            order by price_date
        ) as lag_close_price_usd,
        max(close_price_usd) over (
            partition by asset_id
            order by price_date
            rows between unbounded preceding and current row
        ) as peak_close_read_usd

    from prices_to_read

),

{% if is_incremental() %}

    -- a day whose previous close lies before the days read takes the anchor's close; the running
    -- peak is the higher of the anchor's running peak and the peak of the days read
    with_history as (

        select
            with_previous_close.asset_id,
            with_previous_close.price_date,
            with_previous_close.close_price_usd,
            with_previous_close.observation_count,
            with_previous_close.load_id,
            with_previous_close.first_changed_date,
            case
                when
                    with_previous_close.lag_price_date is null
                    and anchors.anchor_date < with_previous_close.price_date
                    then anchors.anchor_date
                else with_previous_close.lag_price_date
            end as previous_close_date,
            case
                when
                    with_previous_close.lag_price_date is null
                    and anchors.anchor_date < with_previous_close.price_date
                    then anchors.anchor_close_price_usd
                else with_previous_close.lag_close_price_usd
            end as previous_close_price_usd,
            case
                when anchors.anchor_running_peak_usd > with_previous_close.peak_close_read_usd
                    then anchors.anchor_running_peak_usd
                else with_previous_close.peak_close_read_usd
            end as running_peak_close_usd

        from with_previous_close

        left join anchors
            on with_previous_close.asset_id = anchors.asset_id

    ),

{% else %}

    with_history as (

        select
            asset_id,
            price_date,
            close_price_usd,
            observation_count,
            load_id,
            lag_price_date as previous_close_date,
            lag_close_price_usd as previous_close_price_usd,
            peak_close_read_usd as running_peak_close_usd

        from with_previous_close

    ),

{% endif %}

returns as (

    select
        *,
        cast(price_date - previous_close_date as integer) as days_since_previous_close,
        cast(price_date - date '1970-01-01' as integer) as day_number,
        cast(close_price_usd as {{ double_type() }})
        / cast(previous_close_price_usd as {{ double_type() }}) as close_ratio

    from with_history

),

-- only returns over exactly one day enter the volatility: a return across a missing day is
-- a two-day move
one_day_returns as (

    select
        *,
        case
            when days_since_previous_close = 1 and close_ratio > 0 then ln(close_ratio)
        end as one_day_log_return

    from returns

),

volatility as (

    select
        *,
        stddev_samp(one_day_log_return) over (
            partition by asset_id
            order by day_number
            range between 6 preceding and current row
        ) as stddev_7d,
        count(one_day_log_return) over (
            partition by asset_id
            order by day_number
            range between 6 preceding and current row
        ) as return_count_7d,
        stddev_samp(one_day_log_return) over (
            partition by asset_id
            order by day_number
            range between 29 preceding and current row
        ) as stddev_30d,
        count(one_day_log_return) over (
            partition by asset_id
            order by day_number
            range between 29 preceding and current row
        ) as return_count_30d

    from one_day_returns

),

final as (

    select
        asset_id,
        price_date,
        close_price_usd,
        previous_close_price_usd,
        days_since_previous_close,
        -- null when it does not fit numeric(38, 12) (a rise of 1e26-fold or more)
        cast(
            case
                when close_ratio - 1 < cast(1e26 as {{ double_type() }}) then close_ratio - 1
            end
            as numeric(38, 12)
        ) as simple_return,
        cast(case when close_ratio > 0 then ln(close_ratio) end as numeric(38, 12)) as log_return,
        cast(
            case
                when return_count_7d >= {{ min_returns_7d }}
                    then stddev_7d * sqrt(cast(365 as {{ double_type() }}))
            end
            as numeric(38, 12)
        ) as annualized_volatility_7d,
        cast(
            case
                when return_count_30d >= {{ min_returns_30d }}
                    then stddev_30d * sqrt(cast(365 as {{ double_type() }}))
            end
            as numeric(38, 12)
        ) as annualized_volatility_30d,
        running_peak_close_usd,
        cast(
            cast(close_price_usd as {{ double_type() }})
            / cast(running_peak_close_usd as {{ double_type() }})
            - 1
            as numeric(38, 12)
        ) as drawdown,
        observation_count,
        observation_count = {{ points_per_day }} as is_complete_day,
        load_id

    from volatility

    {% if is_incremental() %}
        -- only the changed days and the days after them are written
        where price_date >= first_changed_date
    {% endif %}

)

select * from final
