{#-
    PostgreSQL indexes that keep a cycle's cost flat as history grows (docs/benchmarks.md). DuckDB
    needs none: its per-block min/max skips old rows, and its indexes would only slow the loads.

    Each index is created once, with a fixed name and `if not exists`, so a warehouse built
    before these indexes existed gets them on its next build (dbt's own `indexes` config only
    indexes a table when it is created, never an existing incremental one).
-#}

{#- A post-hook: `{{ ensure_index(['load_id']) }}` indexes the model's table on those columns. -#}
{% macro ensure_index(columns) -%}
    {%- if target.type == 'postgres' -%}
        create index if not exists "{{ this.identifier }}__{{ columns | join('__') }}"
        on {{ this }} ({{ columns | join(', ') }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- on-run-start: indexes on dlt's raw tables (dlt writes them without any, create_indexes=False
    in ingest/coincap_pipeline.py). `_dlt_load_id` is the incremental watermark every build and
    the staging tests read; (key) is what dlt's merge deletes by on every load. Indexes hold no
    data: raw's rows and values stay exactly as dlt wrote them. -#}
{% macro ensure_raw_indexes() -%}
    {%- set statements = [] -%}
    {%- if execute and target.type == 'postgres' -%}
        {%- set wanted = {
            'assets': [['_dlt_load_id'], ['id', 'coincap_timestamp']],
            'asset_history': [['_dlt_load_id'], ['asset_id', 'time']],
        } -%}
        {%- for table, indexes in wanted.items() -%}
            {%- set relation = adapter.get_relation(
                database=target.database, schema='raw', identifier=table
            ) -%}
            {%- if relation is not none -%}
                {%- for columns in indexes -%}
                    {%- do statements.append(
                        'create index if not exists "' ~ table ~ '__' ~ columns | join('__')
                        ~ '" on ' ~ relation ~ ' (' ~ columns | map('tojson') | join(', ') ~ ')'
                    ) -%}
                {%- endfor -%}
            {%- endif -%}
        {%- endfor -%}
        {#- `dbt source freshness` asks for max() of the source's loaded_at_field
            (_coincap__sources.yml): this index on exactly that expression answers it with one
            look-up instead of reading the whole table. Keep the two in step. -#}
        {%- set assets = adapter.get_relation(
            database=target.database, schema='raw', identifier='assets'
        ) -%}
        {%- if assets is not none -%}
            {%- do statements.append(
                'create index if not exists "assets__loaded_at" on ' ~ assets
                ~ ' ((to_timestamp(coincap_timestamp / 1000.0)))'
            ) -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(statements | join(';\n') if statements else 'select 1') }}
{%- endmacro %}
