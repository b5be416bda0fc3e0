"""MDS's transform: a validated record to a trip or event row (normalised across versions, with the
extras), rows gathered into Arrow tables, districts assigned, duplicates dropped."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.sources.mds.config import Districts, Provider
from civic_pipelines.sources.mds.contract import DERIVED_EVENT_NAMESPACE, KNOWN_FIELDS

# ---------------------------------------------------------------- normalisation


def _canonical(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _extras(record: dict, family: str, endpoint: str) -> str | None:
    known = KNOWN_FIELDS[(family, endpoint)]
    extra = {k: v for k, v in record.items() if k not in known}
    return _canonical(extra) if extra else None


def derived_event_id(provider: str, record: dict) -> str:
    """The key of a 0.4 / 1.x status change (they have no id): UUID v5 of the provider and the
    record's canonical JSON."""
    return str(uuid.uuid5(DERIVED_EVENT_NAMESPACE, f"civic-mds:{provider}:{_canonical(record)}"))


def _route_ends(route: dict) -> tuple[tuple[float, float], tuple[float, float], int]:
    features = route["features"]
    ordered = sorted(range(len(features)), key=lambda i: features[i]["properties"]["timestamp"])
    first = features[ordered[0]]["geometry"]["coordinates"]
    last = features[ordered[-1]]["geometry"]["coordinates"]
    return (float(first[0]), float(first[1])), (float(last[0]), float(last[1])), len(features)


def trip_row(record: dict, provider: Provider) -> dict:
    """A valid trip record as a lake row (without districts and the block columns)."""
    family = provider.family
    row = {
        "provider": provider.name,
        "trip_id": record["trip_id"],
        "mds_version": provider.version,
        "provider_id": record.get("provider_id"),
        "device_id": record.get("device_id"),
        "start_time": record["start_time"],
        "end_time": record["end_time"],
        "extras": _extras(record, family, "trips"),
    }
    if family == "2.0":
        start, end = record["start_location"], record["end_location"]
        accessibility = record.get("accessibility_attributes")
        row.update(
            {
                "trip_type": record.get("trip_type"),
                "trip_duration": record.get("duration"),
                "trip_distance": record.get("distance"),
                "start_lon": float(start["lng"]),
                "start_lat": float(start["lat"]),
                "end_lon": float(end["lng"]),
                "end_lat": float(end["lat"]),
                "accessibility_attributes": _canonical(accessibility) if accessibility is not None else None,
            }
        )
        return row
    (start_lon, start_lat), (end_lon, end_lat), points = _route_ends(record["route"])
    row.update(
        {
            "provider_name": record.get("provider_name"),
            "vehicle_id": record.get("vehicle_id"),
            "vehicle_type": record.get("vehicle_type"),
            "propulsion_types": record.get("propulsion_types" if family == "1.x" else "propulsion_type"),
            "publication_time": record.get("publication_time"),
            "trip_duration": record.get("trip_duration"),
            "trip_distance": record.get("trip_distance"),
            "accuracy": record.get("accuracy"),
            "start_lon": start_lon,
            "start_lat": start_lat,
            "end_lon": end_lon,
            "end_lat": end_lat,
            "route_points": points,
            "route": _canonical(record["route"]),
            "standard_cost": record.get("standard_cost"),
            "actual_cost": record.get("actual_cost"),
            "currency": record.get("currency"),
            "parking_verification_url": record.get("parking_verification_url"),
        }
    )
    return row


def event_row(record: dict, provider: Provider) -> dict:
    """A valid status change (0.4 / 1.x) or event (2.0) as a lake row. A 1.x status change has the
    2.0 state model (``vehicle_state``, ``event_types``; its one ``trip_id`` becomes ``trip_ids``),
    a 0.4 one ``event_type`` / ``event_type_reason`` (``associated_trip`` becomes ``trip_ids``)."""
    family = provider.family
    row = {"provider": provider.name, "mds_version": provider.version, "extras": _extras(record, family, "events")}
    if family == "2.0":
        location = record.get("location")
        battery = record.get("battery_percent")
        row.update(
            {
                "event_id": record["event_id"],
                "event_id_derived": False,
                "provider_id": record.get("provider_id"),
                "device_id": record.get("device_id"),
                "event_time": record["timestamp"],
                "event_types": record.get("event_types"),
                "vehicle_state": record.get("vehicle_state"),
                "lon": float(location["lng"]) if location else None,
                "lat": float(location["lat"]) if location else None,
                "battery_fraction": battery / 100 if battery is not None else None,
                "trip_ids": record.get("trip_ids"),
            }
        )
        return row
    coordinates = record["event_location"]["geometry"]["coordinates"]
    # 0.4 and 1.x status changes share the location, battery and ticket; 1.x names the state model
    # (vehicle_state, event_types) and one trip_id where 0.4 has event_type(_reason) and associated_trip.
    trip_id = record.get("trip_id") if family == "1.x" else record.get("associated_trip")
    row.update(
        {
            "event_id": derived_event_id(provider.name, record),
            "event_id_derived": True,
            "event_time": record["event_time"],
        }
    )
    if family == "1.x":
        row.update(
            {
                "provider_id": record.get("provider_id"),
                "device_id": record.get("device_id"),
                "event_types": record.get("event_types"),
                "vehicle_state": record.get("vehicle_state"),
            }
        )
    else:
        row.update({"event_type": record.get("event_type"), "event_type_reason": record.get("event_type_reason")})
    row.update(
        {
            "lon": float(coordinates[0]),
            "lat": float(coordinates[1]),
            "battery_fraction": float(record["battery_pct"]) if record.get("battery_pct") is not None else None,
            "trip_ids": [trip_id] if trip_id else None,
            "associated_ticket": record.get("associated_ticket"),
        }
    )
    return row


def record_key(record, endpoint: str) -> str | None:
    """The published key of a record (``trip_id``, 2.0 ``event_id``) when readable; 0.4 / 1.x
    status changes have none."""
    if not isinstance(record, dict):
        return None
    name = "trip_id" if endpoint == "trips" else "event_id"
    value = record.get(name)
    return value if isinstance(value, str) else None


class _Rows:
    """Rows gathered column-wise into Arrow tables every ``FLUSH`` rows (bounded Python memory).
    ``prepare``, when given, completes the pending rows in place just before each flush (work
    done once per batch, not once per row or per hour: the council districts)."""

    FLUSH = 20_000

    def __init__(self, schema_: pa.Schema, prepare: Callable[[list[dict]], None] | None = None) -> None:
        self.schema = schema_
        self.prepare = prepare
        self.pending: list[dict] = []
        self.tables: list[pa.Table] = []

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if self.prepare is not None:
                self.prepare(self.pending)
            columns = {f.name: pa.array([row.get(f.name) for row in self.pending], f.type) for f in self.schema}
            self.tables.append(pa.table(columns, schema=self.schema))
            self.pending = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()


def _assign_districts(districts: Districts, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    for lon_name, lat_name, target in columns:
        labels, _ = districts.assign([r.get(lon_name) for r in rows], [r.get(lat_name) for r in rows])
        for row, label in zip(rows, labels):
            row[target] = label


def _dedupe_sort(table: pa.Table, key: str, time_column: str, counter: Counter, name: str) -> pa.Table:
    """One row per key, the last one (later hours and newer landings come later), then sorted by
    time and key so the content does not depend on fetch order."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__order", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(key, use_threads=False).aggregate([("__order", "max")])
    keep = pc.sort_indices(last["__order_max"])
    taken = indexed.take(pc.take(last["__order_max"], keep))
    counter[name] += table.num_rows - taken.num_rows
    ordered = taken.sort_by([(time_column, "ascending"), (key, "ascending")])
    return ordered.drop_columns(["__order"])


def _unmatched(table: pa.Table, lon: str, district: str) -> int:
    """Rows with a point that fell in no district."""
    if table.num_rows == 0:
        return 0
    return pc.sum(pc.and_(pc.is_valid(table[lon]), pc.is_null(table[district])).cast(pa.int64())).as_py() or 0
