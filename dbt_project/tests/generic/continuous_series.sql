{#-
    A time series has no holes: within each partition (e.g. each asset), consecutive values of
    column_name (a timestamp) are at most interval_minutes apart. Only the covered range is
    checked, from each partition's first to its last timestamp. One failing row per hole: the
    series and the timestamps either side of the hole.
-#}
{% test continuous_series(model, column_name, partition_by, interval_minutes=5) %}

with

ordered as (

    select
        {{ partition_by }} as series_id,
        lag({{ column_name }}) over (
            partition by {{ partition_by }}
            order by {{ column_name }}
        ) as previous_at,
        {{ column_name }} as next_at

    from {{ model }}

    where {{ column_name }} is not null

),

holes as (

    select
        series_id,
        previous_at,
        next_at

    from ordered

    where next_at > previous_at + interval '{{ interval_minutes }} minutes'

)

select * from holes

{% endtest %}
