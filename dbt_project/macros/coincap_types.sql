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
