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

        -- load metadata
        _dlt_load_id as load_id

    from source

)

select * from renamed
