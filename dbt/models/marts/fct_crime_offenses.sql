-- One row per offense, incremental on offense_id. A re-landed month replaces its rows exactly
-- (including offenses that vanished from the source): see macros/replace_landed_blocks.sql.
{{
    config(
        materialized='incremental',
        unique_key='offense_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=['seattle_crime'],
        pre_hook="{{ replace_landed_blocks(ref('stg_seattle_crime__offenses')) }}"
    )
}}

with offenses as (

    select * from {{ ref('stg_seattle_crime__offenses') }}
    {% if is_incremental() %}
    where {{ blocks_missing_from_target() }}
    {% endif %}

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
