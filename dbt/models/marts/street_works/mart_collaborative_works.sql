-- Collaborative works (several promoters sharing one excavation) per month, highway authority and
-- promoter: of the works in progress or completed in the month (int_permit_months), how many were
-- collaborative. `collaborative_working` is absent from older data: those works count as unknown,
-- not as non-collaborative (the seed project counted them as "No"). DfT test data is left out.
{{ config(tags=['street_manager']) }}

with works as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data
      and work_status_ref in ('in_progress', 'completed')

),

swa as (

    select * from {{ ref('swa_codes') }}

),

counted as (

    select
        block_month                                                   as month,
        highway_authority_swa_code,
        promoter_swa_code,
        arg_max(highway_authority, event_time)                        as highway_authority_published,
        arg_max(promoter_organisation, event_time)                    as promoter_organisation_published,
        count(*)                                                      as works,
        count(*) filter (where is_collaborative)                      as collaborative_works,
        count(*) filter (where not is_collaborative)                  as non_collaborative_works,
        count(*) filter (where is_collaborative is null)              as collaboration_unknown_works
    from works
    group by block_month, highway_authority_swa_code, promoter_swa_code

)

select
    counted.month,
    counted.highway_authority_swa_code,
    coalesce(authority.organisation_name, counted.highway_authority_published) as highway_authority,
    counted.promoter_swa_code,
    coalesce(promoter.organisation_name, counted.promoter_organisation_published) as promoter_organisation,
    promoter.sector                                                   as promoter_sector,
    counted.works,
    counted.collaborative_works,
    counted.non_collaborative_works,
    counted.collaboration_unknown_works,
    -- of the works whose collaboration is known
    counted.collaborative_works
        / nullif(counted.collaborative_works + counted.non_collaborative_works, 0) as collaborative_share
from counted
left join swa as authority on authority.swa_code = counted.highway_authority_swa_code
left join swa as promoter on promoter.swa_code = counted.promoter_swa_code
order by month, highway_authority_swa_code, promoter_swa_code
