-- One row per landed permit event (a permit has many: submitted, granted, work start, work stop,
-- ...), typed as the lake contract lands them, with the flags and local dates the marts share.
-- The latest event per permit is int_permits_latest's job, not this view's.

with source as (

    -- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
    select * from {{ lake_source('street_manager', 'permit') }}

),

renamed as (

    select
        -- event envelope
        event_reference,
        event_type,
        event_type_published,
        event_time,
        version                                                       as schema_version,

        -- the permit and its works
        permit_reference_number,
        nullif(trim(work_reference_number), '')                       as work_reference_number,
        nullif(trim(promoter_swa_code), '')                           as promoter_swa_code,
        nullif(trim(promoter_organisation), '')                       as promoter_organisation,
        nullif(trim(highway_authority_swa_code), '')                  as highway_authority_swa_code,
        nullif(trim(highway_authority), '')                           as highway_authority,
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
        proposed_start_date,
        proposed_start_time,
        proposed_end_date,
        proposed_end_time,
        cast(timezone('Europe/London', proposed_start_date) as date)  as proposed_start_local_date,
        cast(timezone('Europe/London', proposed_end_date) as date)    as proposed_end_local_date,
        -- inclusive UK-local days from proposed start to proposed end; null when either is missing
        -- or the end is before the start
        case
            when proposed_end_date >= proposed_start_date
            then date_diff(
                'day',
                cast(timezone('Europe/London', proposed_start_date) as date),
                cast(timezone('Europe/London', proposed_end_date) as date)
            ) + 1
        end                                                           as planned_duration_days,
        actual_start_date_time,
        actual_end_date_time,

        -- place
        nullif(trim(usrn), '')                                        as usrn,
        nullif(trim(street_name), '')                                 as street_name,
        nullif(trim(area_name), '')                                   as area_name,
        nullif(trim(town), '')                                        as town,
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
        _block_month,
        cast(_block_month || '-01' as date)                           as block_month,
        _landed_at

    from source

)

select * from renamed
