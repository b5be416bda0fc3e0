-- One row per landed Toronto 311 request. The yearly files carry no request id, so the extractor
-- derives one from the row's identity fields; the ward is kept as published plus its parts, and
-- the ward system (44 wards until 2018-12-01, 25 after) says how to read its number.

with source as (

    -- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
    select * from {{ lake_source('toronto_311', 'requests') }}

),

renamed as (

    select
        -- ids
        cast(request_id as varchar)                                   as request_id,

        -- classification as published
        nullif(trim(service_request_type), '')                        as service_request_type,
        nullif(trim(division), '')                                    as division,
        nullif(trim(section), '')                                     as section,
        nullif(trim(status), '')                                      as status,

        -- dates: Toronto wall time, no zone in the source
        cast(created_at as timestamp)                                 as created_at,
        cast(date_trunc('month', cast(created_at as timestamp)) as date) as created_month,

        -- place
        nullif(trim(ward), '')                                        as ward,
        nullif(trim(ward_name), '')                                   as ward_name,
        cast(ward_number as integer)                                  as ward_number,
        ward_system,
        nullif(trim(postal_prefix), '')                               as postal_prefix,
        nullif(trim(intersection_street_1), '')                       as intersection_street_1,
        nullif(trim(intersection_street_2), '')                       as intersection_street_2,

        -- lineage
        _block_month,
        _landed_at

    from source

)

select * from renamed
