-- Emergency works per month, highway authority, promoter and category: the works of the two
-- immediate categories (`Immediate - emergency`, `Immediate - urgent`: the seed project counted
-- both) in progress or completed in the month (int_permit_months), with how many were on
-- traffic-sensitive streets, needed a TTRO or closed the road. DfT test data is left out.
{{ config(tags=['street_manager']) }}

with works as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data
      and is_immediate_works
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
        work_category,
        arg_max(highway_authority, event_time)                        as highway_authority_published,
        arg_max(promoter_organisation, event_time)                    as promoter_organisation_published,
        count(*)                                                      as works,
        count(*) filter (where work_status_ref = 'in_progress')       as works_in_progress,
        count(*) filter (where work_status_ref = 'completed')         as works_completed,
        count(*) filter (where is_traffic_sensitive = 'Yes')          as works_on_traffic_sensitive_streets,
        count(*) filter (where is_ttro_required = 'Yes')              as works_needing_ttro,
        count(*) filter (where effective_traffic_management_type_ref = 'road_closure') as road_closures,
        median(planned_duration_days)                                 as median_planned_duration_days
    from works
    group by block_month, highway_authority_swa_code, promoter_swa_code, work_category

)

select
    counted.month,
    counted.highway_authority_swa_code,
    coalesce(authority.organisation_name, counted.highway_authority_published) as highway_authority,
    counted.promoter_swa_code,
    coalesce(promoter.organisation_name, counted.promoter_organisation_published) as promoter_organisation,
    promoter.sector                                                   as promoter_sector,
    counted.work_category,
    counted.works,
    counted.works_in_progress,
    counted.works_completed,
    counted.works_on_traffic_sensitive_streets,
    counted.works_needing_ttro,
    counted.road_closures,
    counted.median_planned_duration_days
from counted
left join swa as authority on authority.swa_code = counted.highway_authority_swa_code
left join swa as promoter on promoter.swa_code = counted.promoter_swa_code
order by month, highway_authority_swa_code, promoter_swa_code, work_category
