-- One row per landed activity event. Activities are not only works: street events, skips on the
-- highway and scaffolding (contract, Quirks).

with source as (

    select * from {{ lake_source('street_manager', 'activity') }}

),

renamed as (

    select
        -- event envelope
        event_reference,
        event_type,
        event_type_published,
        event_time,
        version                                                       as schema_version,

        -- the activity
        activity_reference_number,
        nullif(trim(highway_authority_swa_code), '')                  as highway_authority_swa_code,
        nullif(trim(highway_authority), '')                           as highway_authority,
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
        start_date,
        start_time,
        end_date,
        end_time,
        cast(timezone('Europe/London', start_date) as date)           as start_local_date,
        cast(timezone('Europe/London', end_date) as date)             as end_local_date,

        -- place
        nullif(trim(usrn), '')                                        as usrn,
        nullif(trim(street_name), '')                                 as street_name,
        nullif(trim(area_name), '')                                   as area_name,
        nullif(trim(town), '')                                        as town,
        road_category,
        activity_location_type,
        activity_location_description,
        nullif(trim(activity_coordinates), '')                        as activity_coordinates,
        longitude,
        latitude,

        -- lineage
        extras,
        _block_month,
        cast(_block_month || '-01' as date)                           as block_month,
        _landed_at

    from source

)

select * from renamed
