-- int_permits_latest holds every landed permit once, with its latest event: no landed event of the
-- permit is later (by event_time, then event_reference), and no landed permit is missing. Reads the
-- lake through lake_source() (not the staging view), so it checks the incremental replacement of
-- re-landed months against the files themselves, and so that its only model parent is
-- int_permits_latest: Cosmos runs a model's tests with the model (dbt's eager indirect selection
-- would otherwise also run it with the staging view, before int_permits_latest is built).
{{ config(tags=['street_manager']) }}

with events as (

    select permit_reference_number, event_reference, event_time
    from {{ lake_source('street_manager', 'permit') }}

),

latest as (

    select permit_reference_number, event_reference, event_time
    from {{ ref('int_permits_latest') }}

)

select
    events.permit_reference_number,
    events.event_reference                                            as landed_event_reference,
    latest.event_reference                                            as latest_event_reference,
    case when latest.permit_reference_number is null then 'permit missing' else 'later event landed' end as failure
from events
left join latest using (permit_reference_number)
where latest.permit_reference_number is null
   or events.event_time > latest.event_time
   or (events.event_time = latest.event_time and events.event_reference > latest.event_reference)

union all

-- and no permit whose events are no longer landed
select
    latest.permit_reference_number,
    null,
    latest.event_reference,
    'permit no longer landed'
from latest
where not exists (
    select 1 from events where events.permit_reference_number = latest.permit_reference_number
)
