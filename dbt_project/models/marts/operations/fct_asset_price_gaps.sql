{{ config(materialized='view') }}

{%- set interval_minutes = var('price_interval_minutes') %}

-- The holes of the continuous series that the ingest knows about: every 5-minute slot inside a
-- history window it recorded (stg_coincap__asset_history_requests) that has no row in
-- fct_asset_price_history. A view, computed when queried: a hole filled later simply leaves it.
-- Windows are at most a day (288 slots) and are written only for backfills and outages.

with

requests as (

    select * from {{ ref('stg_coincap__asset_history_requests') }}

),

price_history as (

    select * from {{ ref('fct_asset_price_history') }}

),

rejected_history as (

    select * from {{ ref('fct_rejected_asset_history') }}

),

-- the first slot on the grid at or after each window's start
windows as (

    select
        asset_id,
        outcome,
        requested_at,
        load_id,
        request_id,
        window_end_at,
        case
            when {{ floor_to_grid('window_start_at', interval_minutes) }} < window_start_at
                then
                    {{ floor_to_grid('window_start_at', interval_minutes) }}
                    + interval '{{ interval_minutes }} minutes'
            else {{ floor_to_grid('window_start_at', interval_minutes) }}
        end as first_slot_at

    from requests

    where window_start_at <= window_end_at

),

-- every slot of every window, up to the window's end (CoinCap's `now`: later slots are not holes)
window_slots as (

    select
        windows.asset_id,
        slots.price_at,
        windows.outcome,
        windows.requested_at,
        row_number() over (
            partition by windows.asset_id, slots.price_at
            order by windows.requested_at desc, windows.load_id desc, windows.request_id desc
        ) as position_from_latest

    from windows

    cross join lateral {{ grid_slots(
        'windows.first_slot_at', 'windows.window_end_at', interval_minutes, 'price_at'
    ) }}

),

-- a slot's status comes from the latest window that covers it
latest_window_slots as (

    select * from window_slots
    where position_from_latest = 1

),

-- why a fetched slot has no point: the point CoinCap sent was held back
rejected_slots as (

    select
        asset_id,
        {{ floor_to_grid('price_at', interval_minutes) }} as price_at,
        min(rejection_reason) as rejection_reason

    from rejected_history

    group by 1, 2

),

missing_slots as (

    select latest_window_slots.*

    from latest_window_slots

    left join price_history
        on latest_window_slots.asset_id = price_history.asset_id
        and latest_window_slots.price_at = price_history.price_at

    where price_history.asset_id is null

),

final as (

    select
        missing_slots.asset_id,
        missing_slots.price_at,
        missing_slots.requested_at as asked_at,
        case
            when missing_slots.outcome in ('fetched', 'not_found') then 'known'
            else 'pending'
        end as gap_status,
        case
            when missing_slots.outcome = 'fetched' and rejected_slots.rejection_reason is not null
                then 'history point rejected: ' || rejected_slots.rejection_reason
            when missing_slots.outcome = 'fetched'
                then 'CoinCap sent no point'
            when missing_slots.outcome = 'not_found'
                then 'CoinCap answered 404/400 for this asset''s history; not asked again'
            when missing_slots.outcome = 'failed'
                then 'history request failed; asked again next cycle'
            when missing_slots.outcome = 'deferred'
                then 'over the cycle''s request budget; asked in a later cycle'
            else 'history request outcome ' || coalesce(missing_slots.outcome, 'null')
        end as reason

    from missing_slots

    left join rejected_slots
        on missing_slots.asset_id = rejected_slots.asset_id
        and missing_slots.price_at = rejected_slots.price_at

)

select * from final
