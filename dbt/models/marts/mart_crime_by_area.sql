-- Offenses per precinct / sector / beat with each area's share of the city total, largest first.
-- Offenses without a known area (OOJ, redacted) keep their own null row so the shares add up to 1.
{{ config(tags=['seattle_crime']) }}

with offenses as (

    select * from {{ ref('fct_crime_offenses') }}

),

by_area as (

    select
        precinct,
        sector,
        beat,
        count(*) as offenses
    from offenses
    group by precinct, sector, beat

)

select
    precinct,
    sector,
    beat,
    offenses,
    offenses / sum(offenses) over () as share_of_city_offenses
from by_area
order by offenses desc, precinct nulls last, sector nulls last, beat nulls last
