{#-
    A time series has no holes: within each partition (e.g. each asset), consecutive values of
    column_name (a timestamp) are at most interval_minutes apart. Only the covered range is
    checked, from each partition's first to its last timestamp. One failing row per hole: the
    series and the timestamps either side of the hole.

    recent: true checks only the points of the table's last `data_tests_recent_days` days and,
    for each series, the hole between its last older point and them (found through the table's
    key index), so the cost does not grow with history; `--vars '{data_tests_scope: all}'` checks
    it all (macros/test_scope.sql).

    excused_by (a relation with the partition column and `window_start_at`, `window_end_at`,
    e.g. ref('stg_coincap__asset_history_requests')): a hole is excused when its first and its
    last missing timestamp each lie inside one of the partition's windows (ends inclusive), i.e.
    someone asked for that data and recorded the answer. Holes nobody asked about still fail.
-#}
{% test continuous_series(
    model,
    column_name,
    partition_by,
    interval_minutes=5,
    recent=false,
    excused_by=none
) %}

{%- set scoped = recent and not data_tests_scope_is_all() %}
{%- set recent_days = var('data_tests_recent_days', 1) | int %}

with

{% if scoped -%}
    recent_points as (

        select
            {{ partition_by }} as series_id,
            {{ column_name }} as point_at

        from {{ model }}

        -- the newest days of the table (CoinCap's clock, whatever the warehouse's clock says); the
        -- newest point is one look-up in the index on the column
        where {{ column_name }} >= (
            select max({{ column_name }}) - interval '{{ recent_days }} days'
            from {{ model }}
        )

    ),

    first_recent_points as (

        select
            series_id,
            min(point_at) as first_at

        from recent_points

        group by series_id

    ),

    -- each series' last point before the window: a hole that ends in the window starts there
    points as (

        select series_id, point_at from recent_points

        union all

        select
            first_recent_points.series_id,
            (
                select max(older.{{ column_name }})
                from {{ model }} as older
                where older.{{ partition_by }} = first_recent_points.series_id
                  and older.{{ column_name }} < first_recent_points.first_at
            ) as point_at

        from first_recent_points

    ),
{%- else -%}
    points as (

        select
            {{ partition_by }} as series_id,
            {{ column_name }} as point_at

        from {{ model }}

    ),
{%- endif %}

ordered as (

    select
        series_id,
        lag(point_at) over (
            partition by series_id
            order by point_at
        ) as previous_at,
        point_at as next_at

    from points

    where point_at is not null

),

holes as (

    select
        series_id,
        previous_at,
        next_at,
        previous_at + interval '{{ interval_minutes }} minutes' as first_missing_at,
        next_at - interval '{{ interval_minutes }} minutes' as last_missing_at

    from ordered

    where next_at > previous_at + interval '{{ interval_minutes }} minutes'

),

{% if excused_by is not none -%}
windows as (

    select
        {{ partition_by }} as series_id,
        window_start_at,
        window_end_at

    from {{ excused_by }}

),

unexcused_holes as (

    select
        series_id,
        previous_at,
        next_at

    from holes

    where not (
        exists (
            select 1
            from windows
            where windows.series_id = holes.series_id
              and holes.first_missing_at between windows.window_start_at and windows.window_end_at
        )
        and exists (
            select 1
            from windows
            where windows.series_id = holes.series_id
              and holes.last_missing_at between windows.window_start_at and windows.window_end_at
        )
    )

)
{%- else -%}
unexcused_holes as (

    select
        series_id,
        previous_at,
        next_at

    from holes

)
{%- endif %}

select * from unexcused_holes

{% endtest %}
