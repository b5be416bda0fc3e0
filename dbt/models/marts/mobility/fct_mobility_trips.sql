-- One row per MDS trip (provider + trip_id), every provider and MDS version, the latest landing
-- winning. Trips that fail the Austin project's sanity rules are kept, with one boolean per rule
-- and `fails_sanity_rules` (any of them); mart_mobility_trip_sanity counts them.
--
-- Incremental per block, a block being one provider and one UTC month (`_block_id` =
-- `<provider>/<YYYY-MM>`): the pre_hook deletes the blocks re-landed since the fact took them, the
-- body reads the blocks the fact does not hold (after the delete: the new and the re-landed ones),
-- and delete+insert on (provider, trip_id) replaces a trip that moved blocks
-- (macros/replace_landed_blocks.sql). Providers are configuration, not code, so the block key
-- carries the provider instead of one pre_hook per provider as in fct_service_requests.
--
-- Sanity rules (contract, "analyst findings on the Socrata trips"; docs/mobility_mds.md):
--   is_over_24_hours            duration_seconds > 86,400
--   is_over_500_miles           distance_meters > 804,672 (500 × 1,609.344 m)
--   is_zero_span_with_duration  start_time = end_time and duration_seconds > 0 (the contract's
--                               rule; Austin's own fixtures have it)
--   is_same_location_with_duration  start point = end point (both coordinates equal) and
--                               duration_seconds > 0 (the same rule read as locations)
-- A null measure never fails a rule.
{{ config(**incremental_by_landed_block(
    'stg_mds__trips', unique_key=['provider', 'trip_id'], block_column='_block_id')) }}

with trips as (

    {{ landed_blocks_to_read(ref('stg_mds__trips'), block_column='_block_id') }}

),

latest as (

    -- the lake keeps one row per key within a block; a trip landed in two blocks of a provider
    -- (no operator promises it cannot be) keeps its latest landing
    select *
    from trips
    qualify row_number() over (
        partition by provider, trip_id
        order by _landed_at desc, _block_month desc
    ) = 1

),

flagged as (

    select
        *,
        coalesce(duration_seconds > 86400, false)                     as is_over_24_hours,
        coalesce(distance_meters > 804672, false)                     as is_over_500_miles,
        coalesce(start_time = end_time and duration_seconds > 0, false) as is_zero_span_with_duration,
        coalesce(start_lon = end_lon and start_lat = end_lat and duration_seconds > 0, false)
                                                                      as is_same_location_with_duration
    from latest

)

select
    provider,
    trip_id,
    mds_version,
    provider_id,
    device_id,
    vehicle_id,
    vehicle_type,
    propulsion_types,
    trip_type,

    start_time,
    end_time,
    -- Austin wall time (the city's day and month; the block month is UTC)
    timezone('America/Chicago', start_time)                           as start_time_local,
    cast(timezone('America/Chicago', start_time) as date)             as trip_date,
    cast(date_trunc('month', timezone('America/Chicago', start_time)) as date) as trip_month,

    duration_seconds,
    distance_meters,
    distance_meters / 1609.344                                        as distance_miles,

    start_lon,
    start_lat,
    end_lon,
    end_lat,
    council_district_start,
    council_district_end,

    is_over_24_hours,
    is_over_500_miles,
    is_zero_span_with_duration,
    is_same_location_with_duration,
    (is_over_24_hours or is_over_500_miles or is_zero_span_with_duration or is_same_location_with_duration)
                                                                      as fails_sanity_rules,

    _block_month,
    _block_id,
    _landed_at
from flagged
