-- One row per landed MDS trip (provider + trip_id per block), every provider and MDS version in one
-- shape: the extractor already normalised the versions (0.4 `propulsion_type` and 1.x
-- `propulsion_types` are one column, 2.0 start/end locations and the route's first/last points are
-- the same four coordinates); here columns are renamed to carry their units and the block key is
-- added. `mds_version` stays, so any version-specific reading remains possible downstream.
-- Sanity rules are not applied here (nor in the lake): fct_mobility_trips flags, the marts count.

select
    -- keys
    provider,
    trip_id,
    mds_version,
    provider_id,
    provider_name,
    device_id,
    vehicle_id,

    -- vehicle
    vehicle_type,
    propulsion_types,
    trip_type,

    -- times (UTC instants as published)
    cast(start_time as timestamptz)                               as start_time,
    cast(end_time as timestamptz)                                 as end_time,
    cast(publication_time as timestamptz)                         as publication_time,

    -- measures as published: seconds and metres (2.0 distance: metres assumed, contract)
    cast(trip_duration as bigint)                                 as duration_seconds,
    cast(trip_distance as bigint)                                 as distance_meters,
    cast(accuracy as bigint)                                      as accuracy_meters,

    -- place (WGS 84)
    cast(start_lon as double)                                     as start_lon,
    cast(start_lat as double)                                     as start_lat,
    cast(end_lon as double)                                       as end_lon,
    cast(end_lat as double)                                       as end_lat,
    council_district_start,
    council_district_end,
    route_points,
    route                                                         as route_geojson,

    -- cost: smallest currency unit; a null currency means USD (contract)
    standard_cost,
    actual_cost,
    coalesce(currency, 'USD')                                     as currency,
    parking_verification_url,
    accessibility_attributes                                      as accessibility_attributes_json,
    extras                                                        as extras_json,

    -- lineage: a block is one provider and one UTC month
    cast(_hour as timestamptz)                                    as _requested_hour,
    {{ mds_block_lineage() }}

-- lake_source: source() that reads as empty while no block is landed (macros/lake_source.sql)
from {{ lake_source('mds', 'trips') }}
