{#
  Incremental replace of re-landed lake blocks, shared by every source's fact.

  The lake replaces a block (one source-month) whole: rows can change, and rows can disappear
  (an offense withdrawn, a request merged). A plain merge on the natural key would keep the rows
  that disappeared, so a fact built from blocks does two things on an incremental run:

    1. pre_hook: `replace_landed_blocks(upstream)` deletes from {{ this }} every row of a block that
       has been landed again since the last build (its rows in `upstream` carry a `_landed_at`
       newer than the newest one in {{ this }}).
    2. model body: `where {{ landed_since_last_build() }}` reads only rows landed after the newest
       landing still in {{ this }}: the re-landed and the new blocks. The watermark is evaluated
       after the delete, which is what re-inserts the deleted blocks in full.

  Both run in the same transaction as the delete+insert on the natural key, so a failure leaves
  the fact as it was.

  Usage in a model:
    {{ config(materialized='incremental', unique_key='offense_id',
              incremental_strategy='delete+insert',
              pre_hook="{{ replace_landed_blocks(ref('stg_x__y')) }}") }}
    select ... from {{ ref('stg_x__y') }}
    {% if is_incremental() %} where {{ landed_since_last_build() }} {% endif %}
#}

{% macro replace_landed_blocks(upstream, block_column='_block_month', landed_at_column='_landed_at') -%}
    {#- Nothing to replace on the first build, on --full-refresh, or when the target is not yet a
        table: the materialization builds it from scratch. An empty string makes dbt skip the hook. -#}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set existing = load_relation(this) -%}
    {%- if existing is none or existing.is_view or should_full_refresh() -%}
        {{- return('') -}}
    {%- endif -%}
    delete from {{ this }}
    where {{ block_column }} in (
        select distinct {{ block_column }}
        from {{ upstream }}
        where {{ landed_at_column }} > (select max({{ landed_at_column }}) from {{ this }})
    )
{%- endmacro %}


{% macro landed_since_last_build(landed_at_column='_landed_at') -%}
    {#- An empty target (e.g. every block deleted) has no watermark: take everything. -#}
    {{ landed_at_column }} > (
        select coalesce(max({{ landed_at_column }}), timestamptz '1970-01-01 00:00:00+00')
        from {{ this }}
    )
{%- endmacro %}
