-- One row per landed activity event. Activities are not only works: street events, skips on the
-- highway and scaffolding (contract, Quirks).

select
    -- event envelope
    {{ street_manager_event_envelope() }},

    -- the activity
    activity_reference_number,
    {{ blank_to_null(['highway_authority_swa_code', 'highway_authority']) }},
    activity_name,
    activity_type,
    activity_type_details,
    -- as published: the ref form (`road_closure`) in the docs example, unlike the permits'
    -- display form; not renamed, since real archives may differ
    traffic_management_type,
    traffic_management_required,
    collaborative_working,
    cancelled,
    coalesce(cancelled = 'Yes', false)                            as is_cancelled,

    -- dates
    {{ start_and_end_with_uk_local_dates() }},

    -- place
    {{ blank_to_null(['usrn', 'street_name', 'area_name', 'town']) }},
    road_category,
    activity_location_type,
    activity_location_description,
    nullif(trim(activity_coordinates), '')                        as activity_coordinates,
    longitude,
    latitude,

    -- lineage
    extras,
    {{ block_month_lineage() }}

from {{ lake_source('street_manager', 'activity') }}
