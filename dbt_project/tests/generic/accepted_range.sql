{#-
    Every non-null value of column_name lies within [min_value, max_value]; either bound may be
    omitted. inclusive: false makes both bounds strict (e.g. price_usd > 0).
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("accepted_range needs min_value, max_value or both") }}
{%- endif -%}

{%- set lower_op = '>=' if inclusive else '>' -%}
{%- set upper_op = '<=' if inclusive else '<' -%}

with

out_of_range as (

    select {{ column_name }} as value_out_of_range

    from {{ model }}

    where {{ column_name }} is not null
      and not (
        1 = 1
        {%- if min_value is not none %}
            and {{ column_name }} {{ lower_op }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
            and {{ column_name }} {{ upper_op }} {{ max_value }}
        {%- endif %}
      )

)

select * from out_of_range

{% endtest %}
