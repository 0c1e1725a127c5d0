{{
    config(
        materialized=incremental_mart(),
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'price_at'],
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ ensure_index(['load_id']) }}",
            "{{ ensure_index(['price_at']) }}",
        ]
    )
}}

{%- set interval_minutes = var('price_interval_minutes') %}
{%- set move_pct = var('price_move_alert_pct') %}

-- The continuous 5-minute series: CoinCap's accepted history points where the ingest fetched them
-- (backfill, outages), the snapshots of fct_asset_prices everywhere else. Each snapshot belongs
-- to the slot its observed_at falls in (floored to the grid); a slot with a history point takes
-- it, otherwise the slot's latest snapshot.

with

asset_history as (

    select * from {{ ref('stg_coincap__asset_history') }}

    -- only accepted points; the others are in marts.fct_rejected_asset_history, and their slot
    -- takes the slot's snapshot if there is one
    where rejected_fields is null

),

asset_prices as (

    select * from {{ ref('fct_asset_prices') }}

),

{% if is_incremental() %}

-- the slots that rows from loads this table has not seen fall in (the same load-id watermark as
-- the other marts). Second imports, not reads of the CTEs above: Postgres would copy a CTE
-- read twice into a temporary result instead of using the fact's primary-key index.
new_history_slots as (

    select
        asset_id,
        {{ floor_to_grid('price_at', interval_minutes) }} as price_at

    from {{ ref('stg_coincap__asset_history') }}

    where load_id > {{ load_id_watermark() }}

),

new_snapshot_slots as (

    select
        asset_id,
        {{ floor_to_grid('observed_at', interval_minutes) }} as price_at

    from {{ ref('fct_asset_prices') }}

    where load_id > {{ load_id_watermark() }}

),

-- only these (asset, slot) pairs are recomputed, from every history point and snapshot in them
changed_slots as (

    select
        asset_id,
        price_at,
        {{ timestamptz_to_epoch_ms('price_at') }} as price_at_epoch_ms

    from (
        select asset_id, price_at from new_history_slots
        union
        select asset_id, price_at from new_snapshot_slots
        -- and the slot after each: its 5-minute change is measured from the changed slot (a slot
        -- with nothing in it yields no row)
        union
        select asset_id, price_at + interval '{{ interval_minutes }} minutes' from new_history_slots
        union
        select asset_id, price_at + interval '{{ interval_minutes }} minutes' from new_snapshot_slots
    ) as slots

),

history_points as (

    select
        points.asset_id,
        changed_slots.price_at,
        points.price_usd,
        points.circulating_supply,
        points.price_at as observed_at,
        points.load_id

    from changed_slots

    -- each slot's points by a range on the raw millisecond time (price_at is computed from it),
    -- in a lateral subquery that `offset 0` keeps PostgreSQL from merging into a plain join: it
    -- then looks each slot up through raw's (asset_id, time) index, where the plain join read all
    -- of raw.asset_history (10 s instead of 0.15 s at 100 assets x 365 days, docs/benchmarks.md)
    cross join lateral (

        select *
        from asset_history
        where asset_history.asset_id = changed_slots.asset_id
          and asset_history.price_at_epoch_ms >= changed_slots.price_at_epoch_ms
          and asset_history.price_at_epoch_ms < changed_slots.price_at_epoch_ms + {{ interval_minutes * 60000 }}
        offset 0

    ) as points

),

snapshot_points as (

    select
        asset_prices.asset_id,
        changed_slots.price_at,
        asset_prices.price_usd,
        asset_prices.supply as circulating_supply,
        asset_prices.observed_at,
        asset_prices.load_id

    from asset_prices

    -- a range on observed_at: Postgres finds each slot's snapshots through the fact's
    -- primary-key index (asset_id, observed_at) instead of reading the whole fact
    inner join changed_slots
        on asset_prices.asset_id = changed_slots.asset_id
        and asset_prices.observed_at >= changed_slots.price_at
        and asset_prices.observed_at < changed_slots.price_at + interval '{{ interval_minutes }} minutes'

),

{% else %}

    history_points as (

        select
            asset_id,
            {{ floor_to_grid('price_at', interval_minutes) }} as price_at,
            price_usd,
            circulating_supply,
            price_at as observed_at,
            load_id

        from asset_history

    ),

    snapshot_points as (

        select
            asset_id,
            {{ floor_to_grid('observed_at', interval_minutes) }} as price_at,
            price_usd,
            supply as circulating_supply,
            observed_at,
            load_id

        from asset_prices

    ),

{% endif %}

candidates as (

    select
        *,
        'history' as source,
        1 as preference

    from history_points

    union all

    select
        *,
        'snapshot' as source,
        2 as preference

    from snapshot_points

),

-- per slot: the history point if there is one, else the latest snapshot. load_id is the newest
-- load among all the slot's candidates, so the next run's watermark is past every one of them.
ranked as (

    select
        *,
        row_number() over (
            partition by asset_id, price_at
            order by preference asc, observed_at desc
        ) as position_in_slot,
        max(load_id) over (partition by asset_id, price_at) as newest_load_id

    from candidates

),

slots as (

    select
        asset_id,
        price_at,
        price_usd,
        circulating_supply,
        source,
        observed_at,
        newest_load_id as load_id

    from ranked

    where position_in_slot = 1

),

-- the price of the slot before each slot: recomputed here, or (incremental) already in the table
previous_slots as (

    select
        asset_id,
        price_at,
        price_usd

    from slots

    {% if is_incremental() %}

        union all

        select
            stored.asset_id,
            stored.price_at,
            stored.price_usd

        from {{ this }} as stored

        inner join changed_slots
            on stored.asset_id = changed_slots.asset_id
            and stored.price_at = changed_slots.price_at - interval '{{ interval_minutes }} minutes'

        where not exists (
            select 1
            from slots
            where
                slots.asset_id = stored.asset_id
                and slots.price_at = stored.price_at
        )

    {% endif %}

),

-- the move since the slot just before (none after a hole): ratio in double precision, as the
-- returns are, so that no quotient of two prices can overflow a numeric
moves as (

    select
        slots.*,
        (
            cast(slots.price_usd as {{ double_type() }})
            / cast(previous_slots.price_usd as {{ double_type() }})
        ) as price_ratio

    from slots

    left join previous_slots
        on slots.asset_id = previous_slots.asset_id
        and previous_slots.price_at = slots.price_at - interval '{{ interval_minutes }} minutes'

),

final as (

    select
        asset_id,
        price_at,
        price_usd,
        circulating_supply,
        source,
        observed_at,
        load_id,
        cast(
            case when price_ratio < 1e20 then (price_ratio - 1) * 100 end as numeric(38, 12)
        ) as price_change_pct_5m,
        coalesce(abs(price_ratio - 1) * 100 > {{ move_pct }}, false) as is_large_price_move

    from moves

)

select * from final
