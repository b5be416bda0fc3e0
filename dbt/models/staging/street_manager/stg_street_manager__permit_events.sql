-- One row per landed permit event (a permit has many: submitted, granted, work start, work stop,
-- ...), typed as the lake contract lands them, with the flags and local dates the marts share.
-- The latest event per permit is int_permits_latest's job, not this view's.

select
    -- event envelope
    {{ street_manager_event_envelope() }},

    -- the permit and its works
    permit_reference_number,
    {{ blank_to_null(['work_reference_number', 'promoter_swa_code', 'promoter_organisation',
                      'highway_authority_swa_code', 'highway_authority']) }},
    activity_type,
    work_category,
    work_category_ref,
    work_status,
    work_status_ref,
    permit_status,
    traffic_management_type,
    traffic_management_type_ref,
    current_traffic_management_type,
    current_traffic_management_type_ref,
    current_traffic_management_update_date,
    -- what is on the street now: the latest update if there was one, else what was applied for
    coalesce(current_traffic_management_type_ref, traffic_management_type_ref)
                                                                  as effective_traffic_management_type_ref,
    is_ttro_required,
    is_traffic_sensitive,
    is_deemed,
    is_covid_19_response,
    collaborative_working,
    collaboration_type,
    collaboration_type_ref,
    close_footway,
    close_footway_ref,
    permit_conditions,

    -- dates: UTC instants of UK-local day boundaries; the local dates are what a reader means
    {{ start_and_end_with_uk_local_dates(prefix='proposed_') }},
    -- inclusive UK-local days from proposed start to proposed end; null when either is missing
    -- or the end is before the start
    case
        when proposed_end_date >= proposed_start_date
        then date_diff(
            'day', {{ uk_local_date('proposed_start_date') }}, {{ uk_local_date('proposed_end_date') }}
        ) + 1
    end                                                           as planned_duration_days,
    actual_start_date_time,
    actual_end_date_time,

    -- place
    {{ blank_to_null(['usrn', 'street_name', 'area_name', 'town']) }},
    road_category,
    works_location_type,
    nullif(trim(works_location_coordinates), '')                  as works_location_coordinates,
    longitude,
    latitude,

    -- flags the marts share
    work_category_ref in ('immediate_urgent', 'immediate_emergency')
                                                                  as is_immediate_works,
    case collaborative_working when 'Yes' then true when 'No' then false end
                                                                  as is_collaborative,
    -- the seed project's rule for new connections: the activity type `New service connection`
    coalesce(lower(trim(activity_type)) = 'new service connection', false)
                                                                  as is_new_connection,
    -- DfT's test data (contract, Quirks): the smoke-test promoter, "Fake Street". Never counted
    -- by the marts. (Highway authority 5990 is the real City of Westminster too, so it is no flag.)
    coalesce(promoter_swa_code = 'STPR' or lower(trim(street_name)) = 'fake street', false)
                                                                  as is_test_data,

    -- lineage
    extras,
    {{ block_month_lineage() }}

-- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
from {{ lake_source('street_manager', 'permit') }}
