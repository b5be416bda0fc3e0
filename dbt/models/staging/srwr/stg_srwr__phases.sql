-- One row per landed SRWR phase (record type 007): where, what kind of works, and its status.
-- Codes are two digits (the extractor pads the one-digit quirk); their labels are incomplete in
-- the contract, so only the status has a seed (srwr_status_codes).

with source as (

    select * from {{ lake_source('srwr', 'phases') }}

),

renamed as (

    select
        activity_id,
        phase_number,
        location_text,
        work_category_code,
        status_code,
        coordinates,
        field_count,
        _block_month,
        cast(_block_month || '-01' as date)                           as block_month,
        _landed_at

    from source

)

select * from renamed
