-- One row per permit reference: its latest event over every landed month (by event_time, then
-- event_reference; the block month breaks a tie between two landings of one event), with the
-- permit's life so far (first event, months and events seen). The contract's rule for many events
-- per permit ("deduplicate to the latest event per reference"); see docs/street_works.md for how
-- it differs from the seed project's month lists.
--
-- Built from int_permit_months (each month's latest event per permit), whose latest row per
-- permit is the permit's latest event. Incremental with per-block replacement:
--   * pre_hook: delete the permits whose latest event sits in a month whose archive was re-landed
--     (macros/replace_landed_blocks.sql, against int_permit_months);
--   * body: recompute, from all their months, the permits that have a row in a month this model
--     has not taken (new and re-landed months), and the permits that have no row here at all
--     (a re-landed month that no longer holds a permit's events: its row was deleted above);
--   * delete+insert on permit_reference_number puts their new row in place of the old one.
-- A month whose permits all have later events holds no row here and so is re-read on every run:
-- correct, and cheap (only its permits are recomputed).
{{ config(**incremental_by_landed_block('int_permit_months', unique_key='permit_reference_number')) }}

with permit_months as (

    select * from {{ ref('int_permit_months') }}

),

{% if is_incremental() %}
candidates as (

    select permit_reference_number
    from permit_months
    where {{ blocks_missing_from_target() }}

    union

    select permit_reference_number
    from permit_months
    where not exists (
        select 1 from {{ this }} as latest
        where latest.permit_reference_number = permit_months.permit_reference_number
    )

),

scope as (

    select *
    from permit_months
    where permit_reference_number in (select permit_reference_number from candidates)

),
{% else %}
scope as (

    select * from permit_months

),
{% endif %}

latest as (

    select
        *,
        min(first_event_time_in_month) over permit                    as first_event_time,
        min(_block_month) over permit                                 as first_block_month,
        count(*) over permit                                          as months_with_events,
        cast(sum(events_in_month) over permit as bigint)              as events_total
    from scope
    window permit as (partition by permit_reference_number)
    qualify row_number() over (
        partition by permit_reference_number
        order by event_time desc, event_reference desc, _block_month desc
    ) = 1

)

select * exclude (events_in_month, first_event_time_in_month)
from latest
