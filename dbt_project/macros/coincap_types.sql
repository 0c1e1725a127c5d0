{#-
    Cross-database helpers for CoinCap's raw values. Every model that needs them calls these, so
    DuckDB and Postgres produce the same types and the same values.
-#}

{#- CoinCap sends numbers as strings printed from 64-bit floats: 18 decimal places
    ("80399.570000000006984919"), up to 15+ integer digits (supply of meme coins), and small
    values in exponent form ("1.58e-05"). numeric(38, 18) keeps 18 decimals and 20 integer digits,
    exactly, on both engines. Returns the value rounded to 18 decimals (half away from zero, as
    PostgreSQL's round() does), or null for anything that is not such a number: null, "", text that
    is not a plain or exponent-form decimal, an exponent of 4+ digits, a string longer than 1000
    characters, or a value that does not fit after rounding. Never raises, whatever the string
    holds; coincap_decimal_problem (macros/coincap_validation.sql) says why a value is null. -#}
{% macro coincap_decimal(column_name) -%}
    case
        when {{ coincap_decimal_is_parsable(column_name) }}
            then {{ coincap_decimal_rounded(column_name) }}
    end
{%- endmacro %}


{#- The shape of a number both engines parse exactly: an optional sign, digits with an optional
    decimal point (".5" and "5." included), an optional exponent. No surrounding whitespace. -#}
{% macro coincap_number_pattern() -%}
    {{ return('[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?') }}
{%- endmacro %}


{#- Whether coincap_decimal may cast the string: a number (coincap_number_pattern) with an exponent
    of at most 3 digits (64-bit floats print e-324 to e+308) and at most 1000 characters, so that
    no engine's own limits are ever reached (PostgreSQL refuses more than 16383 decimals). -#}
{% macro coincap_decimal_is_parsable(column_name) -%}
    (
        {{ matches_regex(column_name, coincap_number_pattern()) }}
        and not {{ matches_regex(column_name, '.*[eE][+-]?[0-9]{4,}') }}
        and length({{ column_name }}) <= 1000
    )
{%- endmacro %}


{#- The parsable string (coincap_decimal_is_parsable) as numeric(38, 18), rounded to 18 decimals,
    or null when it does not fit (20 integer digits). -#}
{% macro coincap_decimal_rounded(column_name) -%}
    {{ return(adapter.dispatch('coincap_decimal_rounded', 'coincap_elt')(column_name)) }}
{%- endmacro %}

{#- PostgreSQL: its unconstrained numeric reads plain and exponent forms exactly; round, then
    check the range before the cast to numeric(38, 18), which would raise on overflow. -#}
{% macro default__coincap_decimal_rounded(column_name) -%}
    cast(
        case
            when abs(round(cast({{ column_name }} as numeric), 18)) < 1e20
                then round(cast({{ column_name }} as numeric), 18)
        end
        as numeric(38, 18)
    )
{%- endmacro %}

{#- DuckDB: its varchar -> decimal cast rounds a plain decimal string exactly like PostgreSQL
    (half away from zero, any number of digits), but in exponent form it rounds the mantissa to
    the target scale before shifting it ("0.000...01e44" -> 0) and refuses mantissas wider than
    the target ("123456789012345678901.5e-1"). So the exponent is applied to the string first
    (the decimal point moved by it), and the plain string is cast: null when it does not fit. -#}
{% macro duckdb__coincap_decimal_rounded(column_name) -%}
    {%- set sign = "regexp_extract(" ~ column_name ~ ", '^([+-]?)', 1)" -%}
    {%- set int_digits = "regexp_extract(" ~ column_name ~ ", '^[+-]?([0-9]*)', 1)" -%}
    {%- set frac_digits = "regexp_extract(" ~ column_name ~ ", '^[+-]?[0-9]*[.]?([0-9]*)', 1)" -%}
    {%- set digits = "(" ~ int_digits ~ " || " ~ frac_digits ~ ")" -%}
    {%- set exponent -%}
        cast(coalesce(nullif(
            regexp_extract({{ column_name }}, '[eE]([+-]?[0-9]+)$', 1), ''), '0') as integer)
    {%- endset -%}
    {#- where the decimal point goes, counted in digits from the left -#}
    {%- set point = "(length(" ~ int_digits ~ ") + " ~ exponent ~ ")" -%}
    try_cast(
        {{ sign }} || case
            when {{ point }} <= 0
                then '0.' || repeat('0', -{{ point }}) || {{ digits }}
            when {{ point }} >= length({{ digits }})
                then {{ digits }} || repeat('0', {{ point }} - length({{ digits }}))
            else left({{ digits }}, {{ point }}) || '.' || substr({{ digits }}, {{ point }} + 1)
        end
        as decimal(38, 18)
    )
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
    {{ return(adapter.dispatch('utc_date', 'coincap_elt')(column_name)) }}
{%- endmacro %}

{% macro default__utc_date(column_name) -%}
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


{#- A lateral set of the `interval_minutes` slots from `first_slot` to `last_at` (both
    `timestamp with time zone`, inclusive), one row per slot in column `slot_column`:
    `cross join lateral {{ grid_slots('first_at', 'last_at', 5, 'slot_at') }}`. -#}
{% macro grid_slots(first_slot, last_at, interval_minutes, slot_column) -%}
    {{ return(adapter.dispatch('grid_slots', 'coincap_elt')(
        first_slot, last_at, interval_minutes, slot_column)) }}
{%- endmacro %}

{#- PostgreSQL's generate_series over timestamps. DuckDB accepts the same lateral call (checked
    with DuckDB 1.x and 2.0), so it needs no override of its own. -#}
{% macro default__grid_slots(first_slot, last_at, interval_minutes, slot_column) -%}
    generate_series(
        {{ first_slot }},
        {{ last_at }},
        interval '{{ interval_minutes }} minutes'
    ) as slots ({{ slot_column }})
{%- endmacro %}
