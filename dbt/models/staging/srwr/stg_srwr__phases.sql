-- One row per landed SRWR phase (record type 007): where, what kind of works, and its status.
-- Codes are two digits (the extractor pads the one-digit quirk); their labels are incomplete in
-- the contract, so only the status has a seed (srwr_status_codes).

select
    activity_id,
    phase_number,
    location_text,
    work_category_code,
    status_code,
    coordinates,
    field_count,
    {{ block_month_lineage() }}

from {{ lake_source('srwr', 'phases') }}
