-- 311 requests per city, month opened (local time) and shared category: volume by month and
-- category, and seasonality. Requests of a type the category seed does not know keep their own
-- null-category row, so the months add up to the fact.
{{ config(tags=service_request_cities() | map(attribute='source') | list) }}

with requests as (

    select * from {{ ref('fct_service_requests') }}

)

select
    city,
    opened_month                                                      as month,
    major_category,
    minor_category,
    count(*)                                                          as requests
from requests
group by city, opened_month, major_category, minor_category
order by city, month, major_category nulls last, minor_category nulls last
