{#-
    Data tests of the growing tables check what a cycle adds, not the whole history, so a cycle
    costs the same after a year as after a day (docs/benchmarks.md). Their `where` configs use these
    placeholders, expanded here when the test runs:

      __new__(fct_asset_prices)   staging rows the mart has not taken in yet: load_id above the
                                  mart's newest load_id, i.e. exactly what this build is about
                                  to let into the marts (everything while the mart is missing)
      __recent__(price_at)        rows whose timestamp or date lies within the last
                                  `data_tests_recent_days` days
      __recent_loads__            rows from loads of the last `data_tests_recent_days` days

    The predicates are plain comparisons on indexed columns (never `... or x is null`, which
    makes PostgreSQL read the whole table): load_id is never null (dlt's _dlt_load_id; the marts'
    contracts), and the marts' key timestamps are not null by contract, tested by load instead.

    Every test checks the whole table again with `--vars '{data_tests_scope: all}'`, e.g.
        dbt build --project-dir dbt_project --profiles-dir profiles --vars '{data_tests_scope: all}'
    (after restoring a backup, fixing raw by hand, or changing a model).
    Overrides dbt's get_where_subquery, as dbt's documentation shows for custom `where` logic.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__' in where -%}
            {%- set where = expand_test_scope(where) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{#- Whether the data tests check only what is new (the default) or every row. -#}
{% macro data_tests_scope_is_all() -%}
    {%- set scope = var('data_tests_scope', 'new') -%}
    {%- if scope not in ('new', 'all') -%}
        {{ exceptions.raise_compiler_error(
            "data_tests_scope is '" ~ scope ~ "'; use 'new' (default) or 'all'"
        ) }}
    {%- endif -%}
    {{ return(scope == 'all') }}
{%- endmacro %}


{% macro expand_test_scope(where) -%}
    {%- set re = modules.re -%}
    {%- set all_rows = data_tests_scope_is_all() -%}
    {%- set days = var('data_tests_recent_days', 1) | int -%}
    {#- a namespace: a plain `set` inside a for loop would not outlive the loop -#}
    {%- set scoped = namespace(where=where) -%}

    {#- __new__(model): above the mart's watermark -#}
    {%- for mart in re.findall('__new__\\((\\w+)\\)', where) -%}
        {%- set relation = adapter.get_relation(
            database=target.database, schema='marts', identifier=mart
        ) -%}
        {%- if all_rows or relation is none -%}
            {%- set predicate = '1 = 1' -%}
        {%- else -%}
            {%- set predicate = "load_id > " ~ load_id_watermark(relation) -%}
        {%- endif -%}
        {%- set scoped.where = scoped.where | replace('__new__(' ~ mart ~ ')', predicate) -%}
    {%- endfor -%}

    {#- __recent__(column): a timestamp or date within the last days -#}
    {%- for column in re.findall('__recent__\\((\\w+)\\)', where) -%}
        {%- if all_rows -%}
            {%- set predicate = '1 = 1' -%}
        {%- else -%}
            {%- set predicate = column ~ " >= current_timestamp - interval '" ~ days ~ " days'" -%}
        {%- endif -%}
        {%- set scoped.where = scoped.where | replace('__recent__(' ~ column ~ ')', predicate) -%}
    {%- endfor -%}

    {#- __recent_loads__: dlt load ids are the load's start in epoch seconds ("1764325123.4567891"),
        so a text comparison with a 10-digit epoch orders them (until the year 2286) -#}
    {%- if '__recent_loads__' in where -%}
        {%- if all_rows -%}
            {%- set predicate = '1 = 1' -%}
        {%- else -%}
            {%- set since = (
                modules.datetime.datetime.now(modules.pytz.utc).timestamp() - days * 86400
            ) | int -%}
            {%- set predicate = "load_id >= '" ~ since ~ "'" -%}
        {%- endif -%}
        {%- set scoped.where = scoped.where | replace('__recent_loads__', predicate) -%}
    {%- endif -%}
    {{ return(scoped.where) }}
{%- endmacro %}
