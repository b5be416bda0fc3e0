-- One row per landed SRWR site (record type 010). The location code list is not documented.

with source as (

    select * from {{ lake_source('srwr', 'sites') }}

),

renamed as (

    select
        activity_id,
        location_code,
        field_count,
        _block_month,
        cast(_block_month || '-01' as date)                           as block_month,
        _landed_at

    from source

)

select * from renamed
