{#- The project's name for a fact (fct_), published under the name the contract gives it:
    marts.pipeline_runs (docs/contract.md), which dashboards and scripts already query. -#}
{{ config(materialized='view', alias='pipeline_runs') }}

-- A view, so a cycle's row is visible as soon as the cycle wrote it, without another build.
with

runs as (

    select * from {{ ref('stg_pipeline__runs') }}

),

final as (

    select
        run_id,
        status,
        failed_step,
        source_freshness,
        error,
        warehouse,
        load_ids,
        rows_loaded,
        coincap_requests,
        coincap_credits,
        pending_packages_loaded,
        started_at,
        finished_at

    from runs

)

select * from final
