-- Vehicles deployed per provider and UTC hour, from the vehicle events (status changes / events).
--
-- "Deployed" (docs/mobility_mds.md): a vehicle is deployed in an hour when at least one of its
-- events in that hour leaves it in the public right of way, i.e. its (conformed) vehicle_state is
-- `available`, `reserved`, `non_operational` (0.4 / 1.x `unavailable`), `on_trip` or `stopped`;
-- `removed`, `elsewhere` and `unknown` are not deployed. `vehicles_available` counts the subset
-- whose event leaves it `available` (rentable). Counts are distinct devices, so a vehicle with
-- several events in the hour counts once. Event-based: a vehicle that sits deployed through an hour
-- without any event is not counted in that hour (no state is carried forward).
--
-- Devices: 2.0 events carry device_id. 0.4 / 1.x status changes carry none in the contract's field
-- list (stg_mds__events takes it from extras when an operator sends one); otherwise the device is
-- taken from the event's associated trip when that trip is in fct_mobility_trips. A deployed-state
-- event whose device is still unknown cannot be counted as a vehicle: it is counted in
-- `deployed_events_without_device`, so a provider whose feed cannot support the figure shows it.
--
-- The hour spine is the blocks' hour ledger (stg_mds__hours): every hour of every landed block has
-- a row, zero when nothing happened, and `hour_complete` false while the provider had not answered
-- the hour (its counts are then a lower bound).

with hours as (

    select provider, hour_start, is_complete
    from {{ ref('stg_mds__hours') }}
    -- one ledger row per provider and hour; a re-landed block has one landing in the lake
    qualify row_number() over (partition by provider, hour_start order by _landed_at desc) = 1

),

trip_devices as (

    select provider, trip_id, device_id
    from {{ ref('fct_mobility_trips') }}
    where device_id is not null

),

events as (

    select
        events.provider,
        date_trunc('hour', events.event_time)                         as hour_start,
        events.event_id,
        coalesce(events.device_id, trip_devices.device_id)            as device_id,
        events.vehicle_state in ('available', 'reserved', 'non_operational', 'on_trip', 'stopped') as is_deployed,
        events.vehicle_state = 'available'                            as is_available
    from {{ ref('stg_mds__events') }} as events
    left join trip_devices
        on trip_devices.provider = events.provider
        and trip_devices.trip_id = events.associated_trip_id
        and events.device_id is null
    -- an event landed in two blocks counts once (latest landing)
    qualify row_number() over (
        partition by events.provider, events.event_id
        order by events._landed_at desc, events._block_month desc
    ) = 1

),

by_hour as (

    select
        provider,
        hour_start,
        count(*)                                                      as events,
        count(*) filter (where is_deployed)                           as deployed_events,
        count(distinct device_id) filter (where is_deployed)          as vehicles_deployed,
        count(distinct device_id) filter (where is_available)         as vehicles_available,
        count(*) filter (where is_deployed and device_id is null)     as deployed_events_without_device
    from events
    group by provider, hour_start

)

select
    coalesce(hours.provider, by_hour.provider)                        as provider,
    coalesce(hours.hour_start, by_hour.hour_start)                    as hour_start,
    timezone('America/Chicago', coalesce(hours.hour_start, by_hour.hour_start)) as hour_start_local,
    hours.is_complete                                                 as hour_complete,
    coalesce(by_hour.events, 0)                                       as events,
    coalesce(by_hour.deployed_events, 0)                              as deployed_events,
    coalesce(by_hour.vehicles_deployed, 0)                            as vehicles_deployed,
    coalesce(by_hour.vehicles_available, 0)                           as vehicles_available,
    coalesce(by_hour.deployed_events_without_device, 0)               as deployed_events_without_device
from hours
full outer join by_hour
    on by_hour.provider = hours.provider
    and by_hour.hour_start = hours.hour_start
