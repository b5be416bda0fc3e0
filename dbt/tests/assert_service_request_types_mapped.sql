-- Request types the service_category_map seed does not know, with how many requests have them.
-- Warn only: cities add and rename types over time (an open vocabulary); a row here means a seed
-- row to add, then a --full-refresh of fct_service_requests.
{{ config(severity='warn', tags=service_request_cities() | map(attribute='source') | list) }}

select
    city,
    standard_request_type,
    request_type,
    count(*) as requests
from {{ ref('fct_service_requests') }}
where major_category is null
group by city, standard_request_type, request_type
