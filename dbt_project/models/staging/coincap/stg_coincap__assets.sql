with

source as (

    select * from {{ source('coincap', 'assets') }}

),

renamed as (

    select
        -- ids
        id as asset_id,

        -- strings
        symbol,
        name,
        explorer,

        -- numerics: exact decimals, never floats
        cast(rank as integer) as rank,
        {{ coincap_decimal('price_usd') }} as price_usd,
        {{ coincap_decimal('market_cap_usd') }} as market_cap_usd,
        {{ coincap_decimal('volume_usd24_hr') }} as volume_usd_24h,
        {{ coincap_decimal('supply') }} as supply,
        {{ coincap_decimal('max_supply') }} as max_supply,
        {{ coincap_decimal('change_percent24_hr') }} as change_percent_24h,
        {{ coincap_decimal('vwap24_hr') }} as vwap_24h,

        -- timestamps (UTC)
        {{ epoch_ms_to_timestamptz('coincap_timestamp') }} as observed_at,

        -- load metadata
        _dlt_load_id as load_id

    from source

)

select * from renamed
