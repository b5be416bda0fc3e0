-- Median trip distance and duration per provider and Austin day, and per provider and Austin month
-- (`period` says which; `period_start` is the day, or the month's first day). Medians are
-- interpolated (DuckDB median = quantile_cont 0.5: the mean of the two middle values for an even
-- count). Two sets: over every trip (`median_*`), and over the trips passing the sanity rules
-- (`median_*_passing`), since the failures are the kind of record analysts drop.

with trips as (

    select
        provider,
        trip_date,
        trip_month,
        distance_meters,
        duration_seconds,
        fails_sanity_rules
    from {{ ref('fct_mobility_trips') }}

)

{% for period, column in [('day', 'trip_date'), ('month', 'trip_month')] %}
select
    provider,
    '{{ period }}'                                                    as period,
    {{ column }}                                                      as period_start,
    count(*)                                                          as trips,
    cast(median(distance_meters) as double)                           as median_distance_meters,
    cast(median(duration_seconds) as double)                          as median_duration_seconds,
    cast(median(distance_meters) as double) / 1609.344                as median_distance_miles,
    count(*) filter (where not fails_sanity_rules)                    as trips_passing,
    cast(median(distance_meters) filter (where not fails_sanity_rules) as double) as median_distance_meters_passing,
    cast(median(duration_seconds) filter (where not fails_sanity_rules) as double) as median_duration_seconds_passing
from trips
group by provider, {{ column }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
