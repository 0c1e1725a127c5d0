{{ config(materialized='view') }}

-- A view, so it always shows what raw holds now: an observation CoinCap later re-sends with valid
-- figures leaves this list and enters fct_asset_prices. Rejected rows are rare; reading them
-- on demand costs nothing between queries.
with

assets as (

    select * from {{ ref('stg_coincap__assets') }}

),

final as (

    select
        asset_id,
        symbol,
        name,
        rejected_fields,
        rejected_values,
        rejection_reason,
        observed_at,
        load_id

    from assets

    where rejected_fields is not null

)

select * from final
