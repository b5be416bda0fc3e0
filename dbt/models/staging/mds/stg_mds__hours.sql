-- One row per provider and UTC hour of every landed block: what the hour's trips and events
-- requests answered. The hour spine of mart_mobility_vehicles_hourly (an hour with no event is a
-- row with zero vehicles; an hour not yet complete says so).

select
    provider,
    cast(hour as timestamptz)                                         as hour_start,
    trips_status,
    events_status,
    trips                                                             as trips_received,
    events                                                            as events_received,
    complete                                                          as is_complete,
    {{ mds_block_lineage() }}
from {{ lake_source('mds', 'hours') }}
