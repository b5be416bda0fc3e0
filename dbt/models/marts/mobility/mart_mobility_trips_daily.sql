-- Trips per Austin day, provider and start council district. Every trip of the fact counts, those
-- failing the sanity rules too (counted apart in trips_failing_sanity), so the mart's trips sum to
-- the fact's rows. A trip whose start point is in no district (or has no point) counts under a null
-- council_district.

select
    provider,
    trip_date,
    council_district_start                                            as council_district,
    count(*)                                                          as trips,
    count(*) filter (where fails_sanity_rules)                        as trips_failing_sanity,
    count(distinct device_id)                                         as vehicles,
    cast(sum(distance_meters) as bigint)                              as distance_meters,
    cast(sum(duration_seconds) as bigint)                             as duration_seconds
from {{ ref('fct_mobility_trips') }}
group by provider, trip_date, council_district_start
