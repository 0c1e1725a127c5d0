{{ config(materialized='view') }}

-- A view, like fct_rejected_asset_prices: it always shows what raw holds now, so a point CoinCap
-- later re-sends with a valid price leaves this list and enters fct_asset_price_history.
with

asset_history as (

    select * from {{ ref('stg_coincap__asset_history') }}

),

final as (

    select
        asset_id,
        rejected_fields,
        rejected_values,
        rejection_reason,
        price_at,
        load_id

    from asset_history

    where rejected_fields is not null

)

select * from final
