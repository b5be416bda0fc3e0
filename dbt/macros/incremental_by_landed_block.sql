{#
  The configuration and the read of a model kept incremental per landed lake block, the pattern of
  macros/replace_landed_blocks.sql, in one place for the models that follow it whole.

  Usage in a model:
    {{ config(**incremental_by_landed_block('stg_x__y', unique_key='id')) }}
    with rows as (
        {{ landed_blocks_to_read(ref('stg_x__y')) }}
    ), ...
#}

{#- The config of such a model: delete+insert on `unique_key`, new columns appended, and the
    pre_hook that deletes the blocks of `upstream` (a model name) re-landed since the model took
    them. Passed to config() with `**`, beside any other config of the model. -#}
{% macro incremental_by_landed_block(upstream, unique_key, block_column='_block_month') -%}
    {%- set hook_arguments = "ref('" ~ upstream ~ "')" -%}
    {%- if block_column != '_block_month' -%}
        {%- set hook_arguments = hook_arguments ~ ", block_column='" ~ block_column ~ "'" -%}
    {%- endif -%}
    {{- return({
        'materialized': 'incremental',
        'unique_key': unique_key,
        'incremental_strategy': 'delete+insert',
        'on_schema_change': 'append_new_columns',
        'pre_hook': '{{ replace_landed_blocks(' ~ hook_arguments ~ ') }}',
    }) -}}
{%- endmacro %}


{#- The rows of `upstream` the model has to read: all of them on a full build, else the blocks it
    does not hold (after the pre_hook's delete: the new and the re-landed ones). -#}
{% macro landed_blocks_to_read(upstream, block_column='_block_month') -%}
    select * from {{ upstream }}
    {%- if is_incremental() %}
    where {{ blocks_missing_from_target(block_column=block_column) }}
    {%- endif %}
{%- endmacro %}


{#-
  A singular test's body: the groups (`keys`) of the fact `fact` holding more rows than the lake
  landed for them (`landed`: a query of `keys` and `landed_rows`). More would mean a re-landed block
  was added to instead of replaced.
-#}
{% macro fact_rows_above_landed(fact, landed, keys) -%}
with landed as (

    {{ landed }}

),

built as (

    select {{ keys | join(', ') }}, count(*) as fact_rows
    from {{ fact }}
    group by {{ keys | join(', ') }}

)

select
    {%- for key in keys %}
    built.{{ key }},
    {%- endfor %}
    built.fact_rows,
    coalesce(landed.landed_rows, 0) as landed_rows
from built
left join landed using ({{ keys | join(', ') }})
where built.fact_rows > coalesce(landed.landed_rows, 0)
{%- endmacro %}
