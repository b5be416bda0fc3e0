-- One row per landed SRWR activity (record type 001). The block month is the month of the
-- activity's earliest undertaker-phase start (the only date the contract documents that places an
-- activity in time) clamped into its export file's period, so that no activity a file lists is
-- lost for when its works start (docs/lake_contract_srwr.md, Block; `placement` says how).

select
    activity_id,
    promoter_id,
    latest_phase,
    first_start_at,
    placement,
    field_count,
    {{ block_month_lineage() }}

-- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
from {{ lake_source('srwr', 'activities') }}
