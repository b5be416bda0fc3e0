-- One row per landed NYC 311 request (unique_key), typed and renamed. Times are New York wall
-- time as published (Socrata floating timestamps).

with source as (

    -- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
    select * from {{ lake_source('nyc_311', 'requests') }}

),

renamed as (

    select
        cast(unique_key as varchar)                                   as request_id,
        cast(unique_key as bigint)                                    as unique_key,

        nullif(trim(complaint_type), '')                              as complaint_type,
        nullif(trim(descriptor), '')                                  as descriptor,
        nullif(trim(agency), '')                                      as agency,
        nullif(trim(agency_name), '')                                 as agency_name,
        nullif(trim(status), '')                                      as status,
        nullif(trim(resolution_description), '')                      as resolution_description,
        nullif(trim(open_data_channel_type), '')                      as channel,

        cast(created_date as timestamp)                               as created_at,
        cast(closed_date as timestamp)                                as closed_at,
        cast(resolution_action_updated_date as timestamp)             as resolution_updated_at,
        cast(date_trunc('month', cast(created_date as timestamp)) as date) as created_month,

        nullif(trim(location_type), '')                               as location_type,
        nullif(trim(incident_zip), '')                                as incident_zip,
        nullif(trim(city), '')                                        as city_name,
        -- `0 Unspecified` and `Unspecified` are no place
        case when community_board ilike '%unspecified%' then null
             else nullif(trim(community_board), '') end               as community_board,
        case when borough ilike 'unspecified' then null
             else nullif(trim(borough), '') end                       as borough,
        cast(longitude as double)                                     as longitude,
        cast(latitude as double)                                      as latitude,

        _block_month,
        _landed_at

    from source

)

select * from renamed
