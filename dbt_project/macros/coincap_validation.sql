{#-
    Checks of CoinCap's raw strings before they are cast, so that one value that is not a number
    ("NaN", "abc", "1e400", "Infinity") holds back its own row instead of failing the whole build.
    Each *_problem macro returns a SQL expression: null when the value is fine, else a short reason
    that analysts read in marts.fct_rejected_asset_prices. Same results on DuckDB and Postgres.
-#}

{#- Whether the whole string matches `pattern` (a regular expression without anchors). -#}
{% macro matches_regex(expression, pattern) -%}
    {{ return(adapter.dispatch('matches_regex', 'coincap_elt')(expression, pattern)) }}
{%- endmacro %}

{% macro default__matches_regex(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro duckdb__matches_regex(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}


{#- A decimal string as CoinCap sends them ("-1.2345", "96239.8456418046889309"), no exponent, and
    at most 22 integer digits: what numeric(38, 16) holds (coincap_decimal). Null and "" mean "no
    value": fine for nullable fields, "missing" when `required`. `positive`: above zero too. -#}
{% macro coincap_decimal_problem(column_name, required=false, positive=false) -%}
    case
        when {{ column_name }} is null or {{ column_name }} = ''
            then {{ "'missing'" if required else "cast(null as text)" }}
        when not {{ matches_regex(column_name, '-?[0-9]+([.][0-9]+)?') }}
            then 'not a decimal number'
        when not {{ matches_regex(column_name, '-?0*[0-9]{1,22}([.][0-9]+)?') }}
            then 'too large: more than 22 integer digits'
        {%- if positive %}
        when {{ coincap_decimal(column_name) }} <= 0
            then 'not above zero'
        {%- endif %}
    end
{%- endmacro %}


{#- A rank: a whole number from 1, at most 9 digits (fits an integer); null and "" mean none. -#}
{% macro coincap_rank_problem(column_name) -%}
    case
        when {{ column_name }} is null or {{ column_name }} = ''
            then cast(null as text)
        when not {{ matches_regex(column_name, '0*[1-9][0-9]{0,8}') }}
            then 'not a whole number from 1'
    end
{%- endmacro %}
