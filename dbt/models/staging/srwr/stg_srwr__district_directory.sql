-- One row per SRWR district key (record type 099, `row[3]` + `row[4]`, contract): every district
-- an export file lists, whether an activity lists it or it stands alone. Each block read from a
-- file lands the file's whole directory, so a key appears in many landings: the latest one wins
-- (newest landing, then the latest block month).

with source as (

    -- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
    select * from {{ lake_source('srwr', 'district_directory') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by district_key
            order by _landed_at desc, _block_month desc
        )                                                             as _rank
    from source

),

renamed as (

    select
        district_key,
        district_key_1,
        district_key_2,
        organisation_name,
        organisation_names,
        record_count,
        activity_count,
        field_count,
        {{ block_month_lineage() }}

    from ranked
    where _rank = 1

)

select * from renamed
