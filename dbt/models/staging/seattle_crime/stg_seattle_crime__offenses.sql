-- One row per landed offense, typed and with the two published column sets' vocabularies conformed.
-- The extractor already maps schema A/B column names onto the lake contract; values still differ
-- (precinct spelling, redaction markers), and that is what this view cleans.

select
    -- ids
    cast(offense_id as bigint)                                    as offense_id,
    nullif(trim(report_number), '')                               as report_number,

    -- dates (Pacific wall time, as published)
    cast(report_datetime as timestamp)                            as report_datetime,
    cast(date_trunc('month', cast(report_datetime as timestamp)) as date) as report_month,
    cast(offense_start_datetime as timestamp)                     as offense_start_datetime,
    cast(offense_end_datetime as timestamp)                       as offense_end_datetime,

    -- classification
    upper(nullif(trim(group_a_b), ''))                            as group_a_b,
    upper(nullif(trim(crime_against_category), ''))               as crime_against_category,
    -- schema B writes "not known" three ways
    case
        when upper(trim(offense_parent_group)) in ('', '999', 'UNKNOW', 'UNKNOWN') then null
        else trim(offense_parent_group)
    end                                                           as offense_parent_group,
    nullif(trim(offense), '')                                     as offense,
    case
        when trim(offense_code) in ('', '999') then null
        else upper(trim(offense_code))
    end                                                           as offense_code,
    upper(nullif(trim(offense_category), ''))                     as offense_category,
    nullif(trim(shooting_type_group), '')                         as shooting_type_group,

    -- place: schema A uses codes, schema B spells precincts out and may say OOJ
    case upper(trim(precinct))
        when 'N'         then 'N'
        when 'NORTH'     then 'N'
        when 'E'         then 'E'
        when 'EAST'      then 'E'
        when 'S'         then 'S'
        when 'SOUTH'     then 'S'
        when 'W'         then 'W'
        when 'WEST'      then 'W'
        when 'SW'        then 'SW'
        when 'SOUTHWEST' then 'SW'
        else null
    end                                                           as precinct,
    {{ withheld_to_null('sector', ['', 'OOJ', 'REDACTED'], prefix='99', upper=true) }} as sector,
    {{ withheld_to_null('beat', ['', 'OOJ', 'REDACTED'], upper=true) }} as beat,
    {{ withheld_to_null('neighborhood', ['', 'OOJ', 'REDACTED'], prefix='99') }} as neighborhood,
    {{ withheld_to_null('reporting_area', ['', 'REDACTED']) }} as reporting_area,
    {{ withheld_to_null('census_block_2020', ['', 'REDACTED']) }} as census_block_2020,
    {{ withheld_to_null('block_address', ['', 'REDACTED']) }} as block_address,
    -- the extractor nulls withheld coordinates; 0/0 is also "withheld" (schema A), never a point
    case when longitude = 0 and latitude = 0 then null else cast(longitude as double) end as longitude,
    case when longitude = 0 and latitude = 0 then null else cast(latitude as double) end  as latitude,

    -- lineage
    source_schema,
    _block_month,
    cast(_landed_at as timestamptz)                               as _landed_at

from {{ source('seattle_crime', 'offenses') }}
