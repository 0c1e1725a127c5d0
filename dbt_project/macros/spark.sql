{#-
    Spark's dialect (WAREHOUSE=spark, docs/spark.md): the overrides of the cross-database macros
    (macros/coincap_types.sql, coincap_validation.sql) and the type names the models cast to.
    Every Spark session runs in UTC (profiles/profiles.yml), so Spark's `timestamp` (an instant,
    shown in the session's time zone) is PostgreSQL's `timestamp with time zone`, and a cast to
    date is the UTC date. ANSI mode is on (Spark 4's default): a cast that does not fit raises,
    so casts of CoinCap's strings are try_casts, like DuckDB's.
-#}

{#- The SQL type names the models cast to, spelt for each engine. -#}
{% macro text_type() -%}
    {{ return(adapter.dispatch('text_type', 'coincap_elt')()) }}
{%- endmacro %}
{% macro default__text_type() -%}text{%- endmacro %}
{% macro spark__text_type() -%}string{%- endmacro %}

{% macro double_type() -%}
    {{ return(adapter.dispatch('double_type', 'coincap_elt')()) }}
{%- endmacro %}
{% macro default__double_type() -%}double precision{%- endmacro %}
{% macro spark__double_type() -%}double{%- endmacro %}

{% macro timestamptz_type() -%}
    {{ return(adapter.dispatch('timestamptz_type', 'coincap_elt')()) }}
{%- endmacro %}
{% macro default__timestamptz_type() -%}timestamp with time zone{%- endmacro %}
{% macro spark__timestamptz_type() -%}timestamp{%- endmacro %}


{% macro spark__matches_regex(expression, pattern) -%}
    ({{ expression }} rlike '^(?:{{ pattern }})$')
{%- endmacro %}

{#- Spark's string -> decimal cast reads plain and exponent forms exactly and rounds half away
    from zero, like PostgreSQL's; try_cast is null when the value does not fit. -#}
{% macro spark__coincap_decimal_rounded(column_name) -%}
    try_cast({{ column_name }} as decimal(38, 18))
{%- endmacro %}

{% macro spark__epoch_ms_to_timestamptz(column_name) -%}
    timestamp_millis({{ column_name }})
{%- endmacro %}

{% macro spark__utc_date(column_name) -%}
    cast({{ column_name }} as date)
{%- endmacro %}

{% macro spark__floor_to_grid(column_name, interval_minutes) -%}
    timestamp_millis(
        unix_millis({{ column_name }})
        - pmod(unix_millis({{ column_name }}), {{ interval_minutes * 60000 }})
    )
{%- endmacro %}

{% macro spark__timestamptz_to_epoch_ms(column_name) -%}
    unix_millis({{ column_name }})
{%- endmacro %}

{% macro spark__grid_slots(first_slot, last_at, interval_minutes, slot_column) -%}
    (
        select explode(
            sequence({{ first_slot }}, {{ last_at }}, interval {{ interval_minutes }} minutes)
        ) as {{ slot_column }}
    ) as slots
{%- endmacro %}


{#- How the incremental marts are materialised. Plain Parquet tables cannot delete or merge rows
    (Delta Lake or Iceberg can, but their jars are not part of Spark), so on Spark these marts
    are rebuilt whole each build: the same rows a full refresh gives, by construction, at the
    cost of reading staging in full (docs/spark.md, "Incremental marts"). -#}
{% macro incremental_mart() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}


{#- A raw table's rows, one per `key` (a list of columns). dlt merges raw by key on DuckDB and
    PostgreSQL, so there every row already is the newest of its key. On plain Parquet dlt can
    only append: a snapshot or history point loaded twice (a rerun, a pending package loaded
    after a kill, CoinCap re-sending a point) is two rows in raw, and the newest load's wins here,
    as dlt's merge would have it. -#}
{% macro raw_rows(relation, key) -%}
    {{ return(adapter.dispatch('raw_rows', 'coincap_elt')(relation, key)) }}
{%- endmacro %}

{% macro default__raw_rows(relation, key) -%}
    select * from {{ relation }}
{%- endmacro %}

{% macro spark__raw_rows(relation, key) -%}
    select * from {{ relation }}
    qualify row_number() over (
        partition by {{ key | join(', ') }} order by _dlt_load_id desc, _dlt_id
    ) = 1
{%- endmacro %}
