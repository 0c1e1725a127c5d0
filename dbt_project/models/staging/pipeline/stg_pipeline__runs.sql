{#- The run log table appears with the first cycle's row, which is written after that cycle's
    build: until then this view is empty (with the same columns and types), and the next build
    points it at the table. -#}
{%- set runs_table = source('pipeline', 'pipeline_runs') %}
{%- set relation = adapter.get_relation(
    database=runs_table.database, schema=runs_table.schema, identifier=runs_table.identifier
) if execute else none %}
{%- set exists = not execute or relation is not none %}
{#- coincap_credits arrived in 0.4.0: a run log written before has no such column until the
    first run-log row after the upgrade, which comes after that cycle's build -#}
{%- set has_credits = not execute or (relation is not none and 'coincap_credits' in (
    adapter.get_columns_in_relation(relation) | map(attribute='name') | list
)) %}

with

{% if exists %}

source as (

    select * from {{ runs_table }}

),

{% else %}

    source as (

        select
            cast(null as {{ text_type() }}) as run_id,
            cast(null as {{ timestamptz_type() }}) as started_at,
            cast(null as {{ timestamptz_type() }}) as finished_at,
            cast(null as {{ text_type() }}) as status,
            cast(null as {{ text_type() }}) as failed_step,
            cast(null as {{ text_type() }}) as source_freshness,
            cast(null as bigint) as rows_loaded,
            cast(null as bigint) as coincap_requests,
            cast(null as bigint) as coincap_credits,
            cast(null as bigint) as pending_packages_loaded,
            cast(null as {{ text_type() }}) as load_ids,
            cast(null as {{ text_type() }}) as error,
            -- `warehouse` is a keyword, and the run log's column name
            cast(null as {{ text_type() }}) as warehouse,  -- noqa: RF04
            cast(null as {{ text_type() }}) as _dlt_load_id

        where 1 = 0

    ),

{% endif %}

renamed as (

    select
        -- ids
        run_id,

        -- strings
        status,
        failed_step,
        source_freshness,
        error,
        warehouse,
        load_ids,

        -- numerics
        cast(rows_loaded as bigint) as rows_loaded,
        cast(coincap_requests as bigint) as coincap_requests,
        {% if has_credits -%}
            cast(coincap_credits as bigint) as coincap_credits,
        {%- else -%}
            cast(null as bigint) as coincap_credits,
        {%- endif %}
        cast(pending_packages_loaded as bigint) as pending_packages_loaded,

        -- timestamps (UTC)
        cast(started_at as {{ timestamptz_type() }}) as started_at,
        cast(finished_at as {{ timestamptz_type() }}) as finished_at,

        -- load metadata
        _dlt_load_id as load_id

    from source

)

select * from renamed
