-- Hours from open to close of closed 311 requests, per city, major category and month opened:
-- median and 90th percentile. Only requests with a close date not before their open date count
-- (rows closed "before" they opened are dirty source rows, flagged by a warn test). Months are
-- cohorts of the month opened, so the latest months hold only the requests closed so far and look
-- faster than they will. Toronto publishes no close date: it has no rows here.
{{ config(tags=service_request_cities() | map(attribute='source') | list) }}

with closed as (

    select *
    from {{ ref('fct_service_requests') }}
    where hours_to_close >= 0

)

select
    city,
    major_category,
    opened_month                                                      as month,
    count(*)                                                          as closed_requests,
    quantile_cont(hours_to_close, 0.5)                                as median_hours_to_close,
    quantile_cont(hours_to_close, 0.9)                                as p90_hours_to_close
from closed
group by city, major_category, opened_month
order by city, major_category nulls last, month
