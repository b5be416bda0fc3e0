-- One row per landed section 58 event: notices restricting new works on a street after
-- substantial road works (six months, the whole road, in the replay's and the docs' examples).

select
    -- event envelope
    {{ street_manager_event_envelope() }},

    -- the notice
    section_58_reference_number,
    {{ blank_to_null(['highway_authority_swa_code', 'highway_authority']) }},
    section_58_status,
    section_58_duration,
    section_58_extent,
    section_58_location_type,
    status_change_date,

    -- dates
    {{ start_and_end_with_uk_local_dates(times=false) }},

    -- place
    {{ blank_to_null(['usrn', 'street_name', 'area_name', 'town']) }},
    nullif(trim(section_58_coordinates), '')                      as section_58_coordinates,
    longitude,
    latitude,

    -- lineage
    extras,
    {{ block_month_lineage() }}

from {{ lake_source('street_manager', 'section_58') }}
