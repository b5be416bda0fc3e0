-- An impact score per street (USRN) and month from the works on it that month: every permit in
-- progress or completed in the month (int_permit_months), scored from its work category, its
-- traffic management and its planned duration, and summed per street. The formula is in
-- _street_works__schema.yml (and docs/street_works.md); its weights are in the CTE `scored`.
-- DfT test data and works without a USRN are left out.
{{ config(tags=['street_manager']) }}

with works as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data
      and usrn is not null
      and work_status_ref in ('in_progress', 'completed')

),

scored as (

    select
        *,
        case work_category_ref
            when 'minor'               then 1.0
            when 'standard'            then 2.0
            when 'major'               then 5.0
            when 'paa'                 then 5.0
            when 'hs2_highway'         then 2.0
            when 'immediate_urgent'    then 3.0
            when 'immediate_emergency' then 3.0
            else 1.0
        end
        + case when is_ttro_required = 'Yes' then 0.5 else 0.0 end
        + case when is_traffic_sensitive = 'Yes' then 0.5 else 0.0 end  as category_points,
        case effective_traffic_management_type_ref
            when 'road_closure'               then 2.0
            when 'lane_closure'               then 1.5
            when 'contra_flow'                then 1.5
            when 'convoy_workings'            then 1.5
            when 'multi_way_signals'          then 1.5
            when 'two_way_signals'            then 1.25
            when 'stop_go_boards'             then 1.25
            when 'priority_working'           then 1.25
            when 'give_and_take'              then 1.0
            when 'some_carriageway_incursion' then 1.0
            when 'no_carriageway_incursion'   then 0.5
            else 1.0
        end                                                           as traffic_management_factor,
        1 + ln(least(greatest(coalesce(planned_duration_days, 1), 1), 90)) as duration_factor
    from works

),

per_street as (

    select
        block_month                                                   as month,
        usrn,
        {{ latest_street_and_authority() }},
        count(*)                                                      as works,
        count(*) filter (where work_status_ref = 'in_progress')       as works_in_progress,
        count(*) filter (where work_status_ref = 'completed')         as works_completed,
        count(*) filter (where work_category_ref in ('major', 'paa')) as major_works,
        count(*) filter (where is_immediate_works)                    as immediate_works,
        count(*) filter (where effective_traffic_management_type_ref = 'road_closure') as road_closures,
        max(planned_duration_days)                                    as max_planned_duration_days,
        sum(category_points * traffic_management_factor * duration_factor) as impact_score
    from scored
    group by block_month, usrn

)

select
    per_street.month,
    per_street.usrn,
    per_street.street_name,
    per_street.town,
    per_street.highway_authority_swa_code,
    coalesce(authority.organisation_name, per_street.highway_authority_published) as highway_authority,
    per_street.works,
    per_street.works_in_progress,
    per_street.works_completed,
    per_street.major_works,
    per_street.immediate_works,
    per_street.road_closures,
    per_street.max_planned_duration_days,
    per_street.impact_score,
    rank() over (partition by per_street.month order by per_street.impact_score desc) as impact_rank,
    rank() over (
        partition by per_street.month, per_street.highway_authority_swa_code
        order by per_street.impact_score desc
    )                                                                 as impact_rank_in_authority
from per_street
left join {{ ref('swa_codes') }} as authority
    on authority.swa_code = per_street.highway_authority_swa_code
order by month, impact_rank, usrn
