-- One row per offense, incremental on offense_id. A re-landed month replaces its rows exactly
-- (including offenses that vanished from the source): see macros/replace_landed_blocks.sql.
{{ config(tags=['seattle_crime'],
          **incremental_by_landed_block('stg_seattle_crime__offenses', unique_key='offense_id')) }}

with offenses as (

    {{ landed_blocks_to_read(ref('stg_seattle_crime__offenses')) }}

),

latest as (

    -- an offense re-reported into another month appears in two blocks; the latest landing wins
    select *
    from offenses
    qualify row_number() over (
        partition by offense_id
        order by _landed_at desc, _block_month desc
    ) = 1

)

select
    offense_id,
    report_number,
    report_datetime,
    report_month,
    offense_start_datetime,
    offense_end_datetime,
    group_a_b,
    crime_against_category,
    offense_parent_group,
    offense,
    offense_code,
    offense_category,
    shooting_type_group,
    precinct,
    sector,
    beat,
    neighborhood,
    reporting_area,
    census_block_2020,
    block_address,
    longitude,
    latitude,
    source_schema,
    _block_month,
    _landed_at
from latest
