{#-
    Composite primary key: no two rows share the same values in combination_of_columns.
    (Same name and argument as dbt_utils' test, which cannot be installed here.)
    Pair it with not_null on each key column.
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

keyed as (

    select
        {{ combination_of_columns | join(',\n        ') }}

    from {{ model }}

),

duplicates as (

    select
        {{ combination_of_columns | join(',\n        ') }},
        count(*) as row_count

    from keyed
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1

)

select * from duplicates

{% endtest %}
