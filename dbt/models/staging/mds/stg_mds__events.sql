-- One row per landed MDS vehicle event (provider + event_id per block): 0.4 / 1.x status changes
-- and 2.0 events in one shape. Battery stays on the lake's one scale (battery_fraction, 0-1: 0.4
-- `battery_pct` as published, 2.0 `battery_percent` / 100). `vehicle_state` is conformed across
-- versions: 1.x and 2.0 publish it (the extractor lands a 1.x status change's vehicle_state,
-- event_types and trip_id in the 2.0 columns); a 0.4 status change's event_type is the state it
-- leaves the vehicle in, mapped to the 1.0+ state names (`unavailable` became `non_operational`).

select
    -- keys
    provider,
    event_id,
    event_id_derived,
    mds_version,
    provider_id,
    -- 0.4 status changes carry no device in the contract's field list: an operator that sends
    -- one anyway has it in extras (1.x and 2.0 carry it)
    coalesce(device_id, json_extract_string(extras, '$.device_id')) as device_id,

    -- what happened
    cast(event_time as timestamptz)                               as event_time,
    event_type,
    event_type_reason,
    event_types,
    vehicle_state                                                 as vehicle_state_published,
    case
        when vehicle_state is not null then vehicle_state
        when event_type = 'unavailable' then 'non_operational'
        else event_type  -- available, reserved, removed: the same names in 1.0+
    end                                                           as vehicle_state,

    -- place and battery
    cast(lon as double)                                           as lon,
    cast(lat as double)                                           as lat,
    council_district,
    cast(battery_fraction as double)                              as battery_fraction,

    -- associations
    trip_ids,
    trip_ids[1]                                                   as associated_trip_id,
    associated_ticket,
    extras                                                        as extras_json,

    -- lineage
    cast(_hour as timestamptz)                                    as _requested_hour,
    {{ mds_block_lineage() }}

-- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
from {{ lake_source('mds', 'events') }}
