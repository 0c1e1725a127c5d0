{#-
    Every non-null timestamp of column_name sits on the interval_minutes grid of the UTC clock
    (12:00, 12:05, ... for 5 minutes), as CoinCap's history points do.
-#}
{% test on_time_grid(model, column_name, interval_minutes=5) %}

with

off_grid as (

    select {{ column_name }} as off_grid_value

    from {{ model }}

    where {{ column_name }} <> {{ floor_to_grid(column_name, interval_minutes) }}

)

select * from off_grid

{% endtest %}
