-- One row per landed SRWR site (record type 010). The location code list is not documented.

select
    activity_id,
    location_code,
    field_count,
    {{ block_month_lineage() }}

from {{ lake_source('srwr', 'sites') }}
