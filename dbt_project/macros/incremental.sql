{#-
    The incremental marts' watermark: the newest dlt load id already in the table (`this`), as a
    literal. A literal, not a subquery, because PostgreSQL plans `load_id > (select max(...))`
    as if a third of the table matched and reads all of it; against a literal it sees the few
    new rows and takes them through the load_id index (macros/indexes.sql). In a unit test
    (`this` is then the fixture's name, a string) it stays a subquery.
-#}
{% macro load_id_watermark(relation=none) -%}
    {%- set relation = relation if relation is not none else this -%}
    {%- if relation is string or not execute -%}
        (select coalesce(max(load_id), '') from {{ relation }})
    {%- else -%}
        {%- set result = run_query("select coalesce(max(load_id), '') from " ~ relation) -%}
        '{{ result.columns[0].values()[0] }}'
    {%- endif -%}
{%- endmacro %}
