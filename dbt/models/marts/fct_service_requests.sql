-- 311 service requests of every city, one row per (city, request_id), on shared categories.
--
-- Each city's branch maps its staging model onto the branch contract (service_request_branch_columns()
-- in macros/service_requests.sql); the branches are unioned, categorised from the
-- service_category_map seed and given their calendar columns. The cities and their branches come
-- from the [dbt] tables of the 311 dataset files (include/civic_pipelines/datasets/*.toml), through
-- the generated macros/service_request_cities.sql: adding a city is adding its dataset file.
--
-- Incremental per city and block: each city's pre_hook deletes its blocks that were re-landed since
-- the fact took them, and each branch reads only the blocks of its city the fact does not hold (after
-- the delete: the new and the re-landed ones), so a late edit replaces the request's row
-- (macros/replace_landed_blocks.sql). Any city's DAG may build this model before another city has
-- ever landed: a branch whose staging view does not exist yet is empty, and a staging view over a
-- lake folder with no blocks reads as empty (macros/lake_source.sql).
--
-- Times are the city's local wall time (like the Seattle fact): a city publishing UTC instants names
-- its time zone in its branch, and its times are converted.
{%- set cities = service_request_cities() %}
{%- set pre_hooks = [] %}
{%- for branch in cities %}
    {%- do pre_hooks.append("{{ replace_landed_blocks(ref('" ~ branch.model ~ "'), target_filter={'city': '" ~ branch.city ~ "'}) }}") %}
{%- endfor %}
{{
    config(
        materialized='incremental',
        unique_key=['city', 'request_id'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=cities | map(attribute='source') | list,
        pre_hook=pre_hooks
    )
}}

with
{% for branch in cities %}
{%- set requests = ref(branch.model) %}
{{ branch.source }} as (

    {% if relation_exists(requests) -%}
    select
{{ service_request_branch(branch.source) }},
        _block_month,
        cast(_landed_at as timestamptz)                               as _landed_at
    from {{ requests }}
    {%- if is_incremental() %}
    where {{ blocks_missing_from_target(target_filter={'city': branch.city}) }}
    {%- endif %}
    {%- else -%}
    {{ empty_relation(service_request_branch_columns()) }}
    {%- endif %}

),
{% endfor %}
all_cities as (

    {% for branch in cities -%}
    select * from {{ branch.source }}
    {% if not loop.last %}union all
    {% endif %}
    {%- endfor %}

),

latest as (

    -- a request re-landed in another block would appear twice; the latest landing wins
    select *
    from all_cities
    qualify row_number() over (
        partition by city, request_id
        order by _landed_at desc, _block_month desc
    ) = 1

),

categories as (

    select * from {{ ref('service_category_map') }}

)

select
    latest.city,
    latest.request_id,
    latest.opened_at,
    latest.closed_at,
    latest.status,
    latest.request_type,
    latest.standard_request_type,
    categories.major_category,
    categories.minor_category,
    latest.area,
    latest.area_system,
    {{ meteorological_season('latest.opened_at') }}                   as season,
    latest.hours_to_close,
    cast(date_trunc('month', latest.opened_at) as date)               as opened_month,
    latest.longitude,
    latest.latitude,
    latest._block_month,
    latest._landed_at
from latest
left join categories
    on categories.city = latest.city
    and categories.request_type = latest.standard_request_type
