{#-
    Use a model's custom schema verbatim (`staging`, `marts`) instead of dbt's default
    `<target_schema>_<custom_schema>`, so both warehouses expose the same schema names (docs/contract.md).
    Nodes without a custom schema fall back to the profile's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
