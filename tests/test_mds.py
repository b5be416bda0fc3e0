"""MDS provider feeds: configuration, auth, and whole blocks against the replay server (every
version and auth mode, incomplete hours, quarantine, no secret in any log line). Schemas,
normalisation and districts: ``test_mds_schemas.py``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from civic_pipelines import sources
from civic_pipelines.extract import run_block
from civic_pipelines.http import make_session
from civic_pipelines.sources import mds
from civic_pipelines.sources.base import NotPublished

SAMPLES = Path(__file__).resolve().parent / "data" / "austin_mds"  # copies of shared/samples/austin_mds
MONTH = "2023-02"  # 672 hours
HOURS = 28 * 24
NOW = "2023-03-01T00:00:00Z"
GRID = (-97.94, -97.56, 30.10, 30.52)  # the bundled generated grid's extent


def configure(server, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"mds": body}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["mds"]


def set_connections(monkeypatch, server, providers=None) -> None:
    for name in providers or server.mds.providers:
        monkeypatch.setenv(f"AIRFLOW_CONN_CIVIC_MDS_{name.upper()}", json.dumps(server.mds.connection(name)))


@pytest.fixture(autouse=True)
def no_airflow_lookups(monkeypatch):
    """Variables and connections from the environment only (no metadata DB in these tests)."""
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["voi", "lyft", "bolt", "dott"]')
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", "")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "")
    mds.clear_token_cache()
    yield
    mds.clear_token_cache()


@pytest.fixture
def server(replay, monkeypatch):
    requests.post(f"{replay.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(replay, {"now": NOW, "trips_per_hour": 2, "events_per_hour": 2, "page_size": 2})
    set_connections(monkeypatch, replay)
    return replay


def provider_requests(server, provider: str) -> list[dict]:
    entries = requests.get(f"{server.url}/_replay/requests", params={"detail": 1}, timeout=10).json()
    return [e for e in entries if e["path"].startswith((f"/mds/{provider}/", f"/mds-auth/{provider}/"))]


def block_files(lake: str, provider: str, month: str = MONTH) -> Path:
    return Path(lake) / "mds" / provider / f"month={month}"


def expected(server, provider: str, month: str = MONTH, until: datetime | None = None) -> dict:
    """The replay's records for the month (the hours that end by ``until``), split into what lands
    and what is quarantined."""
    out = {"trips": [], "events": [], "bad_trips": [], "bad_events": []}
    for hour in mds.month_hours(month):
        if until is not None and ms(hour) + 3_600_000 > ms(until):
            continue
        records = server.mds.records(provider, mds.hour_text(hour))
        for kind in ("trips", "events"):
            bad = set(records["invalid"][kind])
            for index, record in enumerate(records[kind]):
                out[("bad_" + kind) if index in bad else kind].append(record)
    return out


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def set_clock(monkeypatch, iso: str) -> datetime:
    """The client's clock (hours that have not ended by it are not asked): a shorter walk."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    monkeypatch.setattr(mds.fetch, "_now", lambda: moment)
    return moment


def inside_grid(lon: float, lat: float) -> bool:
    west, east, south, north = GRID
    return west < lon < east and south < lat < north


# ---------------------------------------------------------------- registry and configuration


def test_the_source_is_registered_with_providers_as_parts(monkeypatch):
    assert sources.get("mds") is mds
    spec = mds.SPEC
    assert (spec.name, spec.conn_id, spec.natural_key, spec.dbt_tag, spec.cron) == (
        "mds",
        "civic_mds",
        "trip_id",
        "mds",
        "0 0 1 * *",
    )
    assert spec.parts == () and spec.parts_param == "providers" and spec.first_month == "2018-01"
    assert sources.parts("mds") == ["voi", "lyft", "bolt", "dott"]
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["bird", "voi", "bird"]')
    assert sources.parts("mds") == ["bird", "voi"]
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", "")
    assert mds.parts() == list(mds.DEFAULT_PROVIDERS)
    for bad in ('["Bad Name"]', "[]", '{"voi": 1}'):
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", bad)
        with pytest.raises(mds.MdsConfigError):
            mds.parts()
    assert mds.auth_headers(None) == {}


@pytest.mark.parametrize(
    "configured, want",
    [
        ("0.4", ("0.4", "0.4")),
        ("0.4.1", ("0.4", "0.4")),
        ("1.2", ("1.2", "1.x")),
        ("1.1.0", ("1.1", "1.x")),
        ("2.0", ("2.0", "2.0")),
        (2.0, ("2.0", "2.0")),
    ],
)
def test_versions(configured, want):
    assert mds.parse_version(configured) == want


@pytest.mark.parametrize("configured", ["0.3", "3.0", "", None, "latest"])
def test_unsupported_versions(configured):
    with pytest.raises(mds.MdsConfigError):
        mds.parse_version(configured)


def test_provider_connections(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_MDS_ACME",
        json.dumps(
            {
                "conn_type": "http",
                "host": "https://mds.acme.example/en/austin",
                "login": "client-7",
                "password": "s3cret-value",
                "extra": {"mds_version": "1.2", "auth": "oauth2", "token_url": "/token", "empty_after_hours": 48},
            }
        ),
    )
    provider = mds.provider_config("acme")
    assert (provider.base_url, provider.family, provider.version, provider.auth) == (
        "https://mds.acme.example/en/austin",
        "1.x",
        "1.2",
        "oauth2",
    )
    assert provider.token_url == "https://mds.acme.example/token" and provider.empty_after_hours == 48
    assert provider.accept == "application/vnd.mds+json;version=1.2"
    assert "s3cret" not in repr(provider) and "client-7" not in repr(provider)
    assert provider.url("trips") == "https://mds.acme.example/en/austin/trips"
    with pytest.raises(NotPublished, match="no connection civic_mds_nobody"):
        mds.provider_config("nobody")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_MDS_ACME",
        json.dumps(
            {"conn_type": "http", "host": "https://x.example", "extra": {"mds_version": "2.0", "auth": "oauth2"}}
        ),
    )
    with pytest.raises(mds.MdsConfigError, match="token_url"):
        mds.provider_config("acme")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_MDS_ACME",
        json.dumps({"conn_type": "http", "host": "https://x.example", "extra": {"mds_version": "2.0", "auth": "jwt"}}),
    )
    with pytest.raises(mds.MdsConfigError, match="auth 'jwt'"):
        mds.provider_config("acme")


def test_a_provider_without_a_connection_is_skipped_with_the_reason(lake, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["nobody"]')
    manifest = run_block("mds", MONTH, lake=lake, part="nobody")
    assert manifest["skipped"] and "no connection civic_mds_nobody" in manifest["reason"]
    with pytest.raises(ValueError, match="has parts"):
        run_block("mds", MONTH, lake=lake)


# ---------------------------------------------------------------- whole blocks


@pytest.mark.parametrize("name", ["voi", "lyft", "bolt", "dott"])  # 2.0 oauth2, 2.0 bearer, 1.2 bearer, 0.4 oauth2
def test_a_block_lands_exactly_the_replay_records(server, lake, name, monkeypatch):
    """One whole provider-month (voi); the other versions walk the month's first ten days (the
    client's clock says the rest has not ended), which exercises the same code in less time."""
    until = None if name == "voi" else set_clock(monkeypatch, "2023-02-11T00:00:00Z")
    walked = HOURS if until is None else 10 * 24
    configure(server, {"invalid_share": 0.05})
    if name == "bolt":  # throttled twice on the way: the session retries (Retry-After 0)
        requests.post(
            f"{server.url}/_replay/faults", json={"status_429": 2, "retry_after": 0}, timeout=10
        ).raise_for_status()
    p = server.mds.providers[name]
    manifest = run_block("mds", MONTH, lake=lake, part=name)
    want = expected(server, name, until=until)
    folder = block_files(lake, name)
    trips = pq.read_table(folder / "data.parquet")
    events = pq.read_table(folder / "events.parquet")
    hours = pq.read_table(folder / "hours.parquet")
    quarantine = pq.read_table(folder / "quarantine.parquet")
    assert trips.schema.equals(mds.TRIPS_SCHEMA) and events.schema.equals(mds.EVENTS_SCHEMA)
    assert hours.schema.equals(mds.HOURS_SCHEMA) and quarantine.schema.equals(mds.QUARANTINE_SCHEMA)

    assert manifest["hours"] == HOURS and manifest["fetched_hours"] == {"trips": walked, "events": walked}
    assert manifest["mds_version"] == p.version and manifest["provider"] == name
    if until is None:
        assert manifest["complete"] and manifest["missing_hours"] == []
        assert manifest["watermark"] == "complete|2023-02-01T00..2023-02-28T23"
    else:
        assert not manifest["complete"] and manifest["missing_hours"][0] == "2023-02-11T00"
        assert manifest["watermark"].startswith(f"incomplete|missing={HOURS - walked}|")
    assert manifest["rows"] == len(want["trips"]) and manifest["tables"] == {
        "events": len(want["events"]),
        "hours": HOURS,
    }
    assert hours["complete"].to_pylist() == [True] * walked + [False] * (HOURS - walked)
    assert set(trips["mds_version"].to_pylist()) == {p.version} and set(trips["provider"].to_pylist()) == {name}

    # Trips: exactly the valid records, once each, with their values.
    by_id = {t["trip_id"]: t for t in want["trips"]}
    rows = trips.to_pylist()
    assert [r["trip_id"] for r in rows] == [
        t["trip_id"] for t in sorted(want["trips"], key=lambda t: (t["end_time"], t["trip_id"]))
    ]
    for row in rows:
        record = by_id[row["trip_id"]]
        assert (ms(row["start_time"]), ms(row["end_time"])) == (record["start_time"], record["end_time"])
        if p.version == "2.0":
            assert (row["trip_duration"], row["trip_distance"]) == (record["duration"], record["distance"])
            assert (row["start_lon"], row["start_lat"]) == (
                record["start_location"]["lng"],
                record["start_location"]["lat"],
            )
            assert row["route"] is None and row["vehicle_type"] is None
        else:
            first, last = record["route"]["features"][0], record["route"]["features"][-1]
            assert (row["start_lon"], row["start_lat"]) == tuple(first["geometry"]["coordinates"])
            assert (row["end_lon"], row["end_lat"]) == tuple(last["geometry"]["coordinates"])
            assert row["propulsion_types"] == record["propulsion_types" if p.version == "1.2" else "propulsion_type"]
            assert json.loads(row["route"]) == record["route"]
        assert (row["council_district_start"] is not None) == inside_grid(row["start_lon"], row["start_lat"])
        assert (row["council_district_end"] is not None) == inside_grid(row["end_lon"], row["end_lat"])
        assert row["_block_month"] == MONTH and row["extras"] is None

    # Events: one row per record; 2.0 ids as published, 0.4 / 1.x ids derived; one battery scale.
    want_ids = {(r["event_id"] if p.version == "2.0" else mds.derived_event_id(name, r)): r for r in want["events"]}
    got = events.to_pylist()
    assert len(got) == len(want_ids) == len(want["events"]) and {r["event_id"] for r in got} == set(want_ids)
    for row in got:
        record = want_ids[row["event_id"]]
        if p.version == "2.0":
            assert row["battery_fraction"] == pytest.approx(record["battery_percent"] / 100)
            assert ms(row["event_time"]) == record["timestamp"] and not row["event_id_derived"]
        elif p.version == "1.2":  # the 1.x state model (issue 14 item 4: all of them were quarantined)
            assert row["battery_fraction"] == record["battery_pct"] and row["event_id_derived"]
            assert ms(row["event_time"]) == record["event_time"] and row["event_type"] is None
            assert (row["vehicle_state"], row["event_types"]) == (record["vehicle_state"], record["event_types"])
            assert row["trip_ids"] == ([record["trip_id"]] if "trip_id" in record else None)
            assert row["device_id"] == record["device_id"]
        else:
            assert row["battery_fraction"] == record["battery_pct"] and row["event_id_derived"]
            assert ms(row["event_time"]) == record["event_time"] and row["event_type"] == record["event_type"]
        assert (row["council_district"] is not None) == inside_grid(row["lon"], row["lat"])

    # Quarantine: exactly the schema-invalid records, with the error.
    assert sorted(quarantine["raw"].to_pylist()) == sorted(
        mds._canonical(r) for r in want["bad_trips"] + want["bad_events"]
    )
    assert all(reason.startswith("schema: ") for reason in quarantine["_reason"].to_pylist())
    assert manifest["quarantined"] == quarantine.num_rows == sum(manifest["quarantine_reasons"].values())

    # Requests: one per endpoint-hour and page (1 record a page where the version pages).
    data_requests = [e for e in provider_requests(server, name) if e["path"].startswith("/mds/")]
    statuses = [e["status"] for e in data_requests]
    assert (
        statuses.count(200)
        == manifest["pages"]
        == sum(hours["trips_pages"].to_pylist()) + sum(hours["events_pages"].to_pylist())
    )
    if p.version == "0.4":  # never pages
        assert manifest["pages"] == 2 * walked
    else:  # 1.2 pages both endpoints, 2.0 its events: two records a page
        paged = ("trips", "events") if p.version == "1.2" else ("events",)
        assert manifest["pages"] == sum(
            max(1, -(-len(server.mds.records(name, mds.hour_text(h))[k]) // 2)) if k in paged else 1
            for h in mds.month_hours(MONTH)[:walked]
            for k in ("trips", "events")
        )
        assert manifest["pages"] > 2 * walked  # links.next was followed
    if name == "bolt":
        assert statuses.count(429) == 2
    auth = [e for e in provider_requests(server, name) if e["path"].startswith("/mds-auth/")]
    assert len(auth) == manifest["token_requests"] == (1 if p.auth == "oauth2" else 0)

    if until is None:
        again = run_block("mds", MONTH, lake=lake, part=name)
        assert again["skipped"] and again["reason"].startswith("source unchanged")


def test_incomplete_hours_land_then_complete_only_what_was_missing(server, lake, tmp_path):
    configure(server, {"now": "2023-02-28T21:00:00Z", "late_hours": {"lyft": ["2023-02-10T05"]}, "page_size": 50})
    first = run_block("mds", MONTH, lake=lake, part="lyft")
    missing = ["2023-02-10T05", "2023-02-28T21", "2023-02-28T22", "2023-02-28T23"]
    assert not first["skipped"] and first["complete"] is False
    assert first["missing_hours"] == missing and first["missing"] == {"trips": missing, "events": missing}
    assert first["watermark"].startswith("incomplete|missing=4|")
    hours = pq.read_table(block_files(lake, "lyft") / "hours.parquet").to_pylist()
    late = {mds.hour_text(h["hour"]): h for h in hours if not h["complete"]}
    assert sorted(late) == missing and {(h["trips_status"], h["events_status"]) for h in late.values()} == {(404, 404)}
    trips_before = pq.read_table(block_files(lake, "lyft") / "data.parquet")

    # Still not there: the run asks only for the missing hours and keeps the landing as it was.
    before = len(provider_requests(server, "lyft"))
    still = run_block("mds", MONTH, lake=lake, part="lyft")
    asked = provider_requests(server, "lyft")[before:]
    assert [e["path"].rsplit("/", 1)[1] for e in asked if e["path"].startswith("/mds/")] == ["trips"] * 4 + [
        "historical"
    ] * 4
    assert still["skipped"] and "content unchanged" in still["reason"]
    manifest = json.loads((block_files(lake, "lyft") / "_manifest.json").read_text())
    assert manifest["complete"] is False and manifest["missing_hours"] == missing

    # The hours appear: only they are fetched, the rows already landed are kept, each key once.
    configure(server, {"now": NOW, "late_hours": []})
    before = len(provider_requests(server, "lyft"))
    done = run_block("mds", MONTH, lake=lake, part="lyft")
    asked = [e for e in provider_requests(server, "lyft")[before:] if e["path"].startswith("/mds/")]
    assert sorted(e["query"] for e in asked) == sorted(
        [f"end_time={h}" for h in missing] + [f"event_time={h}" for h in missing]
    )
    assert (
        done["complete"] is True and done["missing_hours"] == [] and done["fetched_hours"] == {"trips": 4, "events": 4}
    )
    assert done["merged_from_previous"] == trips_before.num_rows + first["tables"]["events"]
    want = expected(server, "lyft")
    trips = pq.read_table(block_files(lake, "lyft") / "data.parquet")
    assert sorted(trips["trip_id"].to_pylist()) == sorted(t["trip_id"] for t in want["trips"])
    assert done["rows"] == len(want["trips"]) and done["tables"]["events"] == len(want["events"])
    landed_at = {r["trip_id"]: r["_landed_at"] for r in trips.to_pylist()}
    assert {landed_at[t] for t in trips_before["trip_id"].to_pylist()} == {trips_before["_landed_at"][0].as_py()}

    # The same content as a block fetched in one go.
    one_go = run_block("mds", MONTH, lake=str(tmp_path / "other-lake"), part="lyft")
    assert one_go["complete"] and one_go["sha256"] == done["sha256"]

    # Complete: the next run is skipped without a request.
    before = len(provider_requests(server, "lyft"))
    skipped = run_block("mds", MONTH, lake=lake, part="lyft")
    assert skipped["skipped"] and skipped["reason"].startswith("source unchanged")
    assert len(provider_requests(server, "lyft")) == before


def test_an_hour_missing_on_one_endpoint_is_asked_again_there_only(server, lake, monkeypatch):
    set_clock(monkeypatch, "2023-02-02T00:00:00Z")  # one day walked
    configure(server, {"late_hours": {"bolt:events": ["2023-02-01T07"]}})
    first = run_block("mds", MONTH, lake=lake, part="bolt")
    assert first["missing"]["trips"][0] == "2023-02-02T00" and "2023-02-01T07" not in first["missing"]["trips"]
    assert first["missing"]["events"][0] == "2023-02-01T07"
    configure(server, {"late_hours": []})
    before = len(provider_requests(server, "bolt"))
    second = run_block("mds", MONTH, lake=lake, part="bolt")
    asked = provider_requests(server, "bolt")[before:]
    assert [(e["path"], e["query"]) for e in asked][0] == ("/mds/bolt/status_changes", "event_time=2023-02-01T07")
    assert all("2023-02-01" not in e["query"] or e["query"].startswith("event_time=2023-02-01T07") for e in asked)
    assert second["fetched_hours"] == {"trips": 0, "events": 1} and "2023-02-01T07" not in second["missing_hours"]
    want = expected(server, "bolt", until=datetime(2023, 2, 2, tzinfo=UTC))
    events = pq.read_table(block_files(lake, "bolt") / "events.parquet")
    assert sorted(events["event_id"].to_pylist()) == sorted(mds.derived_event_id("bolt", r) for r in want["events"])


def test_records_outside_the_month_are_quarantined(server, lake, monkeypatch):
    set_clock(monkeypatch, "2023-02-01T02:00:00Z")
    served = server.mds.records

    def shifted(provider, hour):
        records = served(provider, hour)
        if hour != "2023-02-01T01":
            return records
        trips = [dict(t) for t in records["trips"]]
        trips[0]["end_time"] -= 2 * 3_600_000  # 23:xx on 31 January
        return {**records, "trips": trips}

    monkeypatch.setattr(server.mds, "records", shifted)
    manifest = run_block("mds", MONTH, lake=lake, part="lyft")
    quarantine = pq.read_table(block_files(lake, "lyft") / "quarantine.parquet").to_pylist()
    assert [r["_reason"] for r in quarantine] == ["end_time outside the block's month"]
    assert manifest["quarantine_reasons"] == {"end_time outside the block's month": 1}


def test_hours_after_the_clients_clock_are_not_asked(server, lake, monkeypatch):
    set_clock(monkeypatch, "2023-02-01T22:30:00Z")
    manifest = run_block("mds", MONTH, lake=lake, part="lyft")
    assert manifest["fetched_hours"] == {"trips": 22, "events": 22} and not manifest["complete"]
    assert manifest["missing_hours"][0] == "2023-02-01T22" and len(manifest["missing_hours"]) == HOURS - 22
    hours = pq.read_table(block_files(lake, "lyft") / "hours.parquet").to_pylist()
    assert [h["trips_status"] for h in hours[21:23]] == [200, None]
    assert len([e for e in provider_requests(server, "lyft") if e["path"].startswith("/mds/")]) == manifest["pages"]
    with pytest.raises(NotPublished, match="has not started"):
        mds.probe(None, None, "2023-03", part="lyft")


def test_a_404_long_ago_counts_as_empty_with_empty_after_hours(server, lake, monkeypatch):
    conn = server.mds.connection("lyft")
    conn["extra"]["empty_after_hours"] = 24
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_MDS_LYFT", json.dumps(conn))
    set_clock(monkeypatch, "2023-02-05T00:00:00Z")
    configure(server, {"late_hours": ["2023-02-03T04", "2023-02-04T20"]})
    manifest = run_block("mds", MONTH, lake=lake, part="lyft")
    # 03T04 ended more than 24 h before the clock: empty; 04T20 did not: still missing.
    assert "2023-02-03T04" not in manifest["missing_hours"] and manifest["missing_hours"][0] == "2023-02-04T20"
    assert manifest["missing_hours"][1] == "2023-02-05T00"
    hours = {
        mds.hour_text(h["hour"]): h for h in pq.read_table(block_files(lake, "lyft") / "hours.parquet").to_pylist()
    }
    assert hours["2023-02-03T04"]["trips_status"] == 404 and hours["2023-02-03T04"]["complete"]


def test_malformed_records_are_quarantined_with_the_schema_error(server, lake, monkeypatch):
    until = set_clock(monkeypatch, "2023-02-02T00:00:00Z")
    requests.post(f"{server.url}/_replay/faults", json={"malformed_row": 2}, timeout=10).raise_for_status()
    manifest = run_block("mds", MONTH, lake=lake, part="voi")
    quarantine = pq.read_table(block_files(lake, "voi") / "quarantine.parquet").to_pylist()
    assert len(quarantine) == 4  # the first two pages (hours 00 and 01 of trips), two broken records each
    reasons = sorted(r["_reason"] for r in quarantine)
    assert reasons == ["schema: (record): 'trip_id' is a required property"] * 2 + [
        "schema: end_time: '2023-02-01T00:00:01Z' is not of type 'integer'",
        "schema: end_time: '2023-02-01T01:00:01Z' is not of type 'integer'",
    ]
    assert manifest["quarantine_reasons"] == {"schema: (record): required": 2, "schema: end_time: type": 2}
    first_trips = [server.mds.records("voi", h)["trips"][0]["trip_id"] for h in ("2023-02-01T00", "2023-02-01T01")]
    assert {r["endpoint"] for r in quarantine} == {"trips"}
    assert sorted(r["record_id"] or "" for r in quarantine) == sorted(["", ""] + first_trips)
    trips = pq.read_table(block_files(lake, "voi") / "data.parquet")
    assert sorted(trips["trip_id"].to_pylist()) == sorted(
        t["trip_id"] for t in expected(server, "voi", until=until)["trips"]
    )


def test_expired_tokens_are_refreshed_once_and_secrets_never_logged(server, lake, caplog, monkeypatch):
    """OAuth2 tokens that stop working mid-block (after 300 requests each): one 401, one new
    token, the same request again, each time; bearer tokens and client secrets, and every token
    issued, appear in no log line (urllib3 included, at DEBUG), manifest or error."""
    set_clock(monkeypatch, "2023-02-08T00:00:00Z")  # a week of hours: enough requests for several expiries
    configure(server, {"token_max_uses": 60})
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            captured.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("urllib3", "urllib3.connectionpool", "civic_pipelines", "requests")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            voi = run_block("mds", MONTH, lake=lake, part="voi")
            bolt = run_block("mds", MONTH, lake=lake, part="bolt")
            failures = []
            dott = server.mds.connection("dott")
            dott["password"] = "wrong-dott-secret-" + "x" * 8
            monkeypatch.setenv("AIRFLOW_CONN_CIVIC_MDS_DOTT", json.dumps(dott))
            lyft = server.mds.connection("lyft")
            lyft["password"] = "not-the-lyft-token-123"
            monkeypatch.setenv("AIRFLOW_CONN_CIVIC_MDS_LYFT", json.dumps(lyft))
            for name in ("dott", "lyft"):
                with pytest.raises(mds.MdsAuthError) as error:
                    run_block("mds", MONTH, lake=lake, part=name)
                failures.append(str(error.value))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

    assert voi["fetched_hours"] == {"trips": 7 * 24, "events": 7 * 24} and voi["unauthorized_retries"] >= 3
    assert voi["token_requests"] == voi["unauthorized_retries"] + 1  # each expiry: one refresh
    entries = provider_requests(server, "voi")
    assert [e["status"] for e in entries if e["path"].startswith("/mds/")].count(401) == voi["unauthorized_retries"]
    assert "401 unauthorised" in failures[1] and "token endpoint" in failures[0]

    secrets = [p.client_secret for p in server.mds.providers.values()] + [
        p.token for p in server.mds.providers.values()
    ]
    secrets += server.mds.issued_tokens() + ["wrong-dott-secret-xxxxxxxx", "not-the-lyft-token-123"]
    assert len(server.mds.issued_tokens()) == voi["token_requests"]
    lines = [record.getMessage() for record in captured] + [record.getMessage() for record in caplog.records]
    assert any("urllib3" in record.name for record in captured)  # the HTTP layer was logging
    assert len(lines) > 100
    texts = lines + failures + [json.dumps(voi), json.dumps(bolt)]
    for path in Path(lake).rglob("_manifest.json"):
        texts.append(path.read_text())
    for secret in secrets:
        leaked = [text[:200] for text in texts if secret in text]
        assert not leaked, f"a secret appears in {leaked}"


def test_token_refreshed_before_expiry_without_a_401(server, monkeypatch):
    configure(server, {"token_ttl_seconds": 120})
    clock = [1000.0]
    monkeypatch.setattr(mds.client.time, "monotonic", lambda: clock[0])
    provider = mds.provider_config("voi")
    with make_session() as session:
        client = mds.Client(session, provider)
        status, _ = client.get_page(provider.url("trips"), {"end_time": "2023-02-01T00"})
        first = client.auth.token()
        clock[0] += 100  # inside the lifetime less the margin (120 - 12)
        assert client.auth.token() == first
        clock[0] += 10  # past it: a new token before the server refuses the old one
        status, _ = client.get_page(provider.url("trips"), {"end_time": "2023-02-01T01"})
    assert status == 200 and client.counters["token_requests"] == 2 and client.counters["unauthorized_retries"] == 0
    # The cache is per process: another block's client reuses the valid token.
    with make_session() as session:
        again = mds.Client(session, provider)
        assert again.auth.token() == server.mds.issued_tokens()[-1] and again.counters["token_requests"] == 0


def test_the_wrong_version_fails_loudly_instead_of_waiting_for_hours(server, lake, monkeypatch):
    conn = server.mds.connection("bolt")
    conn["extra"]["mds_version"] = "2.0"
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_MDS_BOLT", json.dumps(conn))
    with pytest.raises(Exception, match="406 .* does not serve MDS 2.0"):
        run_block("mds", MONTH, lake=lake, part="bolt")
    assert not block_files(lake, "bolt").exists()
