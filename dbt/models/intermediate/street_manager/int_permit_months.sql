-- One row per permit and archive month: the permit's latest event in that month's archive (by
-- event_time, then event_reference), with how many events the permit had in the month. The month
-- snapshot the seed project's in-progress and completed lists are made of: a permit's status "in
-- the month" is the status of its last event in the month, so it is in progress or completed in a
-- month, never both (tests/assert_no_permit_in_progress_and_completed_in_same_month.sql).
--
-- Incremental per block (macros/replace_landed_blocks.sql): the pre_hook deletes the months whose
-- archive was re-landed since this model took them, and the body reads only the months it does
-- not hold (after the delete: the new and the re-landed ones). Every row lives in the block of its
-- own events, so a re-landed month is replaced whole.
{{ config(**incremental_by_landed_block(
    'stg_street_manager__permit_events', unique_key=['permit_reference_number', '_block_month'])) }}

with events as (

    {{ landed_blocks_to_read(ref('stg_street_manager__permit_events')) }}

)

select
    *,
    count(*) over permit_month                                        as events_in_month,
    min(event_time) over permit_month                                 as first_event_time_in_month
from events
window permit_month as (partition by permit_reference_number, _block_month)
qualify row_number() over (
    partition by permit_reference_number, _block_month
    order by event_time desc, event_reference desc
) = 1
