-- A provider's month in fct_mobility_trips can never hold more trips than the block's landed
-- data.parquet: more would mean a re-landed block was added to instead of replaced. Reads the lake
-- through lake_source() (not the staging view), so it checks the files themselves, and passes
-- while no block is landed.
{{ config(tags=['mds']) }}

with landed as (

    select provider, _block_month, count(*) as landed_rows
    from {{ lake_source('mds', 'trips') }}
    group by provider, _block_month

),

built as (

    select provider, _block_month, count(*) as fact_rows
    from {{ ref('fct_mobility_trips') }}
    group by provider, _block_month

)

select
    built.provider,
    built._block_month,
    built.fact_rows,
    coalesce(landed.landed_rows, 0) as landed_rows
from built
left join landed using (provider, _block_month)
where built.fact_rows > coalesce(landed.landed_rows, 0)
