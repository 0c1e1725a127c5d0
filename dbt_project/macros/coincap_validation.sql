{#-
    Checks of CoinCap's raw strings before they are cast, so that one value that is not a number
    ("NaN", "abc", "Infinity") or does not fit ("1e400") holds back its own row instead of failing
    the whole build.
    Each *_problem macro returns a SQL expression: null when the value is fine, else a short reason
    that analysts read in marts.fct_rejected_asset_prices and marts.fct_rejected_asset_history.
    Same verdicts and values on DuckDB and Postgres.
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


{#- A number as CoinCap sends them, plain or in exponent form ("96239.845641804688930900",
    "1.58e-05", "-2.5e-3", "+1E+3"), that fits numeric(38, 18) after rounding to 18 decimals: what
    coincap_decimal returns non-null for. Null and "" mean "no value": fine for nullable fields,
    "missing" when `required`. `positive`: above zero too, after rounding ("1e-19" rounds to 0).
    Surrounding whitespace is not accepted: CoinCap sends none, and " 1" is not a value as sent. -#}
{% macro coincap_decimal_problem(column_name, required=false, positive=false) -%}
    case
        when {{ column_name }} is null or {{ column_name }} = ''
            then {{ "'missing'" if required else "cast(null as " ~ text_type() ~ ")" }}
        when not {{ matches_regex(column_name, coincap_number_pattern()) }}
            then 'not a number'
        when {{ matches_regex(column_name, '.*[eE][+-]?[0-9]{4,}') }}
            then 'out of range (an exponent of more than 3 digits)'
        when length({{ column_name }}) > 1000
            then 'out of range (longer than 1000 characters)'
        when {{ coincap_decimal(column_name) }} is null
            then 'out of range (more than 20 integer digits after rounding to 18 decimals)'
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
            then cast(null as {{ text_type() }})
        when not {{ matches_regex(column_name, '0*[1-9][0-9]{0,8}') }}
            then 'not a whole number from 1'
    end
{%- endmacro %}


{#- The three columns that say why a row is held back, from the `<raw column>_problem` columns of
    `checked_fields` (raw column -> the column's name in staging): `rejected_fields` (e.g.
    `price_usd, supply`), `rejected_values` (as sent, e.g. `price_usd="NaN"`) and
    `rejection_reason` (e.g. `price_usd: not a number`); all null on accepted rows (concat_ws
    skips nulls). Both staging models of CoinCap's numbers use it. -#}
{% macro coincap_rejection_columns(checked_fields) -%}
    nullif(concat_ws(', '
        {%- for raw, column in checked_fields.items() %},
        case when {{ raw }}_problem is not null then '{{ column }}' end
        {%- endfor %}
    ), '') as rejected_fields,
    nullif(concat_ws('; '
        {%- for raw, column in checked_fields.items() %},
        case when {{ raw }}_problem is not null
            then '{{ column }}=' || coalesce('"' || left({{ raw }}, 40) || '"', 'null') end
        {%- endfor %}
    ), '') as rejected_values,
    nullif(concat_ws('; '
        {%- for raw, column in checked_fields.items() %},
        case when {{ raw }}_problem is not null then '{{ column }}: ' || {{ raw }}_problem end
        {%- endfor %}
    ), '') as rejection_reason
{%- endmacro %}
