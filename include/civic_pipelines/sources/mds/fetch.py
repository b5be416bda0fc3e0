"""MDS's fetch: the block's hours, the probe (a month that has not started is not published; an
incomplete landing is asked again), and the block: plan which hours to ask, ask them, merge with the
previous landing, and the hour ledger."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.http import make_session
from civic_pipelines.months import next_month, parse_month
from civic_pipelines.sources.base import BlockData, NotPublished
from civic_pipelines.sources.mds.client import Client, _fetch_hour
from civic_pipelines.sources.mds.config import load_districts, provider_config, provider_conn_id
from civic_pipelines.sources.mds.contract import (
    ENDPOINT_NAMES,
    ENDPOINTS,
    EVENTS_SCHEMA,
    HOURS_SCHEMA,
    QUARANTINE_SCHEMA,
    TIMESTAMP,
    TRIPS_SCHEMA,
    schema_error,
)
from civic_pipelines.sources.mds.transform import (
    _assign_districts,
    _canonical,
    _dedupe_sort,
    _Rows,
    _unmatched,
    event_row,
    record_key,
    trip_row,
)

log = logging.getLogger(__package__)  # one logger for the source, whichever module logs


# ---------------------------------------------------------------- hours


def month_hours(month: str) -> list[datetime]:
    start = parse_month(month)
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = next_month(start)
    last = datetime(end.year, end.month, end.day, tzinfo=UTC)
    hours = []
    current = first
    while current < last:
        hours.append(current)
        current += timedelta(hours=1)
    return hours


def hour_text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H")


def parse_hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- probe


def probe(session, connection, month: str, part: str | None = None, previous: dict | None = None) -> dict:
    """A complete block keeps its watermark (``run_block`` skips it); an incomplete or absent one
    gets a new one (it runs). No request is made."""
    provider = provider_config(part)
    start = parse_month(month)
    if datetime(start.year, start.month, 1, tzinfo=UTC) > _now():
        raise NotPublished(f"{month} has not started yet")
    if previous and previous.get("complete") is True and previous.get("watermark") and _holds_records(previous):
        return {"watermark": previous["watermark"], "provider": provider.name}
    missing = len(previous.get("missing_hours") or []) if previous else None
    marker = f"missing={missing}" if missing is not None else "never landed"
    return {"watermark": _incomplete_watermark(marker), "provider": provider.name}


def _holds_records(previous: dict) -> bool:
    """Whether a landing holds any record (trip, event or quarantined). One that holds none is
    walked again whole by the next run: a provider answering "no data" (200, empty) for every
    hour of a month is more likely broken or late than a month without a single trip."""
    return bool(previous.get("rows") or (previous.get("tables") or {}).get("events") or previous.get("quarantined"))


def _incomplete_watermark(marker: str) -> str:
    # Never equal to an earlier one (two runs within a second included), so the block runs.
    return f"incomplete|{marker}|checked={_now().isoformat(timespec='seconds')}|{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- the block


def _read_previous_table(location, name: str, schema_: pa.Schema) -> pa.Table | None:
    """One of the block's landed tables, cast to the current schema; None when unreadable."""
    from civic_pipelines.lake import read_block_table

    table = read_block_table(location, f"{name}.parquet")
    if table is None:
        return None
    try:
        return table.select(schema_.names).cast(schema_)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        log.warning(
            "mds %s: the landed %s.parquet does not have the current columns (%s): fetching every hour",
            location.folder,
            name,
            error,
        )
        return None


@dataclass
class _Plan:
    """Which endpoint-hours this run asks for, and what the previous landing carries over."""

    fetch: dict[str, list[datetime]]
    carried: dict[str, pa.Table | None] = field(default_factory=dict)
    ledger: dict[datetime, dict] = field(default_factory=dict)


def _plan(hours: list[datetime], previous: dict | None, location) -> _Plan:
    everything = _Plan(fetch={endpoint: list(hours) for endpoint in ENDPOINT_NAMES})
    if not previous or previous.get("complete") is not False or location is None or not _holds_records(previous):
        return everything  # nothing landed (or nothing at all), or a complete block run again (force): every hour
    missing = previous.get("missing")
    if not isinstance(missing, dict) or not all(isinstance(missing.get(e), list) for e in ENDPOINT_NAMES):
        return everything
    carried = {
        "data": _read_previous_table(location, "data", TRIPS_SCHEMA),
        "events": _read_previous_table(location, "events", EVENTS_SCHEMA),
        "hours": _read_previous_table(location, "hours", HOURS_SCHEMA),
        "quarantine": _read_previous_table(location, "quarantine", QUARANTINE_SCHEMA),
    }
    if carried["data"] is None or carried["events"] is None or carried["hours"] is None:
        return everything
    if carried["quarantine"] is None and previous.get("quarantined"):
        return everything
    wanted = set(hours)
    fetch = {
        endpoint: sorted(h for h in map(parse_hour, missing[endpoint]) if h in wanted) for endpoint in ENDPOINT_NAMES
    }
    ledger = {row["hour"]: row for row in carried["hours"].to_pylist()}
    return _Plan(fetch=fetch, carried=carried, ledger=ledger)


def extract_block(
    session,
    connection,
    month: str,
    probed: dict,
    landed_at: datetime | None = None,
    part: str | None = None,
    previous: dict | None = None,
    location=None,
    force: bool = False,
) -> BlockData:
    landed_at = landed_at or _now()
    provider = provider_config(part)
    if force:
        previous = None  # forced: every hour again, nothing carried over from the landing
    # A session of this block's own: the Client stops it re-reading the environment per request.
    with make_session(conn_id=provider_conn_id(provider.name)) as own:
        return _extract(Client(own, provider), month, probed, landed_at, previous, location)


def _extract(
    client: Client, month: str, probed: dict, landed_at: datetime, previous: dict | None, location
) -> BlockData:
    provider = client.provider
    districts = load_districts()
    hours = month_hours(month)
    month_start, month_end = _ms(hours[0]), _ms(hours[-1]) + 3_600_000
    plan = _plan(hours, previous, location)
    now = _now()
    started = time.monotonic()

    # Council districts are found per batch of rows as they flush (one spatial query per batch,
    # not per hour: a month is ~1,500 answers of a few records).
    trips = _Rows(
        TRIPS_SCHEMA,
        prepare=lambda rows: _assign_districts(
            districts,
            rows,
            [("start_lon", "start_lat", "council_district_start"), ("end_lon", "end_lat", "council_district_end")],
        ),
    )
    events = _Rows(
        EVENTS_SCHEMA, prepare=lambda rows: _assign_districts(districts, rows, [("lon", "lat", "council_district")])
    )
    quarantine: list[dict] = []
    answers: dict[tuple[str, datetime], dict] = {}  # (endpoint, hour) -> status, records, pages
    endpoints = ENDPOINTS[provider.family]

    for endpoint in ENDPOINT_NAMES:
        path, parameter, key = endpoints[endpoint]
        quarantine_endpoint = path.split("/")[0] if endpoint == "events" else "trips"
        target = trips if endpoint == "trips" else events
        for hour in plan.fetch[endpoint]:
            if hour + timedelta(hours=1) > now:
                answers[(endpoint, hour)] = {"status": None, "records": 0, "pages": 0}
                continue
            status, records, pages = _fetch_hour(client, provider.url(path), {parameter: hour_text(hour)}, key)
            answers[(endpoint, hour)] = {"status": status, "records": len(records), "pages": pages}
            log.debug(
                "mds %s %s %s: %s, %d record(s), %d page(s)",
                provider.name,
                endpoint,
                hour_text(hour),
                status,
                len(records),
                pages,
            )
            for record in records:
                problem = schema_error(record, provider.family, endpoint)
                if problem is None:
                    row = trip_row(record, provider) if endpoint == "trips" else event_row(record, provider)
                    moment = row["end_time"] if endpoint == "trips" else row["event_time"]
                    if not month_start <= moment < month_end:
                        field_name = "end_time" if endpoint == "trips" else "event_time"
                        problem = (f"{field_name} outside the block's month", f"{field_name} outside the block's month")
                if problem is not None:
                    quarantine.append(
                        {
                            "provider": provider.name,
                            "mds_version": provider.version,
                            "endpoint": quarantine_endpoint,
                            "record_id": record_key(record, endpoint),
                            "raw": _canonical(record),
                            "_reason": problem[0],
                            "_reason_kind": problem[1],
                            "_hour": _ms(hour),
                            "_block_month": month,
                            "_landed_at": landed_at,
                        }
                    )
                    continue
                row.update({"_hour": _ms(hour), "_block_month": month, "_landed_at": landed_at})
                target.add(row)

    # ---- the hour ledger: previous answers, overwritten by this run's
    def empty_ok(hour: datetime) -> bool:
        limit = provider.empty_after_hours
        return limit is not None and hour + timedelta(hours=1) <= now - timedelta(hours=limit)

    ledger_rows = []
    missing: dict[str, list[str]] = {e: [] for e in ENDPOINT_NAMES}
    for hour in hours:
        old = plan.ledger.get(hour) or {}
        row = {
            "provider": provider.name,
            "hour": _ms(hour),
            "_block_month": month,
            "_landed_at": old.get("_landed_at") or landed_at,
        }
        fetched_now = False
        for endpoint in ENDPOINT_NAMES:
            answer = answers.get((endpoint, hour))
            if answer is not None:
                fetched_now = True
                row[f"{endpoint}_status"] = answer["status"]
                row[endpoint] = answer["records"]
                row[f"{endpoint}_pages"] = answer["pages"]
            else:
                row[f"{endpoint}_status"] = old.get(f"{endpoint}_status")
                row[endpoint] = old.get(endpoint, 0)
                row[f"{endpoint}_pages"] = old.get(f"{endpoint}_pages", 0)
            ok = row[f"{endpoint}_status"] == 200 or (row[f"{endpoint}_status"] == 404 and empty_ok(hour))
            if not ok:
                missing[endpoint].append(hour_text(hour))
        if fetched_now:
            row["_landed_at"] = landed_at
        row["complete"] = hour_text(hour) not in missing["trips"] and hour_text(hour) not in missing["events"]
        ledger_rows.append(row)
    hours_table = pa.Table.from_pylist(ledger_rows, schema=HOURS_SCHEMA)
    missing_hours = sorted(set(missing["trips"]) | set(missing["events"]))
    complete = not missing_hours

    # ---- merge with what the previous landing holds for the hours not asked again
    duplicates: Counter = Counter()
    carried_rows = 0
    tables = {}
    for name, rows, key, time_column, endpoint in (
        ("data", trips, "trip_id", "end_time", "trips"),
        ("events", events, "event_id", "event_time", "events"),
    ):
        new = rows.table()
        old = plan.carried.get(name)
        if old is not None and old.num_rows:
            refetched = pa.array([_ms(h) for h in plan.fetch[endpoint]], TIMESTAMP)
            old = old.filter(pc.invert(pc.is_in(old["_hour"], value_set=refetched)))
            carried_rows += old.num_rows
            new = pa.concat_tables([old, new])
        tables[name] = _dedupe_sort(new, key, time_column, duplicates, "trips" if name == "data" else "events")
    quarantine_table = pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA)
    old_quarantine = plan.carried.get("quarantine")
    if old_quarantine is not None and old_quarantine.num_rows:
        refetched = {endpoint: set(plan.fetch[endpoint]) for endpoint in ENDPOINT_NAMES}
        keep = [
            row
            for row in old_quarantine.to_pylist()
            if row["_hour"] not in refetched["trips" if row["endpoint"] == "trips" else "events"]
        ]
        quarantine_table = pa.concat_tables([pa.Table.from_pylist(keep, schema=QUARANTINE_SCHEMA), quarantine_table])
    if quarantine_table.num_rows:
        quarantine_table = quarantine_table.sort_by(
            [("_hour", "ascending"), ("endpoint", "ascending"), ("raw", "ascending")]
        )

    fetched = {
        e: sum(1 for (endpoint, _), a in answers.items() if endpoint == e and a["status"] is not None)
        for e in ENDPOINT_NAMES
    }
    total_pages = sum(a["pages"] for a in answers.values())
    probed["watermark"] = (
        f"complete|{hour_text(hours[0])}..{hour_text(hours[-1])}"
        if complete
        else _incomplete_watermark(f"missing={len(missing_hours)}")
    )
    stats = {
        "provider": provider.name,
        "mds_version": provider.version,
        "hours": len(hours),
        "fetched_hours": fetched,
        "missing_hours": missing_hours,
        "missing": missing,
        "complete": complete,
        "pages": total_pages,
        "requests": client.counters["requests"],
        "token_requests": client.counters["token_requests"],
        "unauthorized_retries": client.counters["unauthorized_retries"],
        "lenient_json_pages": client.counters["lenient_json_pages"],
        "quarantine_reasons": dict(sorted(Counter(quarantine_table["_reason_kind"].to_pylist()).items())),
        "district_unmatched": {
            "trip_start": _unmatched(tables["data"], "start_lon", "council_district_start"),
            "trip_end": _unmatched(tables["data"], "end_lon", "council_district_end"),
            "events": _unmatched(tables["events"], "lon", "council_district"),
        },
        "districts": districts.describe(),
        "duplicates_dropped": {"trips": duplicates["trips"], "events": duplicates["events"]},
        "merged_from_previous": carried_rows,
        "events_rows": tables["events"].num_rows,
        "fetch_seconds": round(time.monotonic() - started, 3),
    }
    level = logging.INFO if complete else logging.WARNING
    log.log(
        level,
        "mds %s %s: %d trips, %d events, %d quarantined; %s",
        provider.name,
        month,
        tables["data"].num_rows,
        tables["events"].num_rows,
        quarantine_table.num_rows,
        "complete" if complete else f"{len(missing_hours)} hour(s) missing, first {missing_hours[0]}",
    )
    return BlockData(
        data=tables["data"],
        quarantine=quarantine_table if quarantine_table.num_rows else None,
        stats=stats,
        tables={"events": tables["events"], "hours": hours_table},
    )
