"""MDS provider records, generated: each provider's trips and status changes / events per hour
in its MDS version's shape (0.4, 1.2, 2.0), a share of them schema-invalid. Deterministic per
(seed, provider, hour); no real MDS record is public, so every record comes from the contract's
field lists. The provider endpoints, tokens and paging are in ``mds.py``.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import functools
import random
import uuid

from civic_pipelines.replay.seeds import seed_for

SALT = 0x4D445321  # "MDS!"
# Austin: most points inside the generated district grid (lon -97.94..-97.56, lat 30.10..30.52).
AUSTIN = (-97.93, -97.57, 30.11, 30.51)
OUTSIDE = (-98.10, -97.96, 30.55, 30.65)
VEHICLE_TYPES = ("scooter", "scooter", "scooter", "bicycle", "moped")
STATUS_CHANGES = (  # (event_type, event_type_reason): the contract's enums
    ("available", "user_drop_off"),
    ("reserved", "user_pick_up"),
    ("available", "service_start"),
    ("removed", "service_end"),
    ("unavailable", "low_battery"),
    ("unavailable", "maintenance"),
    ("removed", "rebalance_pick_up"),
    ("available", "rebalance_drop_off"),
    ("removed", "maintenance_pick_up"),
    ("available", "maintenance_drop_off"),
    ("removed", "agency_pick_up"),
    ("available", "agency_drop_off"),
)
EVENTS_20 = ((["trip_start"], "on_trip"), (["trip_end"], "available"))  # the contract's (Voi's) examples
# 1.x (1.0 and later) status changes: (vehicle_state, event_types) pairs the OMF provider
# status_changes.json allows for the state, mostly the 0.4 -> 1.0 translations of STATUS_CHANGES
# (OMF wiki "Upgrading to 1.0.0"); trip events carry a trip_id (required by the schema).
STATUS_CHANGES_1X = (
    ("available", ["trip_end"]),
    ("on_trip", ["trip_start"]),
    ("available", ["on_hours"]),
    ("non_operational", ["off_hours"]),
    ("non_operational", ["battery_low"]),
    ("non_operational", ["maintenance"]),
    ("removed", ["rebalance_pick_up"]),
    ("available", ["provider_drop_off"]),
    ("removed", ["maintenance_pick_up"]),
    ("available", ["maintenance"]),
    ("removed", ["agency_pick_up"]),
    ("available", ["agency_drop_off"]),
    ("reserved", ["reservation_start"]),
)
TRIP_EVENTS = {"trip_start", "trip_end", "trip_cancel", "trip_enter_jurisdiction", "trip_leave_jurisdiction"}
# How a generated record breaks its schema, per version and endpoint.
_BATTERY_PCT = "battery_pct 1.7 (a percentage in a 0-1 field)"
_BREAKS = {
    "trips": {
        "0.4": "trip_duration as text",
        "2.0": "start_location without lng",
        "1.2": "the 0.4 name propulsion_type beside propulsion_types (1.x forbids extra keys)",
    },
    "events": {"0.4": _BATTERY_PCT, "1.2": _BATTERY_PCT, "2.0": "battery_percent 140"},
}
INVALID_KINDS = {
    (version, endpoint): _BREAKS[endpoint][version]
    for endpoint in ("trips", "events")
    for version in ("0.4", "1.2", "2.0")
}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@functools.lru_cache(maxsize=4096)  # each hour is asked for by several requests (endpoints, pages, links)
def _hour_start(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=_dt.UTC)


def _ms(moment: _dt.datetime) -> int:
    return calendar.timegm(moment.utctimetuple()) * 1000


def _point(rng: random.Random) -> tuple[float, float]:
    west, east, south, north = OUTSIDE if rng.random() < 0.03 else AUSTIN
    return round(rng.uniform(west, east), 6), round(rng.uniform(south, north), 6)


def _hour_draws(seed: int, provider: str, hour: str, kind: str, own_rate: int | None, rate: int):
    """The random stream of one kind of record in an hour, and how many it draws (the rate +- half;
    the provider's own rate when it has one)."""
    rng = random.Random(seed_for(SALT, seed, provider, hour, kind))
    per_hour = own_rate if own_rate is not None else rate
    return rng, (rng.randint(max(0, per_hour - per_hour // 2), per_hour + per_hour // 2) if per_hour else 0)


@functools.lru_cache(maxsize=64)
def _fleet(seed: int, provider: str, size: int) -> tuple[tuple[str, str, str], ...]:
    """The provider's vehicles, ``(device_id, vehicle_id, vehicle_type)``: the same every hour (made
    once per seed, provider and size: an MDS month asks for ~1,500 hours)."""
    rng = random.Random(seed_for(SALT, seed, provider, "fleet"))
    return tuple(
        (_uuid(rng), f"{provider[:1].upper()}{rng.randrange(16**4):04X}", rng.choice(VEHICLE_TYPES))
        for _ in range(max(1, size))
    )


def generate_hour(
    p, hour: str, seed: int, trips_per_hour: int, events_per_hour: int, fleet_size: int, invalid_share: float
) -> dict:
    """Provider ``p``'s trips and events in ``hour`` (``YYYY-MM-DDTHH``), in its MDS version's
    shape, and which of them break their schema: ``{"trips", "events", "invalid"}``."""
    start = _ms(_hour_start(hour))
    fleet = _fleet(seed, p.name, fleet_size)
    rng, count = _hour_draws(seed, p.name, hour, "trips", p.trips_per_hour, trips_per_hour)
    trips, invalid_trips = [], []
    for index in range(count):
        device_id, vehicle_id, vehicle_type = rng.choice(fleet)
        end_time = start + rng.randrange(3_600_000)
        duration = rng.randint(60, 2400)
        start_time = end_time - duration * 1000 - rng.randrange(1000)
        (lon0, lat0), (lon1, lat1) = _point(rng), _point(rng)
        distance = int(duration * rng.uniform(2.0, 5.5))
        trip_id = _uuid(rng)
        if p.version == "2.0":
            trip = {
                "accessibility_attributes": [],
                "device_id": device_id,
                "distance": distance,
                "duration": duration,
                "end_location": {"lat": lat1, "lng": lon1},
                "end_time": end_time,
                "provider_id": p.provider_id,
                "start_location": {"lat": lat0, "lng": lon0},
                "start_time": start_time,
                "trip_id": trip_id,
                "trip_type": ["rider"],
            }
        else:
            middle = [
                (
                    round((lon0 + lon1) / 2 + rng.uniform(-0.002, 0.002), 6),
                    round((lat0 + lat1) / 2 + rng.uniform(-0.002, 0.002), 6),
                )
                for _ in range(rng.randint(0, 3))
            ]
            points = [(lon0, lat0), *middle, (lon1, lat1)]
            stamps = sorted(start_time + rng.randrange(max(1, end_time - start_time)) for _ in middle)
            stamps = [start_time, *stamps, end_time]
            route = {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"timestamp": t},
                        "geometry": {"type": "Point", "coordinates": [x, y]},
                    }
                    for (x, y), t in zip(points, stamps)
                ],
            }
            propulsion = (
                ["human", "electric_assist"] if vehicle_type == "bicycle" and rng.random() < 0.5 else ["electric"]
            )
            cost = rng.choice((100, 150, 200)) + duration // 60 * rng.choice((15, 25, 39))
            trip = {
                "provider_id": p.provider_id,
                "provider_name": p.name,
                "device_id": device_id,
                "vehicle_id": vehicle_id,
                "vehicle_type": vehicle_type,
                ("propulsion_types" if p.version == "1.2" else "propulsion_type"): propulsion,
                "trip_id": trip_id,
                "trip_duration": duration,
                "trip_distance": distance,
                "route": route,
                "accuracy": rng.randint(3, 30),
                "start_time": start_time,
                "end_time": end_time,
                "publication_time": end_time + rng.randint(1000, 600_000),
                "standard_cost": cost,
                "actual_cost": cost if rng.random() < 0.8 else 0,
            }
            if rng.random() < 0.3:
                trip["currency"] = "USD" if rng.random() < 0.7 else None
            if rng.random() < 0.2:
                trip["parking_verification_url"] = f"https://photos.example.com/{p.name}/{trip_id}.jpg"
        if rng.random() < invalid_share:
            break_record(trip, p.version, "trips")
            invalid_trips.append(index)
        trips.append(trip)

    rng, count = _hour_draws(seed, p.name, hour, "events", p.events_per_hour, events_per_hour)
    events, invalid_events = [], []
    for index in range(count):
        device_id, vehicle_id, vehicle_type = rng.choice(fleet)
        event_time = start + rng.randrange(3_600_000)
        lon, lat = _point(rng)
        if p.version == "2.0":
            event_types, state = rng.choice(EVENTS_20)
            event = {
                "battery_percent": rng.randint(5, 100),
                "device_id": device_id,
                "event_id": _uuid(rng),
                "event_types": list(event_types),
                "location": {"lat": lat, "lng": lon},
                "provider_id": p.provider_id,
                "timestamp": event_time,
                "trip_ids": [_uuid(rng)] if rng.random() < 0.8 else None,
                "vehicle_state": state,
            }
        elif p.version == "1.2":
            state, event_types = rng.choice(STATUS_CHANGES_1X)
            event = {
                "provider_name": p.name,
                "provider_id": p.provider_id,
                "device_id": device_id,
                "vehicle_id": vehicle_id,
                "vehicle_type": vehicle_type,
                "propulsion_types": ["human", "electric_assist"] if vehicle_type == "bicycle" else ["electric"],
                "vehicle_state": state,
                "event_types": list(event_types),
                "event_time": event_time,
                "publication_time": event_time + rng.randint(1000, 600_000),
                "event_location": {
                    "type": "Feature",
                    "properties": {"timestamp": event_time},
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                },
                "battery_pct": round(rng.uniform(0.05, 1.0), 2),
            }
            if TRIP_EVENTS & set(event_types):
                event["trip_id"] = _uuid(rng)
            if "maintenance" in event_types and rng.random() < 0.5:
                event["associated_ticket"] = f"TICKET-{rng.randrange(10**6):06d}"
        else:
            event_type, reason = rng.choice(STATUS_CHANGES)
            event = {
                "event_type": event_type,
                "event_type_reason": reason,
                "event_time": event_time,
                "event_location": {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                },
                "battery_pct": round(rng.uniform(0.05, 1.0), 2),
            }
            if reason in ("user_pick_up", "user_drop_off"):
                event["associated_trip"] = _uuid(rng)
            if reason == "maintenance" and rng.random() < 0.5:
                event["associated_ticket"] = f"TICKET-{rng.randrange(10**6):06d}"
        if rng.random() < invalid_share:
            break_record(event, p.version, "events")
            invalid_events.append(index)
        events.append(event)
    return {"trips": trips, "events": events, "invalid": {"trips": invalid_trips, "events": invalid_events}}


def break_record(record: dict, version: str, endpoint: str) -> None:
    """Make ``record`` invalid the one way :data:`INVALID_KINDS` names for its version and endpoint."""
    if endpoint == "trips":
        if version == "0.4":
            record["trip_duration"] = str(record["trip_duration"])
        elif version == "1.2":
            record["propulsion_type"] = list(record["propulsion_types"])
        else:
            record["start_location"] = {"lat": record["start_location"]["lat"]}
    elif version == "2.0":
        record["battery_percent"] = 140
    else:
        record["battery_pct"] = 1.7
