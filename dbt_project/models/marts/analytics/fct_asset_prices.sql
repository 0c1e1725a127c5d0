{{
    config(
        materialized=incremental_mart(),
        incremental_strategy='delete+insert',
        unique_key=['asset_id', 'observed_at'],
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ ensure_index(['load_id']) }}",
            "{{ ensure_index(['observed_at']) }}",
        ]
    )
}}

with

assets as (

    select * from {{ ref('stg_coincap__assets') }}

    -- rows with a value that is not a number are held back: marts.fct_rejected_asset_prices
    where rejected_fields is null

    {% if is_incremental() %}
        -- only rows from loads this table has not seen. The watermark is dlt's load id, not
        -- observed_at: a late or pending load can carry observations older than the newest one
        -- here, and a re-delivered observation comes back with a newer load id (delete+insert
        -- replaces it).
        and load_id > {{ load_id_watermark() }}
    {% endif %}

),

final as (

    select
        asset_id,
        symbol,
        name,
        explorer,
        rank,
        price_usd,
        market_cap_usd,
        volume_usd_24h,
        supply,
        max_supply,
        change_percent_24h,
        vwap_24h,
        observed_at,
        load_id

    from assets

)

select * from final
