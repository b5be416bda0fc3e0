-- One row per landed Minneapolis 311 request. OBJECTID restarts in each year's layer, so the
-- request id joins the layer year to it; CASEID repeats in practice and is kept as published.
-- The layer year is the lake's layer_year: the publisher files a request by its local year, so
-- a request opened on 1 January UTC can sit in the previous year's layer. Blocks landed before
-- that column existed read one layer, that of the UTC year of opened_at.

with landed as (

    -- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
    select * from {{ lake_source('minneapolis_311', 'requests') }}

),

source as (

    -- UNION ALL BY NAME adds layer_year as null when no landed file has the column yet
    select * from landed
    union all by name
    select cast(null as integer) as layer_year where false

),

renamed as (

    select
        -- ids
        cast(coalesce(cast(layer_year as varchar), strftime(opened_at, '%Y')) || '-'
             || cast(object_id as varchar) as varchar)                as request_id,
        cast(object_id as bigint)                                     as object_id,
        cast(coalesce(layer_year, year(opened_at)) as integer)        as layer_year,
        cast(case_id as bigint)                                       as case_id,

        -- classification as published (channel-specific names are standardised downstream)
        nullif(trim(subject_name), '')                                as subject_name,
        nullif(trim(reason_name), '')                                 as reason_name,
        nullif(trim(type_name), '')                                   as type_name,
        nullif(trim(title), '')                                       as title,

        -- status: 0 closed, 1 open per the seed project's docs (uncertain); the close date decides
        cast(case_status as integer)                                  as case_status,
        case when closed_at is not null then 'Closed' else 'Open' end as status,

        -- dates: epoch milliseconds in UTC at the source
        cast(opened_at as timestamptz)                                as opened_at,
        cast(closed_at as timestamptz)                                as closed_at,
        cast(last_updated_at as timestamptz)                          as last_updated_at,
        cast(date_trunc('month', cast(opened_at as timestamp)) as date) as opened_month,

        -- place
        cast(longitude as double)                                     as longitude,
        cast(latitude as double)                                      as latitude,

        nullif(trim(is_accessibility_related), '')                    as is_accessibility_related,

        -- lineage
        _block_month,
        _landed_at

    from source

)

select * from renamed
