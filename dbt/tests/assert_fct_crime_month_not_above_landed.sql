-- A month of the fact can never hold more offenses than the month's landed data.parquet: more would
-- mean a re-landed block was added to instead of replaced. Reads the lake directly (not the staging
-- view) and takes the month from the file path, so it checks the files themselves.
{{ config(tags=['seattle_crime']) }}

{% set landed %}
    select
        regexp_extract(filename, 'month=([0-9]{4}-[0-9]{2})', 1) as _block_month,
        count(*) as landed_rows
    from read_parquet(
        '{{ env_var("CIVIC_LAKE") }}/seattle_crime/month=*/data.parquet',
        union_by_name = true,
        filename = true
    )
    group by 1
{% endset %}

{{ fact_rows_above_landed(ref('fct_crime_offenses'), landed, keys=['_block_month']) }}
