-- A city's block in the fact can never hold more requests than the block's landed data.parquet:
-- more would mean a re-landed block was added to instead of replaced. Reads the lake through
-- lake_source() (not the staging views), so it checks the files themselves and passes for a city
-- with no block landed.
{{ config(tags=['minneapolis_311', 'toronto_311', 'nyc_311']) }}

with landed as (

    select 'minneapolis' as city, _block_month, count(*) as landed_rows
    from {{ lake_source('minneapolis_311', 'requests') }}
    group by _block_month

    union all

    select 'toronto' as city, _block_month, count(*) as landed_rows
    from {{ lake_source('toronto_311', 'requests') }}
    group by _block_month

    union all

    select 'nyc' as city, _block_month, count(*) as landed_rows
    from {{ lake_source('nyc_311', 'requests') }}
    group by _block_month

),

built as (

    select city, _block_month, count(*) as fact_rows
    from {{ ref('fct_service_requests') }}
    group by city, _block_month

)

select
    built.city,
    built._block_month,
    built.fact_rows,
    coalesce(landed.landed_rows, 0) as landed_rows
from built
left join landed using (city, _block_month)
where built.fact_rows > coalesce(landed.landed_rows, 0)
