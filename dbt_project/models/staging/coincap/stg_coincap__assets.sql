{#- CoinCap's numeric fields (raw column: staging column), checked before they are cast. -#}
{%- set checked_fields = {
    'rank': 'rank',
    'price_usd': 'price_usd',
    'market_cap_usd': 'market_cap_usd',
    'volume_usd24_hr': 'volume_usd_24h',
    'supply': 'supply',
    'max_supply': 'max_supply',
    'change_percent24_hr': 'change_percent_24h',
    'vwap24_hr': 'vwap_24h',
} %}

{#- the price is required and must be above zero after rounding -#}
{%- set price_usd_problem = coincap_decimal_problem('price_usd', required=true, positive=true) %}

with

source as (

    {{ raw_rows(source('coincap', 'assets'), ['id', 'coincap_timestamp']) }}

),

-- a value that is not a number, or does not fit numeric(38, 18), holds back its row
-- (rejected_fields is not null) instead of failing the cast for every row: the price must be
-- above zero, the other numbers may be null or "" (no value) but nothing else
checked as (

    select
        *,
        {{ coincap_rank_problem('rank') }} as rank_problem,
        {{ price_usd_problem }} as price_usd_problem,
        {{ coincap_decimal_problem('market_cap_usd') }} as market_cap_usd_problem,
        {{ coincap_decimal_problem('volume_usd24_hr') }} as volume_usd24_hr_problem,
        {{ coincap_decimal_problem('supply') }} as supply_problem,
        {{ coincap_decimal_problem('max_supply') }} as max_supply_problem,
        {{ coincap_decimal_problem('change_percent24_hr') }} as change_percent24_hr_problem,
        {{ coincap_decimal_problem('vwap24_hr') }} as vwap24_hr_problem

    from source

),

renamed as (

    select
        -- ids
        id as asset_id,

        -- strings
        symbol,
        name,
        explorer,

        -- numerics: exact decimals, never floats; null where the value was rejected
        case when rank_problem is null then cast(nullif(rank, '') as integer) end as rank,
        {%- for raw, column in checked_fields.items() if raw != 'rank' %}
            case
                when {{ raw }}_problem is null then {{ coincap_decimal(raw) }}
            end as {{ column }},
        {%- endfor %}

        -- timestamps (UTC)
        {{ epoch_ms_to_timestamptz('coincap_timestamp') }} as observed_at,

        -- load metadata
        _dlt_load_id as load_id,

        -- validation: null on accepted rows (concat_ws skips nulls)
        {{ coincap_rejection_columns(checked_fields) }}

    from checked

)

select * from renamed
