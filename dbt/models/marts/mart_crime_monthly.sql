-- Offenses per report month and crime-against category: the violent (PERSON) vs property trend.
{{ config(tags=['seattle_crime']) }}

with offenses as (

    select * from {{ ref('fct_crime_offenses') }}

)

select
    report_month,
    crime_against_category,
    count(*) as offenses
from offenses
group by report_month, crime_against_category
order by report_month, crime_against_category
