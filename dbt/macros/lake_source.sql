{#
  Reading a lake source that may have no blocks yet.

  A source's external location is `read_parquet('<lake>/<source>/month=*/data.parquet', ...)`,
  and DuckDB refuses a glob that matches no file ("No files found that match the pattern"). Until
  a source's DAG lands its first block that would break every model over it, including a conformed
  fact that unions several sources and is built by whichever source's DAG runs first.

  `lake_source(source_name, table_name)` is `source()` plus that case: at run time it counts the
  files the glob matches (DuckDB's `glob()` table function, which returns no rows instead of
  failing) and, when there are none, returns an empty relation typed from the source's columns
  as declared in its sources yml (`data_type` on every column: the lake contract). A staging view
  built that way stays empty until it is rebuilt, which the source's own DAG does right after it
  lands blocks. DuckDB views re-expand the glob on every read, so a view built over real files
  sees new blocks without a rebuild.

  Usage, in a staging model:  select * from {{ lake_source('toronto_311', 'requests') }}
#}

{% macro lake_source(source_name, table_name) -%}
    {#- source() is called unconditionally so dbt records the dependency when it parses. -#}
    {%- set relation = source(source_name, table_name) -%}
    {%- if not execute -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set match = modules.re.search("read_parquet[(] *'([^']+)'", relation | string) -%}
    {%- if match is none -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set pattern = match.group(1) -%}
    {%- set files = run_query("select count(*) from glob('" ~ pattern | replace("'", "''") ~ "')").columns[0].values()[0] -%}
    {%- if files > 0 -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set node = graph.sources['source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name] -%}
    {%- set columns = [] -%}
    {%- for column in node.columns.values() -%}
        {%- if not column.data_type -%}
            {{- exceptions.raise_compiler_error(
                "lake_source: no file matches " ~ pattern ~ " and column " ~ column.name ~ " of source "
                ~ source_name ~ "." ~ table_name ~ " has no data_type, so no empty relation can stand in for it") -}}
        {%- endif -%}
        {%- do columns.append([column.name, column.data_type]) -%}
    {%- endfor -%}
    {%- if not columns -%}
        {{- exceptions.raise_compiler_error("lake_source: no file matches " ~ pattern ~ " and source "
            ~ source_name ~ "." ~ table_name ~ " declares no columns") -}}
    {%- endif -%}
    {{- log("lake_source: no block of " ~ source_name ~ " is landed (" ~ pattern ~ "): reading it as empty", info=true) -}}
    {{- return('(' ~ empty_relation(columns) ~ ')') -}}
{%- endmacro %}


{#- A relation with the given [name, type] columns and no rows. -#}
{% macro empty_relation(columns) -%}
    select
    {%- for column in columns %}
        cast(null as {{ column[1] }}) as {{ column[0] }}{{ ',' if not loop.last }}
    {%- endfor %}
    where false
{%- endmacro %}


{#- Whether a model's relation exists in the warehouse (always true while parsing). A source's
    staging view does not exist before that source's DAG first runs. -#}
{% macro relation_exists(relation) -%}
    {%- if not execute -%}
        {{- return(true) -}}
    {%- endif -%}
    {{- return(load_relation(relation) is not none) -}}
{%- endmacro %}
