-- New connections (a utility connecting a property to its network) per month, highway authority,
-- promoter and activity type: works in progress or completed in the month (int_permit_months)
-- whose activity type is `New service connection`, the seed project's definition
-- (stg_street_manager__permit_events.is_new_connection). The contract lists no such activity type
-- (its examples are `Remedial works`, `Utility asset works`, `Section 58`), so against data that
-- never uses it this mart is empty. DfT test data is left out.
{{ config(tags=['street_manager']) }}

with works as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data
      and is_new_connection
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
        activity_type,
        arg_max(highway_authority, event_time)                        as highway_authority_published,
        arg_max(promoter_organisation, event_time)                    as promoter_organisation_published,
        count(*)                                                      as works,
        count(*) filter (where work_status_ref = 'in_progress')       as works_in_progress,
        count(*) filter (where work_status_ref = 'completed')         as works_completed
    from works
    group by block_month, highway_authority_swa_code, promoter_swa_code, activity_type

)

select
    counted.month,
    counted.highway_authority_swa_code,
    coalesce(authority.organisation_name, counted.highway_authority_published) as highway_authority,
    counted.promoter_swa_code,
    coalesce(promoter.organisation_name, counted.promoter_organisation_published) as promoter_organisation,
    promoter.sector                                                   as promoter_sector,
    counted.activity_type,
    counted.works,
    counted.works_in_progress,
    counted.works_completed
from counted
left join swa as authority on authority.swa_code = counted.highway_authority_swa_code
left join swa as promoter on promoter.swa_code = counted.promoter_swa_code
order by month, highway_authority_swa_code, promoter_swa_code, activity_type
