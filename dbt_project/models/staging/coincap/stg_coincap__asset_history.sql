with

source as (

    select * from {{ source('coincap', 'asset_history') }}

),

renamed as (

    select
        -- ids
        asset_id,

        -- numerics: exact decimals, never floats
        {{ coincap_decimal('price_usd') }} as price_usd,
        {{ coincap_decimal('circulating_supply') }} as circulating_supply,

        -- timestamps (UTC)
        {{ epoch_ms_to_timestamptz('time') }} as price_at,
        {{ epoch_ms_to_timestamptz('coincap_timestamp') }} as fetched_at,

        -- the same instant as price_at, as CoinCap sent it (ms): what the mart looks points up
        -- by, through raw's (asset_id, time) index on PostgreSQL
        time as price_at_epoch_ms,

        -- load metadata
        _dlt_load_id as load_id

    from source

)

select * from renamed
