{#- CoinCap's numeric fields of a history point (raw column: staging column), checked before they
    are cast, by the same rules as the assets' (macros/coincap_validation.sql). -#}
{%- set checked_fields = {
    'price_usd': 'price_usd',
    'circulating_supply': 'circulating_supply',
} %}

{#- the price is required and must be above zero after rounding -#}
{%- set price_usd_problem = coincap_decimal_problem('price_usd', required=true, positive=true) %}

with

source as (

    {{ raw_rows(source('coincap', 'asset_history'), ['asset_id', 'time']) }}

),

-- a point whose price is missing, not a number, out of range or not above zero, or whose
-- supply (optional; it may arrive as a JSON number's text, "1.95e7") is not a number or out of
-- range, is held back (rejected_fields is not null): marts.fct_rejected_asset_history
checked as (

    select
        *,
        {{ price_usd_problem }} as price_usd_problem,
        {{ coincap_decimal_problem('circulating_supply') }} as circulating_supply_problem

    from source

),

renamed as (

    select
        -- ids
        asset_id,

        -- numerics: exact decimals, never floats; null where the value was rejected
        {%- for raw, column in checked_fields.items() %}
            case
                when {{ raw }}_problem is null then {{ coincap_decimal(raw) }}
            end as {{ column }},
        {%- endfor %}

        -- timestamps (UTC)
        {{ epoch_ms_to_timestamptz('time') }} as price_at,
        {{ epoch_ms_to_timestamptz('coincap_timestamp') }} as fetched_at,

        -- the same instant as price_at, as CoinCap sent it (ms): what the mart looks points up
        -- by, through raw's (asset_id, time) index on PostgreSQL
        time as price_at_epoch_ms,

        -- load metadata
        _dlt_load_id as load_id,

        -- validation: null on accepted points (concat_ws skips nulls)
        {{ coincap_rejection_columns(checked_fields) }}

    from checked

)

select * from renamed
