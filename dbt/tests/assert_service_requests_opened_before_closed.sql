-- Requests whose close date is before their open date: dirty source rows (the Minneapolis
-- contract warns of them). Warn only; they stay in the fact, and mart_time_to_close leaves them out.
{{ config(severity='warn', tags=service_request_cities() | map(attribute='source') | list) }}

select
    city,
    request_id,
    opened_at,
    closed_at
from {{ ref('fct_service_requests') }}
where closed_at < opened_at
