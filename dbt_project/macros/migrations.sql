{#-
    on-run-start: upgrades a warehouse built before 0.4.0 in place, so its incremental marts keep
    loading without a manual step. 0.4.0 keeps CoinCap's 18 decimal places: the marts' numbers went
    from numeric(38, 16) to numeric(38, 18). Without this, the first build after the upgrade fails
    (an incremental mart's new rows no longer match its contract) and fct_asset_prices silently
    keeps only 16 decimals of new rows. Widening keeps every stored value (16 decimals are exact
    in 18); rows loaded before the upgrade keep the 16 decimals they had, and
    `dbt build --full-refresh` recomputes them from raw with all 18.

    Idempotent: only columns still numeric(38, 16) are altered, so after the first build this
    is one catalogue query. On PostgreSQL, ALTER ... TYPE rewrites the table once, and refuses if
    a view someone created on the marts reads that column (drop and re-create that view).
-#}
{% macro widen_coincap_numbers() -%}
    {%- set statements = [] -%}
    {#- Spark warehouses start at 0.7.0, with numeric(38, 18) from the first build -#}
    {%- if execute and target.type != 'spark' -%}
        {%- set marts = [
            'fct_asset_prices', 'dim_assets', 'fct_asset_price_history', 'fct_asset_prices_daily'
        ] -%}
        {%- set narrow_columns_query -%}
            select
                columns.table_name,
                columns.column_name

            from information_schema.columns as columns

            inner join information_schema.tables as tables
                on columns.table_schema = tables.table_schema
                and columns.table_name = tables.table_name

            where columns.table_schema = 'marts'
              and columns.table_name in ('{{ marts | join("', '") }}')
              and tables.table_type = 'BASE TABLE'
              and columns.numeric_precision = 38
              and columns.numeric_scale = 16

            order by columns.table_name, columns.ordinal_position
        {%- endset -%}
        {%- for row in run_query(narrow_columns_query) -%}
            {%- do statements.append(
                'alter table marts.' ~ adapter.quote(row[0]) ~ ' alter column '
                ~ adapter.quote(row[1]) ~ ' type numeric(38, 18)'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if statements -%}
        {{ log(
            'widening ' ~ statements | length ~ ' mart column(s) to numeric(38, 18)', info=true
        ) }}
    {%- endif -%}
    {{ return(statements | join(';\n') if statements else 'select 1') }}
{%- endmacro %}
