{#
  Incremental replace of re-landed lake blocks, shared by every source's fact.

  The lake replaces a block (one source-month) whole: rows can change, and rows can disappear
  (an offense withdrawn, a request merged). A plain merge on the natural key would keep the rows
  that disappeared, so a fact built from blocks does two things on an incremental run:

    1. pre_hook `replace_landed_blocks(upstream)`: deletes from {{ this }} every block whose
       landing in the lake differs from the landing the fact holds (compared per block, on the
       block's `_landed_at`). Comparing per block rather than against one global high-water mark
       means a block that finished landing after a newer block was already built is never missed.
    2. model body `where {{ blocks_missing_from_target() }}`: reads the blocks the fact does not
       hold, which after the delete are exactly the new and the re-landed ones, in full.

  Both run in the same transaction as the delete+insert on the natural key, so a failure leaves
  the fact as it was. (A block re-landed with zero rows leaves no rows to compare, so its old rows
  stay until the next full refresh.)

  Usage in a model:
    {{ config(materialized='incremental', unique_key='offense_id',
              incremental_strategy='delete+insert',
              pre_hook="{{ replace_landed_blocks(ref('stg_x__y')) }}") }}
    select ... from {{ ref('stg_x__y') }}
    {% if is_incremental() %} where {{ blocks_missing_from_target() }} {% endif %}

  A fact that unions several sources (fct_service_requests: one branch per city) keeps each
  source's blocks apart with `target_filter`, a dict of column -> value that selects the source's
  rows in {{ this }}: one pre_hook per source, and the same filter in that branch's where clause:
    pre_hook=["{{ replace_landed_blocks(ref('stg_a'), target_filter={'city': 'a'}) }}", ...]
    ... from {{ ref('stg_a') }} where {{ blocks_missing_from_target(target_filter={'city': 'a'}) }}
  The hook does nothing while the upstream relation does not exist yet (a source whose DAG has
  never run: its staging view is not built).
#}

{% macro replace_landed_blocks(upstream, block_column='_block_month', landed_at_column='_landed_at', target_filter=none) -%}
    {#- Nothing to replace on the first build, on --full-refresh, or when the target is not yet a
        table: the materialization builds it from scratch. An empty string makes dbt skip the hook. -#}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set existing = load_relation(this) -%}
    {%- if existing is none or existing.is_view or should_full_refresh() -%}
        {{- return('') -}}
    {%- endif -%}
    {%- if load_relation(upstream) is none -%}
        {{- return('') -}}
    {%- endif -%}
    delete from {{ this }}
    where {{ target_filter_sql(target_filter) }}
      and {{ block_column }} in (
        select lake.{{ block_column }}
        from (
            select {{ block_column }}, max({{ landed_at_column }}) as landed_at
            from {{ upstream }}
            group by 1
        ) as lake
        join (
            select {{ block_column }}, max({{ landed_at_column }}) as landed_at
            from {{ this }}
            where {{ target_filter_sql(target_filter) }}
            group by 1
        ) as fact using ({{ block_column }})
        where lake.landed_at is distinct from fact.landed_at
    )
{%- endmacro %}


{% macro blocks_missing_from_target(block_column='_block_month', target_filter=none) -%}
    {{ block_column }} not in (
        select distinct {{ block_column }} from {{ this }} where {{ target_filter_sql(target_filter) }}
    )
{%- endmacro %}


{#- `{'city': 'toronto'}` -> `city = 'toronto'`; none or {} -> `true`. -#}
{% macro target_filter_sql(target_filter) -%}
    {%- if not target_filter -%}
        true
    {%- else -%}
        {%- for column, value in target_filter.items() -%}
            {{ column }} = '{{ value | replace("'", "''") }}'{{ ' and ' if not loop.last }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
