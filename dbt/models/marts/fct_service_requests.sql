-- 311 service requests of every city, one row per (city, request_id), on shared categories.
--
-- One CTE per city maps its staging model onto the branch contract (service_request_branch_columns()
-- in macros/service_requests.sql); the branches are unioned, categorised from the
-- service_category_map seed and given their calendar columns. Adding a city is one staging model,
-- one branch below, its name in `all_cities` and one pre_hook.
--
-- Incremental per city and block: each pre_hook deletes the city's blocks that were re-landed since
-- the fact took them, and each branch reads only the blocks of its city the fact does not hold (after
-- the delete: the new and the re-landed ones), so a late edit replaces the request's row
-- (macros/replace_landed_blocks.sql). Either city's DAG may build this model before the other city
-- has ever landed: a branch whose staging view does not exist yet is empty, and a staging view over
-- a lake folder with no blocks reads as empty (macros/lake_source.sql).
--
-- Times are the city's local wall time (like the Seattle fact). Minneapolis publishes UTC instants,
-- converted here; Toronto publishes local wall time and no close date, so its closed_at and
-- hours_to_close are null; NYC publishes wall time (Socrata floating timestamps), kept as is.
{{
    config(
        materialized='incremental',
        unique_key=['city', 'request_id'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=['minneapolis_311', 'toronto_311', 'nyc_311'],
        pre_hook=[
            "{{ replace_landed_blocks(ref('stg_minneapolis_311__requests'), target_filter={'city': 'minneapolis'}) }}",
            "{{ replace_landed_blocks(ref('stg_toronto_311__requests'), target_filter={'city': 'toronto'}) }}",
            "{{ replace_landed_blocks(ref('stg_nyc_311__requests'), target_filter={'city': 'nyc'}) }}",
        ]
    )
}}

{%- set minneapolis_requests = ref('stg_minneapolis_311__requests') %}
{%- set toronto_requests = ref('stg_toronto_311__requests') %}
{%- set nyc_requests = ref('stg_nyc_311__requests') %}

with

minneapolis as (

    {% if relation_exists(minneapolis_requests) -%}
    select
        'minneapolis'                                                 as city,
        request_id,
        timezone('America/Chicago', opened_at)                        as opened_at,
        timezone('America/Chicago', closed_at)                        as closed_at,
        status,
        type_name                                                     as request_type,
        {{ strip_channel_suffix('type_name') }}                       as standard_request_type,
        -- the lake has coordinates but no ward or neighbourhood (docs/conformed_311.md)
        cast(null as varchar)                                         as area,
        cast(null as varchar)                                         as area_system,
        -- from the UTC instants, so a DST change inside the interval counts right
        (epoch_ms(closed_at) - epoch_ms(opened_at)) / 3600000.0       as hours_to_close,
        longitude,
        latitude,
        _block_month,
        cast(_landed_at as timestamptz)                               as _landed_at
    from {{ minneapolis_requests }}
    {%- if is_incremental() %}
    where {{ blocks_missing_from_target(target_filter={'city': 'minneapolis'}) }}
    {%- endif %}
    {%- else -%}
    {{ empty_relation(service_request_branch_columns()) }}
    {%- endif %}

),

toronto as (

    {% if relation_exists(toronto_requests) -%}
    select
        'toronto'                                                     as city,
        request_id,
        created_at                                                    as opened_at,
        cast(null as timestamp)                                       as closed_at,
        status,
        service_request_type                                          as request_type,
        service_request_type                                          as standard_request_type,
        -- the ward as published; `Unknown` is no area. Ward numbers mean different areas in the
        -- 44-ward (to 2018-11-30) and 25-ward systems, hence area_system.
        case when ward = 'Unknown' then null else ward end            as area,
        ward_system                                                   as area_system,
        cast(null as double)                                          as hours_to_close,
        cast(null as double)                                          as longitude,
        cast(null as double)                                          as latitude,
        _block_month,
        cast(_landed_at as timestamptz)                               as _landed_at
    from {{ toronto_requests }}
    {%- if is_incremental() %}
    where {{ blocks_missing_from_target(target_filter={'city': 'toronto'}) }}
    {%- endif %}
    {%- else -%}
    {{ empty_relation(service_request_branch_columns()) }}
    {%- endif %}

),

nyc as (

    {% if relation_exists(nyc_requests) -%}
    select
        'nyc'                                                         as city,
        request_id,
        created_at                                                    as opened_at,
        closed_at,
        status,
        complaint_type                                                as request_type,
        complaint_type                                                as standard_request_type,
        community_board                                               as area,
        case when community_board is not null then 'community board' end as area_system,
        -- wall times as published: an interval across a DST change is off by an hour
        case when closed_at >= created_at
             then (epoch_ms(closed_at) - epoch_ms(created_at)) / 3600000.0 end as hours_to_close,
        longitude,
        latitude,
        _block_month,
        cast(_landed_at as timestamptz)                               as _landed_at
    from {{ nyc_requests }}
    {%- if is_incremental() %}
    where {{ blocks_missing_from_target(target_filter={'city': 'nyc'}) }}
    {%- endif %}
    {%- else -%}
    {{ empty_relation(service_request_branch_columns()) }}
    {%- endif %}

),

all_cities as (

    select * from minneapolis
    union all
    select * from toronto
    union all
    select * from nyc

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
