-- 311 requests per city, area and major category: the map's input. Each row carries its area's
-- total, the area's rank within its city (1 = most requests) and shares of the city's total, so
-- a choropleth reads the area columns and a breakdown reads the category rows. Requests without a
-- known area (all of Minneapolis, whose lake has no area; Toronto's `Unknown` ward) keep their own
-- null-area rows, so each city's shares add up to 1.
{{ config(tags=service_request_cities() | map(attribute='source') | list) }}

with requests as (

    select * from {{ ref('fct_service_requests') }}

),

by_area_category as (

    select
        city,
        area_system,
        area,
        major_category,
        count(*) as requests
    from requests
    group by city, area_system, area, major_category

),

with_totals as (

    select
        *,
        sum(requests) over (partition by city, area_system, area) as area_requests,
        sum(requests) over (partition by city)                     as city_requests
    from by_area_category

)

select
    city,
    area_system,
    area,
    major_category,
    requests,
    requests / city_requests                                          as share_of_city_requests,
    row_number() over (
        partition by city, area_system, area
        order by requests desc, major_category nulls last
    )                                                                 as category_rank_in_area,
    area_requests,
    area_requests / city_requests                                     as area_share_of_city_requests,
    dense_rank() over (partition by city order by area_requests desc) as area_rank
from with_totals
order by city, area_rank, area, category_rank_in_area
