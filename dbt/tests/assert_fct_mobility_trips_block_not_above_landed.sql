-- A provider's month in fct_mobility_trips can never hold more trips than the block's landed
-- data.parquet: more would mean a re-landed block was added to instead of replaced. Reads the lake
-- through lake_source() (not the staging view), so it checks the files themselves, and passes
-- while no block is landed.
{{ config(tags=['mds']) }}

{% set landed %}
    select provider, _block_month, count(*) as landed_rows
    from {{ lake_source('mds', 'trips') }}
    group by provider, _block_month
{% endset %}

{{ fact_rows_above_landed(ref('fct_mobility_trips'), landed, keys=['provider', '_block_month']) }}
