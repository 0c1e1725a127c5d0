{#-
    Cross-database helpers for CoinCap's raw values. Every model that needs them calls these, so
    DuckDB and Postgres produce the same types and the same values.
-#}

{#- CoinCap sends numbers as strings with up to 16 decimals and up to 15+ integer digits (supply
    of meme coins). numeric(38, 16) keeps 16 decimals and 22 integer digits, exactly, on both
    engines. An empty string means "no value", like null. -#}
{% macro coincap_decimal(column_name) -%}
    cast(nullif({{ column_name }}, '') as numeric(38, 16))
{%- endmacro %}


{#- CoinCap's timestamps are milliseconds since the Unix epoch, UTC. Returns a
    `timestamp with time zone`, exact to the millisecond and independent of the session time zone. -#}
{% macro epoch_ms_to_timestamptz(column_name) -%}
    {{ return(adapter.dispatch('epoch_ms_to_timestamptz', 'coincap_elt')(column_name)) }}
{%- endmacro %}

{% macro default__epoch_ms_to_timestamptz(column_name) -%}
    (to_timestamp(0) + {{ column_name }} * interval '1 millisecond')
{%- endmacro %}

{% macro duckdb__epoch_ms_to_timestamptz(column_name) -%}
    make_timestamptz({{ column_name }} * 1000)
{%- endmacro %}


{#- The UTC calendar date of a `timestamp with time zone`, whatever the session time zone is. -#}
{% macro utc_date(column_name) -%}
    cast(({{ column_name }} at time zone 'UTC') as date)
{%- endmacro %}


{#- The start of the `interval_minutes`-wide slot of the UTC clock that a `timestamp with time zone`
    falls in: 12:07:03.457 -> 12:05:00 on the 5-minute grid, the grid CoinCap's m5 history points
    sit on. Slots are counted from the Unix epoch, so the result is the same in every session time
    zone (including those offset by 30 or 45 minutes). Needs Postgres 14+ (date_bin). -#}
{% macro floor_to_grid(column_name, interval_minutes=5) -%}
    {{ return(adapter.dispatch('floor_to_grid', 'coincap_elt')(column_name, interval_minutes)) }}
{%- endmacro %}

{% macro default__floor_to_grid(column_name, interval_minutes) -%}
    date_bin(
        interval '{{ interval_minutes }} minutes',
        {{ column_name }},
        timestamp with time zone '1970-01-01 00:00:00+00'
    )
{%- endmacro %}

{% macro duckdb__floor_to_grid(column_name, interval_minutes) -%}
    time_bucket(
        interval '{{ interval_minutes }} minutes',
        {{ column_name }},
        timestamp with time zone '1970-01-01 00:00:00+00'
    )
{%- endmacro %}


{#- A `timestamp with time zone` as milliseconds since the Unix epoch (a bigint): the inverse of
    epoch_ms_to_timestamptz, to compare with CoinCap's raw millisecond columns. -#}
{% macro timestamptz_to_epoch_ms(column_name) -%}
    {{ return(adapter.dispatch('timestamptz_to_epoch_ms', 'coincap_elt')(column_name)) }}
{%- endmacro %}

{% macro default__timestamptz_to_epoch_ms(column_name) -%}
    cast(extract(epoch from {{ column_name }}) * 1000 as bigint)
{%- endmacro %}

{% macro duckdb__timestamptz_to_epoch_ms(column_name) -%}
    epoch_ms({{ column_name }})
{%- endmacro %}
