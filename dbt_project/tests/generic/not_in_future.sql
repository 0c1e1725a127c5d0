{#-
    No timestamp lies in the future. tolerance (an interval literal such as '5 minutes') allows for
    clock skew between the data's producer and the warehouse.
-#}
{% test not_in_future(model, column_name, tolerance='0 seconds') %}

with

future_rows as (

    select {{ column_name }} as future_value

    from {{ model }}

    where {{ column_name }} > current_timestamp + interval '{{ tolerance }}'

)

select * from future_rows

{% endtest %}
