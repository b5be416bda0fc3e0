-- Works in progress and completed in the month, per highway authority and promoter: the seed
-- project's monthly in-progress and completed lists, counted. A permit counts in a month by its
-- status at the month's last event (int_permit_months), so it is in progress or completed in a
-- month, never both; `permits` is every permit with an event in the month's archive. DfT test
-- data is left out. Names come from the swa_codes seed, else the latest published name.
{{ config(tags=['street_manager']) }}

with permit_months as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data

),

swa as (

    select * from {{ ref('swa_codes') }}

),

by_month as (

    select
        block_month                                                   as month,
        highway_authority_swa_code,
        promoter_swa_code,
        arg_max(highway_authority, event_time)                        as highway_authority_published,
        arg_max(promoter_organisation, event_time)                    as promoter_organisation_published,
        count(*)                                                      as permits,
        count(*) filter (where work_status_ref = 'in_progress')       as works_in_progress,
        count(*) filter (where work_status_ref = 'completed')         as works_completed,
        count(*) filter (where work_status_ref = 'planned')           as works_planned,
        count(*) filter (where work_status_ref = 'cancelled')         as works_cancelled
    from permit_months
    group by block_month, highway_authority_swa_code, promoter_swa_code

)

select
    by_month.month,
    by_month.highway_authority_swa_code,
    coalesce(authority.organisation_name, by_month.highway_authority_published) as highway_authority,
    by_month.promoter_swa_code,
    coalesce(promoter.organisation_name, by_month.promoter_organisation_published) as promoter_organisation,
    promoter.sector                                                   as promoter_sector,
    by_month.permits,
    by_month.works_in_progress,
    by_month.works_completed,
    by_month.works_planned,
    by_month.works_cancelled
from by_month
left join swa as authority on authority.swa_code = by_month.highway_authority_swa_code
left join swa as promoter on promoter.swa_code = by_month.promoter_swa_code
order by month, highway_authority_swa_code, promoter_swa_code
