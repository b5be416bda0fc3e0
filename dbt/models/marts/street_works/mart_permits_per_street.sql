-- Permits per street (USRN), over every landed month: each permit once, in its current state
-- (int_permits_latest), counted by status, with the street's promoters, immediate and
-- collaborative permits and the span of its events. DfT test data and permits without a USRN are
-- left out.
{{ config(tags=['street_manager']) }}

with permits as (

    select * from {{ ref('int_permits_latest') }}
    where not is_test_data
      and usrn is not null

),

per_street as (

    select
        usrn,
        {{ latest_street_and_authority() }},
        count(*)                                                      as permits,
        count(distinct work_reference_number)                         as works,
        count(*) filter (where work_status_ref = 'planned')           as permits_planned,
        count(*) filter (where work_status_ref = 'in_progress')       as permits_in_progress,
        count(*) filter (where work_status_ref = 'completed')         as permits_completed,
        count(*) filter (where work_status_ref = 'cancelled')         as permits_cancelled,
        count(*) filter (where is_immediate_works)                    as immediate_permits,
        count(*) filter (where is_collaborative)                      as collaborative_permits,
        count(distinct promoter_swa_code)                             as promoters,
        min(first_event_time)                                         as first_event_time,
        max(event_time)                                               as last_event_time
    from permits
    group by usrn

)

select
    per_street.usrn,
    per_street.street_name,
    per_street.town,
    per_street.highway_authority_swa_code,
    coalesce(authority.organisation_name, per_street.highway_authority_published) as highway_authority,
    per_street.permits,
    per_street.works,
    per_street.permits_planned,
    per_street.permits_in_progress,
    per_street.permits_completed,
    per_street.permits_cancelled,
    per_street.immediate_permits,
    per_street.collaborative_permits,
    per_street.promoters,
    per_street.first_event_time,
    per_street.last_event_time,
    rank() over (order by per_street.permits desc)                    as permits_rank
from per_street
left join {{ ref('swa_codes') }} as authority
    on authority.swa_code = per_street.highway_authority_swa_code
order by permits_rank, usrn
