-- One row per landed SRWR district record (record type 099): the activity's district, i.e. the
-- roads authority it falls under. The contract: `row[3]` and `row[4]` together form the key.

select
    activity_id,
    district_key_1,
    district_key_2,
    district_key_1 || '-' || district_key_2                       as district_key,
    organisation_name,
    field_count,
    {{ block_month_lineage() }}

from {{ lake_source('srwr', 'districts') }}
