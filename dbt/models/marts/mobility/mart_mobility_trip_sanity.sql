-- Trips failing the Austin project's sanity rules, per provider and landed block month (the UTC
-- month of the trips' end, i.e. what the provider delivered for that month): counted, never
-- dropped. One count per rule (a trip can fail several) and `trips_failing` for any rule. The rules
-- are defined once, in fct_mobility_trips.

select
    provider,
    _block_month                                                      as block_month,
    count(*)                                                          as trips,
    count(*) filter (where is_over_24_hours)                          as trips_over_24_hours,
    count(*) filter (where is_over_500_miles)                         as trips_over_500_miles,
    count(*) filter (where is_zero_span_with_duration)                as trips_zero_span_with_duration,
    count(*) filter (where is_same_location_with_duration)            as trips_same_location_with_duration,
    count(*) filter (where fails_sanity_rules)                        as trips_failing,
    count(*) filter (where fails_sanity_rules) / count(*)::double     as share_failing
from {{ ref('fct_mobility_trips') }}
group by provider, _block_month
