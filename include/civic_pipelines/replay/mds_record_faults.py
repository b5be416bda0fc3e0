"""The MDS replay's record-level faults, applied to a page of records before it is served:
``malformed_row``'s two contract-breaking records, and ``drop_field`` / ``new_field`` /
``retype_field``. The HTTP-level faults are the server core's; the schema-invalid records of
``invalid_share`` are generated with the data (``mds_data.py``)."""

from __future__ import annotations

import uuid

from civic_pipelines.replay.mds_data import _hour_start, _ms
from civic_pipelines.replay.mds_providers import MdsProvider


def malformed_records(p: MdsProvider, endpoint: str, hour: str, served: list[dict]) -> list[dict]:
    """Two contract-breaking records (the core's ``malformed_row`` fault), made from the hour's
    first served record (or a minimal one): one without its key field (``trip_id``, 2.0 ``event_id``,
    0.4 / 1.x ``event_time``), one whose time is ISO text instead of epoch milliseconds."""
    moment = _ms(_hour_start(hour)) + 1234
    if endpoint == "trips":
        key, time_field = "trip_id", "end_time"
        base = (
            dict(served[0])
            if served
            else {"trip_id": "11111111-2222-4333-8444-555555555555", "start_time": moment - 60_000, "end_time": moment}
        )
    elif p.version == "2.0":
        key, time_field = "event_id", "timestamp"
        base = (
            dict(served[0])
            if served
            else {
                "event_id": "11111111-2222-4333-8444-666666666666",
                "timestamp": moment,
                "event_types": ["trip_end"],
                "vehicle_state": "available",
            }
        )
    else:
        key, time_field = "event_time", "event_time"
        minimal = (
            {"vehicle_state": "available", "event_types": ["on_hours"], "event_time": moment}
            if p.version == "1.2"
            else {"event_type": "available", "event_type_reason": "user_drop_off", "event_time": moment}
        )
        base = dict(served[0]) if served else minimal
    without_key = {k: v for k, v in base.items() if k != key}
    text_time = {**base, time_field: f"{hour}:00:01Z"}
    return [without_key, text_time]


def field_faults(p: MdsProvider, kind: str, records: list, faults) -> list:
    """drop_field / new_field / retype_field on one page (records are copied first)."""
    if faults.take("drop_field"):
        name = faults.field or ("end_time" if kind == "trips" else "timestamp" if p.version == "2.0" else "event_time")
        records = [{k: v for k, v in r.items() if k != name} for r in records]
    if faults.take("new_field"):
        records = [
            {**r, "journey_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"journey:{_canonical_id(r)}"))} for r in records
        ]
    if faults.take("retype_field"):
        default = (
            ("duration" if p.version == "2.0" else "trip_duration")
            if kind == "trips"
            else ("battery_percent" if p.version == "2.0" else "battery_pct")
        )
        name = faults.field or default
        records = [{**r, name: str(r[name])} if r.get(name) is not None else r for r in records]
    return records


def _canonical_id(record: dict) -> str:
    return str(record.get("trip_id") or record.get("event_id") or sorted(record.items()))
