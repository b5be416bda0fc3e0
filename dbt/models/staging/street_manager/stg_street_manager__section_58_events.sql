-- One row per landed section 58 event: notices restricting new works on a street after
-- substantial road works (six months, the whole road, in the replay's and the docs' examples).

with source as (

    select * from {{ lake_source('street_manager', 'section_58') }}

),

renamed as (

    select
        -- event envelope
        event_reference,
        event_type,
        event_type_published,
        event_time,
        version                                                       as schema_version,

        -- the notice
        section_58_reference_number,
        nullif(trim(highway_authority_swa_code), '')                  as highway_authority_swa_code,
        nullif(trim(highway_authority), '')                           as highway_authority,
        section_58_status,
        section_58_duration,
        section_58_extent,
        section_58_location_type,
        status_change_date,

        -- dates
        start_date,
        end_date,
        cast(timezone('Europe/London', start_date) as date)           as start_local_date,
        cast(timezone('Europe/London', end_date) as date)             as end_local_date,

        -- place
        nullif(trim(usrn), '')                                        as usrn,
        nullif(trim(street_name), '')                                 as street_name,
        nullif(trim(area_name), '')                                   as area_name,
        nullif(trim(town), '')                                        as town,
        nullif(trim(section_58_coordinates), '')                      as section_58_coordinates,
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
