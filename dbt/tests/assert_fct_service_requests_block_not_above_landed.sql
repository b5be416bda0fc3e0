-- A city's block in the fact can never hold more requests than the block's landed data.parquet:
-- more would mean a re-landed block was added to instead of replaced. Reads the lake through
-- lake_source() (not the staging views), so it checks the files themselves and passes for a city
-- with no block landed.
{{ config(tags=service_request_cities() | map(attribute='source') | list) }}

{% set landed %}
    {% for branch in service_request_cities() %}
    select '{{ branch.city }}' as city, _block_month, count(*) as landed_rows
    from {{ lake_source(branch.source, 'requests') }}
    group by _block_month
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
{% endset %}

{{ fact_rows_above_landed(ref('fct_service_requests'), landed, keys=['city', '_block_month']) }}
