-- One row per provider and UTC hour of every landed block: what the hour's trips and events
-- requests answered. The hour spine of mart_mobility_vehicles_hourly (an hour with no event is a
-- row with zero vehicles; an hour not yet complete says so).

with source as (

    select * from {{ lake_source('mds', 'hours') }}

)

select
    provider,
    cast(hour as timestamptz)                                         as hour_start,
    trips_status,
    events_status,
    trips                                                             as trips_received,
    events                                                            as events_received,
    complete                                                          as is_complete,
    _block_month,
    provider || '/' || _block_month                                   as _block_id,
    cast(_landed_at as timestamptz)                                   as _landed_at
from source
