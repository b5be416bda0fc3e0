-- Scotland's works per month, roads authority and promoter: the SRWR counterpart of
-- mart_works_by_month, as far as the data allows. Differences, because SRWR publishes a snapshot,
-- not events (docs/street_works.md):
--   * the month is the activity's block month, the month of its earliest undertaker-phase start,
--     not an archive month;
--   * the status is the current status of the activity's latest phase (the 007 record numbered
--     like the activity's `latest_phase`, else its highest phase), grouped by the
--     srwr_status_codes seed into planned / in progress / completed / restriction;
--   * the roads authority is the activity's district (099), the promoter its promoter id (001),
--     which comes with no name.
-- An activity landed twice (moved to another month by a late edit) counts once, in its latest landing.
{{ config(tags=['srwr']) }}

with activities as (

    select *
    from {{ ref('stg_srwr__activities') }}
    qualify row_number() over (
        partition by activity_id
        order by _landed_at desc, _block_month desc
    ) = 1

),

latest_phases as (

    select
        phases.activity_id,
        phases.status_code,
        phases.work_category_code
    from {{ ref('stg_srwr__phases') }} as phases
    join activities
        on activities.activity_id = phases.activity_id
        and activities._block_month = phases._block_month
    qualify row_number() over (
        partition by phases.activity_id
        order by (phases.phase_number = activities.latest_phase) desc nulls last,
                 phases.phase_number desc nulls last
    ) = 1

),

phase_counts as (

    select activity_id, _block_month, count(*) as phases
    from {{ ref('stg_srwr__phases') }}
    group by activity_id, _block_month

),

undertaker as (

    select
        activity_id,
        _block_month,
        count(*)                                                      as undertaker_phases,
        sum(duration_days)                                            as days_on_street,
        bool_or(end_at is null)                                       as has_open_phase
    from {{ ref('stg_srwr__undertaker_phases') }}
    group by activity_id, _block_month

),

districts as (

    select activity_id, _block_month, district_key, organisation_name
    from {{ ref('stg_srwr__districts') }}
    qualify row_number() over (partition by activity_id, _block_month order by district_key) = 1

),

statuses as (

    select * from {{ ref('srwr_status_codes') }}

),

activity_rows as (

    select
        activities.activity_id,
        activities.block_month,
        activities.promoter_id,
        districts.district_key,
        districts.organisation_name,
        statuses.status_group,
        coalesce(phase_counts.phases, 0)                              as phases,
        coalesce(undertaker.undertaker_phases, 0)                     as undertaker_phases,
        undertaker.days_on_street,
        coalesce(undertaker.has_open_phase, false)                    as has_open_phase
    from activities
    left join latest_phases using (activity_id)
    left join statuses on statuses.status_code = latest_phases.status_code
    left join phase_counts
        on phase_counts.activity_id = activities.activity_id
        and phase_counts._block_month = activities._block_month
    left join undertaker
        on undertaker.activity_id = activities.activity_id
        and undertaker._block_month = activities._block_month
    left join districts
        on districts.activity_id = activities.activity_id
        and districts._block_month = activities._block_month

)

select
    block_month                                                       as month,
    district_key                                                      as roads_authority_key,
    arg_max(organisation_name, activity_id)                           as roads_authority,
    promoter_id,
    count(*)                                                          as activities,
    count(*) filter (where status_group = 'in_progress')              as works_in_progress,
    count(*) filter (where status_group = 'completed')                as works_completed,
    count(*) filter (where status_group = 'planned')                  as works_planned,
    count(*) filter (where status_group = 'restriction')              as restrictions,
    count(*) filter (where status_group is null)                      as status_unknown,
    sum(phases)                                                       as phases,
    sum(undertaker_phases)                                            as undertaker_phases,
    count(*) filter (where has_open_phase)                            as activities_with_open_phase,
    median(days_on_street)                                            as median_days_on_street
from activity_rows
group by block_month, district_key, promoter_id
order by month, roads_authority_key, promoter_id
