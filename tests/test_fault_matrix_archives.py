"""The fault matrix for the two archive sources: Street Manager (DfT monthly zips of JSON events,
streamed by ``stream_block``) and SRWR (Scotland's zipped headerless CSV behind a pre-signed URL).

Every row runs a real block in-process (``run_block``) against the replay server with one fault
switched on, asserts the outcome, then runs the block again without the fault and checks that the
lake holds exactly the source's rows (count and key set), no duplicates and nothing half-written
(``fault_checks``). Faults that fail the block start from a landed month and republish it (a late
edit) before the faulted run, so the test shows both that the old landing survives the failure
untouched and that the follow-up run replaces it whole.

Street Manager's archive host and SRWR's export API are anonymous (contract: "auth / registration:
none"; SRWR "no auth documented"): there is no token to expire. SRWR's one credential-like thing is
the pre-signed URL, whose expiry is covered; for Street Manager an unexpected 401 is covered.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import requests
from fault_checks import assert_exactly, assert_no_partial, landed_keys

from civic_pipelines.extract import run_block
from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.http import SourceHTTPError
from civic_pipelines.replay.street_manager import archive_events
from civic_pipelines.sources import srwr as srwr_source
from civic_pipelines.sources import street_manager as sm
from civic_pipelines.sources.base import EmptyAnswerError, SchemaDriftError

MONTH = "2024-03"
PART = "permit"
EVENTS = 200
SRWR_TODAY = "2026-11-23"
SRWR_MONTH = "2023-03"  # read from the 2023 year file
SRWR_ACTIVITIES = 40
SRWR_TABLES = {"007": "phase", "008": "undertaker_phase", "010": "site", "099": "district"}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server(module_replay):
    """One replay server for the module (starting one costs about 1.5 s); each test resets it."""
    return module_replay


def _connection(server, extra: dict | None = None) -> str:
    host, port = server.url.split("://", 1)[1].split(":")
    return json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http", "extra": extra or {}})


def post(server, what: str, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/{what}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def street(server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_STREET_MANAGER", _connection(server))
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    post(server, "reset", {"data": True})
    post(server, "config", {"street_manager": {"latest_month": "2024-06", "events_per_month": {PART: EVENTS}}})
    return server


@pytest.fixture
def scot(server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SRWR", _connection(server, {"today": SRWR_TODAY}))
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    post(server, "reset", {"data": True})
    post(server, "config", {"srwr": {"today": SRWR_TODAY, "activities_per_month": SRWR_ACTIVITIES}})
    return server


def arm_after_probe(monkeypatch, module, server, config: dict | None = None, **faults) -> None:
    """Switch ``faults`` on (and post ``config``) once the block's probe is done, so they hit the
    download itself."""
    real = module.probe

    @functools.wraps(real)
    def probe(*args, **kwargs):
        found = real(*args, **kwargs)
        server.faults.set(**faults)
        if config:
            post(server, "config", config)
        return found

    monkeypatch.setattr(module, "probe", probe)


def timeline(monkeypatch, server) -> list[dict]:
    """Every data request's arrival time (monotonic), method, path, range and status."""
    seen: list[dict] = []
    real = server.dispatch

    def dispatch(request):
        if request.path.startswith("/_replay/"):
            return real(request)
        entry = {"at": time.monotonic(), "method": request.method, "path": request.path,
                 "range": request.headers.get("range")}
        seen.append(entry)
        response = real(request)
        entry["status"] = response.status
        return response

    monkeypatch.setattr(server, "dispatch", dispatch)
    return seen


def settle(entries: list[dict], limit: float = 5) -> None:
    """Wait until every request seen has been answered: a stalled one whose client gave up still
    runs its handler later, and must not take a fault switch meant for the next test."""
    deadline = time.monotonic() + limit
    while any("status" not in e for e in entries) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all("status" in e for e in entries), "a stalled request never finished"


def gap_after(entries: list[dict], status: int) -> float:
    """Seconds from the first answer with ``status`` to the next request for the same path."""
    for i, entry in enumerate(entries):
        if entry["status"] == status:
            later = [e for e in entries[i + 1:] if e["path"] == entry["path"] and e["method"] == entry["method"]]
            return later[0]["at"] - entry["at"]
    raise AssertionError(f"no {status} in {entries}")


def folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- Street Manager


def sm_folder(lake: str) -> Path:
    return Path(lake) / "street_manager" / PART / f"month={MONTH}"


def sm_keys(server) -> list[int]:
    """The event references the published archive carries (what the block must hold)."""
    return [e["event_reference"] for e in archive_events(server.street_manager.spec(PART, MONTH))]


def sm_run(lake: str, **kwargs) -> dict:
    return run_block("street_manager", MONTH, lake=lake, part=PART, **kwargs)


def sm_exact(lake: str, server) -> int:
    return assert_exactly(lake, "street_manager", MONTH, sm_keys(server), part=PART)


def sm_table(lake: str, name: str = "data.parquet"):
    return pq.read_table(sm_folder(lake) / name)


def sm_fails_and_keeps(street, lake, error, match: str, **faults) -> tuple[dict, str]:
    """Land the month, republish it (a late edit: 5 more events), run with ``faults`` (which must
    raise), check the old landing is byte for byte what it was, then run without the fault:
    exactly the republished events. Returns the first manifest and the error's text."""
    first = sm_run(lake)
    assert first["rows"] == EVENTS
    before = folder_bytes(sm_folder(lake))
    post(street, "config", {"street_manager": {"late_edit": {f"{PART}/{MONTH}": 1}}})
    post(street, "faults", faults)
    with pytest.raises(error, match=match) as raised:
        sm_run(lake)
    assert folder_bytes(sm_folder(lake)) == before, "the failed run touched the landed block"
    assert_no_partial(lake, "street_manager", MONTH, PART)
    assert landed_keys(lake, "street_manager", MONTH, PART) == sorted(e for e in first_keys(street))
    again = sm_run(lake)
    assert not again["skipped"] and again["rows"] == EVENTS + 5
    assert sm_exact(lake, street) == EVENTS + 5
    return first, str(raised.value)


def first_keys(server) -> list[int]:
    """The references of the month as first published (revision 0)."""
    from dataclasses import replace

    return [e["event_reference"] for e in archive_events(replace(server.street_manager.spec(PART, MONTH), revision=0))]


# -- SRWR


def srwr_folder(lake: str, month: str = SRWR_MONTH) -> Path:
    return Path(lake) / "srwr" / f"month={month}"


def srwr_run(lake: str, month: str = SRWR_MONTH, **kwargs) -> dict:
    return run_block("srwr", month, lake=lake, **kwargs)


def srwr_exact(lake: str, server, month: str = SRWR_MONTH, identifier: str | None = None) -> int:
    """Exactly the month's activities in data.parquet, and exactly their records in every other table
    (``identifier``: the file the block read; by default the one its manifest names)."""
    if identifier is None:
        identifier = read_manifest(BlockLocation(lake=lake, source="srwr", month=month))["identifier"]
    want = server.srwr.expected_month(month, identifier)
    count = assert_exactly(lake, "srwr", month, [fields[2] for fields in want["001"]])
    for record_type, name in SRWR_TABLES.items():
        table = pq.read_table(srwr_folder(lake, month) / f"{name}.parquet")
        assert sorted(table["raw_fields"].to_pylist()) == sorted(want.get(record_type, [])), name
    unknown = [fields for record_type, rows in want.items() if record_type not in (*SRWR_TABLES, "001")
               for fields in rows]
    table = pq.read_table(srwr_folder(lake, month) / "unknown_records.parquet")
    assert sorted(table["raw_fields"].to_pylist()) == sorted(unknown)
    return count


def srwr_fails_and_keeps(scot, lake, error, match: str, month: str = SRWR_MONTH, **faults) -> str:
    """As ``sm_fails_and_keeps``: land, republish (late edits), fail with ``faults``, old landing
    intact, then the follow-up lands exactly the republished month."""
    first = srwr_run(lake, month)
    assert first["rows"] == len(scot.srwr.expected_month(month)["001"])
    before = folder_bytes(srwr_folder(lake, month))
    post(scot, "config", {"srwr": {"late_edits": {"month": month, "n": 3}}})
    post(scot, "faults", faults)
    with pytest.raises(error, match=match) as raised:
        srwr_run(lake, month)
    assert folder_bytes(srwr_folder(lake, month)) == before, "the failed run touched the landed block"
    assert_no_partial(lake, "srwr", month)
    again = srwr_run(lake, month)
    assert not again["skipped"] and again["watermark"] != first["watermark"]
    srwr_exact(lake, scot, month)
    return str(raised.value)


def step2(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["path"].startswith("/srwr-exports/")]


# ================================================================ Street Manager


def test_street_manager_429_retry_after_is_honoured(street, lake, monkeypatch, reliability):
    reliability.row(fault="429 with Retry-After", source="street_manager",
                    expected="the archive GET waits the Retry-After (1 s) and retries once; every event lands once")
    seen = timeline(monkeypatch, street)
    arm_after_probe(monkeypatch, sm, street, status_429=1, retry_after=1)
    manifest = sm_run(lake)
    waited = gap_after(seen, 429)
    assert 0.95 <= waited < 3, waited
    gets = [e["status"] for e in seen if e["method"] == "GET"]
    assert gets == [429, 200]
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    assert sm_run(lake)["skipped"] and sm_exact(lake, street) == EVENTS  # follow-up: unchanged, still exact
    reliability.observed(f"waited {waited:.2f} s (Retry-After 1); GETs {gets}; {EVENTS} rows, key set equal, "
                         "0 duplicates; follow-up skipped as unchanged")


def test_street_manager_5xx_bursts_are_retried(street, lake, monkeypatch, reliability):
    reliability.row(fault="bursts of 500/502/503", source="street_manager",
                    expected="the HEAD and the archive GET are retried with backoff through the bursts; every event "
                             "lands once")
    seen = timeline(monkeypatch, street)
    post(street, "faults", {"status_503": 2})  # the probe's HEAD
    arm_after_probe(monkeypatch, sm, street, status_500=2, status_502=2)  # the download
    manifest = sm_run(lake)
    heads = [e["status"] for e in seen if e["method"] == "HEAD"]
    gets = [e["status"] for e in seen if e["method"] == "GET"]
    assert heads == [503, 503, 200] and gets == [500, 500, 502, 502, 200]
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    assert sm_run(lake)["skipped"] and sm_exact(lake, street) == EVENTS
    reliability.observed(f"HEAD {heads}, GET {gets}; {EVENTS} rows, key set equal, 0 duplicates")


def test_street_manager_a_stalled_answer_times_out_and_is_retried(street, lake, monkeypatch, reliability):
    reliability.row(fault="timeout (stalled answer)", source="street_manager",
                    expected="the archive GET gives up after the read timeout (1 s), before the 2.5 s stall ends, "
                             "and retries; every event lands once")
    monkeypatch.setenv("CIVIC_HTTP_READ_TIMEOUT", "1")
    seen = timeline(monkeypatch, street)
    arm_after_probe(monkeypatch, sm, street, delay=1, delay_seconds=2.5)
    started = time.monotonic()
    manifest = sm_run(lake)
    took = time.monotonic() - started
    gets = [e for e in seen if e["method"] == "GET"]
    gave_up = gets[1]["at"] - gets[0]["at"]
    assert len(gets) == 2 and 0.95 <= gave_up < 2.4, gave_up
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    settle(seen)
    reliability.observed(f"retried after {gave_up:.2f} s (stall 2.5 s); block {took:.2f} s; {EVENTS} rows, "
                         "key set equal, 0 duplicates")


def test_street_manager_a_reset_mid_archive_is_resumed(street, lake, monkeypatch, reliability):
    reliability.row(fault="connection reset mid-archive", source="street_manager",
                    expected="the download resumes with Range/If-Range from the last byte received (a plain GET "
                             "when the reset came before any byte was read); every event lands once")
    post(street, "config", {"street_manager": {"events_per_month": {PART: 3000}}})  # ~2.5 MB: cut mid-stream
    seen = timeline(monkeypatch, street)
    post(street, "faults", {"reset_mid_page": 1})
    manifest = sm_run(lake)
    gets = [(e["status"], e["range"]) for e in seen if e["method"] == "GET"]
    assert manifest["download_resumes"] == 1 and len(gets) == 2 and gets[0] == (200, None)
    assert gets[1] == (200, None) or (gets[1][0] == 206 and gets[1][1].startswith("bytes="))
    assert street.faults["reset_mid_page"] == 0 and street.faults.fired["reset_mid_page"] == 1
    assert manifest["rows"] == sm_exact(lake, street) == 3000
    assert manifest["archive_bytes"] == manifest["archive_size"]
    reliability.observed(f"1 reset, 1 resume ({gets[1][0]} {gets[1][1] or 'whole archive'}); 3000 rows, key set "
                         "equal, 0 duplicates")


def test_street_manager_a_truncated_archive_fails_and_keeps_the_landing(street, lake, reliability):
    reliability.row(fault="truncated archive", source="street_manager",
                    expected="the block fails (ArchiveTruncated: no central directory after the last member), lands "
                             "nothing and the previous landing stays byte for byte; the follow-up lands the month whole")
    _, error = sm_fails_and_keeps(street, lake, sm.ArchiveTruncated, "truncated", truncate_archive=1)
    reliability.observed(f"failed: {error[:90]}...; previous {EVENTS} rows intact; follow-up {EVENTS + 5} rows, "
                         "key set equal")


@pytest.mark.parametrize("mode, match", [("member", "damaged"), ("between", "neither a member nor the central")])
def test_street_manager_a_corrupt_archive_fails_and_keeps_the_landing(street, lake, reliability, mode, match):
    what = {"member": "bad bytes inside a member (CRC-32 / inflate fails)",
            "between": "garbage bytes between members"}[mode]
    reliability.row(fault=f"corrupt archive: {what}", source="street_manager",
                    expected="the block fails (ArchiveCorrupt), never landing the other members as a partial month; "
                             "the previous landing stays; the follow-up lands the month whole")
    post(street, "config", {"street_manager": {"fault_options": {"corrupt": mode}}})
    _, error = sm_fails_and_keeps(street, lake, sm.ArchiveCorrupt, match, corrupt_archive=1)
    reliability.observed(f"failed: {error[:100]}...; previous {EVENTS} rows intact; follow-up {EVENTS + 5} rows")


def test_street_manager_malformed_records_are_quarantined(street, lake, reliability):
    reliability.row(fault="malformed record", source="street_manager",
                    expected="members that are not JSON, lack event_reference (the key) or have an unreadable "
                             "event_time are quarantined with the reason; every good event lands; the fixed "
                             "republication re-lands without the stale quarantine")
    post(street, "faults", {"malformed_row": 1})
    manifest = sm_run(lake)
    quarantine = sm_table(lake, "quarantine.parquet")
    reasons = sorted(r.split(":")[0] for r in quarantine["_reason"].to_pylist())
    assert reasons == ["member is not valid JSON", "missing event_reference", "unparseable event_time"]
    assert manifest["quarantined"] == 3 and manifest["events"] == EVENTS + 3
    assert all(quarantine["raw"].to_pylist()) and all(m.endswith(".json") for m in quarantine["member"].to_pylist())
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    again = sm_run(lake)  # the archive without the bad members (another ETag)
    assert not again["skipped"] and again["quarantined"] == 0
    assert not (sm_folder(lake) / "quarantine.parquet").exists()
    assert sm_exact(lake, street) == EVENTS
    reliability.observed(f"{EVENTS} rows landed, 3 quarantined ({', '.join(reasons)}); follow-up {EVENTS} rows, "
                         "0 quarantined, key set equal")


def test_street_manager_an_empty_archive_lands_an_empty_month(street, lake, reliability):
    reliability.row(fault="empty month (archive with no events), first landing", source="street_manager",
                    expected="lands an empty block with the part's schema and events = 0 in the manifest; the "
                             "republished month then lands whole")
    post(street, "faults", {"empty_month": 1})
    manifest = sm_run(lake)
    table = sm_table(lake)
    assert manifest["rows"] == manifest["events"] == table.num_rows == 0 and table.schema == sm.data_schema(PART)
    again = sm_run(lake)
    assert not again["skipped"] and sm_exact(lake, street) == EVENTS
    reliability.observed(f"0 rows, schema kept; follow-up {EVENTS} rows, key set equal")


def test_street_manager_an_empty_archive_does_not_wipe_a_landed_month(street, lake, reliability):
    reliability.row(fault="empty month replacing a landed month", source="street_manager",
                    expected="refused (EmptyAnswerError): the landed rows stay; a forced run accepts the empty month; "
                             "the follow-up lands the month whole")
    sm_run(lake)
    before = folder_bytes(sm_folder(lake))
    post(street, "faults", {"empty_month": 1})
    with pytest.raises(EmptyAnswerError, match=f"holds 0 events.*{EVENTS} rows were landed.*force"):
        sm_run(lake)
    assert folder_bytes(sm_folder(lake)) == before
    assert sm_run(lake)["skipped"] and sm_exact(lake, street) == EVENTS  # the month as published: unchanged
    post(street, "faults", {"empty_month": 1})
    forced = sm_run(lake, force=True)
    assert forced["rows"] == 0 and sm_table(lake).num_rows == 0
    assert sm_run(lake)["rows"] == sm_exact(lake, street) == EVENTS
    reliability.observed(f"refused, {EVENTS} rows kept; forced: 0 rows; follow-up {EVENTS} rows, key set equal")


def test_street_manager_an_archive_not_published_is_skipped(street, lake, reliability):
    reliability.row(fault="empty month: archive not published (404)", source="street_manager",
                    expected="skipped with the reason (not published yet), nothing written; a landed month stays; "
                             "once published it lands whole")
    post(street, "config", {"street_manager": {"latest_month": "2024-02"}})
    skipped = sm_run(lake)
    assert skipped["skipped"] and "not published yet" in skipped["reason"] and "404" in skipped["reason"]
    assert not sm_folder(lake).exists()
    post(street, "config", {"street_manager": {"latest_month": "2024-06"}})
    assert sm_run(lake)["rows"] == EVENTS
    before = folder_bytes(sm_folder(lake))
    post(street, "config", {"street_manager": {"latest_month": "2024-02"}})  # withdrawn again
    assert sm_run(lake)["skipped"] and folder_bytes(sm_folder(lake)) == before
    assert sm_exact(lake, street) == EVENTS
    reliability.observed(f"skipped: {skipped['reason'][:60]}...; later {EVENTS} rows; a withdrawn archive leaves "
                         "them untouched")


def test_street_manager_a_vanished_key_field_fails_the_block(street, lake, reliability):
    reliability.row(fault="field disappears (the reference number)", source="street_manager",
                    expected="the block fails (SchemaDriftError naming permit_reference_number), never landing "
                             "null keys; the previous landing stays; the follow-up lands the month whole")
    _, error = sm_fails_and_keeps(street, lake, SchemaDriftError, "permit_reference_number", drop_field=1)
    reliability.observed(f"failed: {error[:90]}...; previous {EVENTS} rows intact; follow-up {EVENTS + 5} rows")


def test_street_manager_a_vanished_optional_field_is_reported(street, lake, reliability, caplog):
    reliability.row(fault="field disappears (a non-key field)", source="street_manager",
                    expected="every event lands; the column is null and the drift (manifest missing_fields, a "
                             "log warning) names it; the follow-up restores the values")
    post(street, "config", {"street_manager": {"fault_options": {"drop_field": "street_name"}}})
    post(street, "faults", {"drop_field": 1})
    with caplog.at_level("WARNING", logger=sm.log.name):
        manifest = sm_run(lake)
    assert "street_name" in manifest["drift"]["missing_fields"]
    assert any("street_name" in record.getMessage() for record in caplog.records)
    assert sm_table(lake)["street_name"].null_count == EVENTS
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    again = sm_run(lake)
    assert not again["skipped"] and sm_table(lake)["street_name"].null_count == 0
    assert "street_name" not in again["drift"]["missing_fields"] and sm_exact(lake, street) == EVENTS
    reliability.observed(f"{EVENTS} rows, street_name null in all and listed in drift.missing_fields (warned); "
                         "follow-up: 0 nulls, key set equal")


def test_street_manager_a_new_field_is_kept_and_reported(street, lake, reliability):
    reliability.row(fault="new field", source="street_manager",
                    expected="every event lands; the unknown field is kept in extras and counted in drift.new_fields")
    post(street, "faults", {"new_field": 1})
    manifest = sm_run(lake)
    assert manifest["drift"]["new_fields"] == {"object_data.replay_new_field": EVENTS}
    extras = [orjson.loads(v) for v in sm_table(lake)["extras"].to_pylist()]
    assert all(e["object_data"]["replay_new_field"] == "a field the contract lacks" for e in extras)
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    assert not sm_run(lake)["skipped"] and sm_table(lake)["extras"].null_count == EVENTS
    assert sm_exact(lake, street) == EVENTS
    reliability.observed(f"{EVENTS} rows, new field in extras for all {EVENTS}; follow-up exact")


def test_street_manager_a_changed_type_is_converted_and_reported(street, lake, reliability):
    reliability.row(fault="changed type (usrn as a JSON number)", source="street_manager",
                    expected="every event lands with usrn as the same digits (text, the contract's type); the "
                             "change is counted in drift.type_changes")
    post(street, "faults", {"retype_field": 1})
    manifest = sm_run(lake)
    assert manifest["drift"]["type_changes"] == {"object_data.usrn: number": EVENTS}
    faulted = sm_table(lake).select(["event_reference", "usrn"]).to_pylist()
    assert manifest["rows"] == sm_exact(lake, street) == EVENTS
    again = sm_run(lake)
    assert again["skipped"] and "content unchanged" in again["reason"]  # the same rows as published normally
    want = {e["event_reference"]: e["object_data"]["usrn"] for e in archive_events(street.street_manager.spec(PART, MONTH))}
    assert {r["event_reference"]: r["usrn"] for r in faulted} == want
    reliability.observed(f"{EVENTS} rows, usrn identical to the normal archive's; type_changes "
                         f"{manifest['drift']['type_changes']}; follow-up: content unchanged")


def test_street_manager_an_unexpected_401_fails_clearly(street, lake, monkeypatch, reliability):
    reliability.row(fault="401 (the archive host is anonymous: no token to expire)", source="street_manager",
                    expected="fails at the HEAD with HTTP 401, without retrying (no credential could help), and "
                             "lands nothing; the previous landing stays")
    sm_run(lake)
    before = folder_bytes(sm_folder(lake))
    seen = timeline(monkeypatch, street)
    post(street, "faults", {"status_401": 1})
    with pytest.raises(SourceHTTPError, match="HTTP 401"):
        sm_run(lake)
    assert [(e["method"], e["status"]) for e in seen] == [("HEAD", 401)]
    assert folder_bytes(sm_folder(lake)) == before
    assert sm_run(lake)["skipped"] and sm_exact(lake, street) == EVENTS
    reliability.observed(f"one HEAD answered 401, no retry, nothing written; {EVENTS} rows intact")


# ================================================================ SRWR


def test_srwr_429_retry_after_is_honoured(scot, lake, monkeypatch, reliability):
    reliability.row(fault="429 with Retry-After", source="srwr",
                    expected="the download (step 2) waits the Retry-After (1 s) and retries; every activity and "
                             "record lands once")
    seen = timeline(monkeypatch, scot)
    arm_after_probe(monkeypatch, srwr_source, scot, status_429=1, retry_after=1)
    manifest = srwr_run(lake)
    waited = gap_after(seen, 429)
    assert 0.95 <= waited < 3, waited
    statuses = [e["status"] for e in step2(seen)]
    assert statuses == [206, 429, 200]  # the probe's byte, the throttled download, its retry
    rows = srwr_exact(lake, scot)
    assert manifest["rows"] == rows and srwr_run(lake)["skipped"]
    reliability.observed(f"waited {waited:.2f} s (Retry-After 1); step 2 {statuses}; {rows} activities and every "
                         "table exact")


def test_srwr_5xx_bursts_are_retried(scot, lake, monkeypatch, reliability):
    reliability.row(fault="bursts of 500/502/503", source="srwr",
                    expected="the probe's and the download's requests are retried with backoff through the bursts; "
                             "every record lands once")
    seen = timeline(monkeypatch, scot)
    post(scot, "faults", {"status_503": 2})
    arm_after_probe(monkeypatch, srwr_source, scot, status_500=2, status_502=2)
    srwr_run(lake)
    statuses = [e["status"] for e in step2(seen)]
    assert statuses == [503, 503, 206, 500, 500, 502, 502, 200]
    rows = srwr_exact(lake, scot)
    reliability.observed(f"step 2 {statuses}; {rows} activities and every table exact")


def test_srwr_a_stalled_answer_times_out_and_is_retried(scot, lake, monkeypatch, reliability):
    reliability.row(fault="timeout (stalled answer)", source="srwr",
                    expected="the download gives up after the read timeout (1 s), before the 2.5 s stall ends, and "
                             "retries; every record lands once")
    monkeypatch.setenv("CIVIC_HTTP_READ_TIMEOUT", "1")
    seen = timeline(monkeypatch, scot)
    arm_after_probe(monkeypatch, srwr_source, scot, delay=1, delay_seconds=2.5)
    srwr_run(lake)
    downloads = [e for e in step2(seen) if not e["range"]]
    gave_up = downloads[1]["at"] - downloads[0]["at"]
    assert len(downloads) == 2 and 0.95 <= gave_up < 2.4, gave_up
    rows = srwr_exact(lake, scot)
    settle(seen)
    reliability.observed(f"retried after {gave_up:.2f} s (stall 2.5 s); {rows} activities and every table exact")


def test_srwr_a_reset_mid_download_is_retried(scot, lake, monkeypatch, reliability):
    reliability.row(fault="connection reset mid-archive", source="srwr",
                    expected="the cut download is fetched again with a fresh pre-signed URL; every record lands once")
    seen = timeline(monkeypatch, scot)
    arm_after_probe(monkeypatch, srwr_source, scot, reset_mid_page=1)
    manifest = srwr_run(lake)
    assert manifest["url_attempts"] == 2
    rows = srwr_exact(lake, scot)
    reliability.observed(f"download attempts {manifest['url_attempts']} (step 2 {[e['status'] for e in step2(seen)]}); "
                         f"{rows} activities and every table exact")


@pytest.mark.parametrize("fault, name", [("truncate_archive", "truncated archive"), ("corrupt_archive", "corrupt archive")])
def test_srwr_a_damaged_file_is_fetched_again_once(scot, lake, monkeypatch, reliability, fault, name):
    reliability.row(fault=f"{name} (one download)", source="srwr",
                    expected="the damaged zip is detected (cut short / CRC-32 or inflate fails), nothing is landed "
                             "from it, and a fresh URL's download lands every record once")
    seen = timeline(monkeypatch, scot)
    arm_after_probe(monkeypatch, srwr_source, scot, **{fault: 1})
    manifest = srwr_run(lake)
    assert manifest["url_attempts"] == 2
    rows = srwr_exact(lake, scot)
    reliability.observed(f"download attempts 2 (step 2 {[e['status'] for e in step2(seen)]}); {rows} activities "
                         "and every table exact")


@pytest.mark.parametrize("fault, name", [("truncate_archive", "truncated archive"), ("corrupt_archive", "corrupt archive")])
def test_srwr_a_file_damaged_at_the_source_fails_and_keeps_the_landing(scot, lake, reliability, fault, name):
    reliability.row(fault=f"{name} (every download)", source="srwr",
                    expected="after 4 pre-signed URLs the block fails with the damage named, lands nothing and the "
                             "previous landing stays byte for byte; the follow-up lands the month whole")
    error = srwr_fails_and_keeps(scot, lake, srwr_source.SrwrError, "no usable download after 4", **{fault: 4})
    assert ("cut short" if fault == "truncate_archive" else "CRC") in error or "inflate" in error
    reliability.observed(f"failed: {error[:110]}...; previous landing intact; follow-up exact")


def test_srwr_malformed_lines_are_quarantined(scot, lake, reliability):
    reliability.row(fault="malformed record", source="srwr",
                    expected="a line with too few fields and one with an unparseable start date are quarantined "
                             "with the reason; the rest of the month lands, the activity too (its good lines date "
                             "it); the fixed file re-lands without the stale quarantine")
    month = "2023-01"  # the broken lines belong to the file's first activity
    post(scot, "faults", {"malformed_row": 1})
    manifest = srwr_run(lake, month)
    quarantine = pq.read_table(srwr_folder(lake, month) / "quarantine.parquet")
    assert quarantine.num_rows == manifest["quarantined"] == 2  # undated activities land (January)
    reasons = set(quarantine["_reason"].to_pylist())
    assert "record type 007 needs at least 13 fields, got 6" in reasons
    assert any(r.startswith("unparseable start_date/start_time 'not-a-date'") for r in reasons)
    rows = srwr_exact(lake, scot, month)
    again = srwr_run(lake, month)
    assert not again["skipped"] and again["quarantined"] == 0
    assert not (srwr_folder(lake, month) / "quarantine.parquet").exists()
    srwr_exact(lake, scot, month)
    reliability.observed(f"{rows} activities landed, 2 malformed lines quarantined; follow-up 0 quarantined, "
                         "every table exact")


@pytest.mark.parametrize("month, identifier", [("2026-03", "MAR"), ("2023-12", "2023")])
def test_srwr_activities_whose_works_start_after_the_file_land(scot, lake, reliability, month, identifier):
    """Issue 14 item 3: a third of a month file's activities start after the month; they were
    quarantined (``start outside the file's period``) and no later file lists them again."""
    reliability.row(fault=f"activities whose works start after the file's period ({identifier} file)", source="srwr",
                    expected="every activity the file lists lands: a month file's block is all of it, a year "
                             "file's last month takes those starting after the year (placement after_period); "
                             "nothing is quarantined for its start date; districts land in district_directory, "
                             "one row per district key")
    post(scot, "config", {"srwr": {"activities_per_month": 301, "late_start_share": 0.35, "undated_share": 0.0}})
    manifest = srwr_run(lake, month)
    want = scot.srwr.expected_month(month, identifier)
    listed = scot.srwr.activities(int(month[:4]), int(month[5:]))
    late = [a for a in listed if a["first_start"] and f"{a['first_start']:%Y-%m}" > month]
    assert late and manifest["quarantined"] == 0
    rows = srwr_exact(lake, scot, month, identifier)
    data = pq.read_table(srwr_folder(lake, month) / "data.parquet")
    after = [r for r in data.to_pylist() if r["placement"] == "after_period"]
    if identifier == "MAR":
        assert rows == len(listed) == 301 and len(after) == len(late)
    else:  # December of a year file: those of every month of the year that start in the next year
        assert {r["activity_id"] for r in after} >= {a["id"] for a in late if a["first_start"].year > 2023}
    directory = pq.read_table(srwr_folder(lake, month) / "district_directory.parquet")
    keys = sorted({f"{f[3]}-{f[4]}" for f in want["099"]})
    assert set(keys) <= set(directory["district_key"].to_pylist())
    assert directory.num_rows == len(set(directory["district_key"].to_pylist()))
    reliability.observed(f"{rows} activities landed ({len(after)} starting after the period), 0 quarantined "
                         f"(before: {len(after)} quarantined); {directory.num_rows} district keys in "
                         "district_directory")


def test_srwr_an_empty_export_lands_an_empty_month(scot, lake, reliability):
    reliability.row(fault="empty month (export with no lines), first landing", source="srwr",
                    expected="lands an empty block (every table, 0 rows; file_lines 0 in the manifest); the "
                             "republished file then lands the month whole")
    post(scot, "faults", {"empty_month": 1})
    manifest = srwr_run(lake)
    assert manifest["rows"] == manifest["file_lines"] == 0 and set(manifest["tables"].values()) == {0}
    again = srwr_run(lake)
    assert not again["skipped"]
    rows = srwr_exact(lake, scot)
    reliability.observed(f"0 rows in 6 tables; follow-up {rows} activities, every table exact")


def test_srwr_an_empty_export_does_not_wipe_a_landed_month(scot, lake, reliability):
    reliability.row(fault="empty month replacing a landed month", source="srwr",
                    expected="refused (EmptyAnswerError): the landed rows stay; a forced run accepts the empty month; "
                             "the follow-up lands the month whole")
    landed = srwr_run(lake)["rows"]
    before = folder_bytes(srwr_folder(lake))
    post(scot, "faults", {"empty_month": 1})  # the probe sees the empty file too: its watermark moved
    with pytest.raises(EmptyAnswerError, match=f"holds no activity for {SRWR_MONTH}.*{landed} rows were landed"):
        srwr_run(lake)
    assert folder_bytes(srwr_folder(lake)) == before
    post(scot, "faults", {"empty_month": 1})
    assert srwr_run(lake, force=True)["rows"] == 0
    assert srwr_run(lake)["rows"] == srwr_exact(lake, scot) == landed
    reliability.observed(f"refused, {landed} activities kept; forced: 0; follow-up {landed}, every table exact")


def test_srwr_a_file_not_published_is_skipped(scot, lake, reliability):
    reliability.row(fault="empty month: file not published (404)", source="srwr",
                    expected="skipped with the reason (404 from step 1), nothing written; a landed month stays")
    month = "2026-10"  # the OCT month file
    first = srwr_run(lake, month)
    before = folder_bytes(srwr_folder(lake, month))
    post(scot, "config", {"srwr": {"today": "2026-10-02"}})  # the file is not (or no longer) there
    skipped = srwr_run(lake, month)
    assert skipped["skipped"] and "404" in skipped["reason"] and "'OCT'" in skipped["reason"]
    assert folder_bytes(srwr_folder(lake, month)) == before
    post(scot, "config", {"srwr": {"today": SRWR_TODAY}})
    assert srwr_run(lake, month)["skipped"] and srwr_exact(lake, scot, month) == first["rows"]
    reliability.observed(f"skipped: {skipped['reason'][:70]}...; {first['rows']} activities intact")


@pytest.mark.parametrize("drop, outcome", [
    ({"record_type": "001", "position": 5}, "fails"),   # promoter id: later values move left, two go empty
    ({"record_type": "008", "position": 20}, "fails"),  # TM code: the footway flag moves into a code column
    ({"record_type": "099", "position": 5}, "quarantines"),  # the last field: too few fields
])
def test_srwr_a_vanished_column_never_lands_shifted_values(scot, lake, reliability, drop, outcome):
    where = f"{drop['record_type']} row[{drop['position']}]"
    reliability.row(fault=f"field disappears ({where})", source="srwr",
                    expected=("the block fails (SchemaDriftError: the layout changed), never landing shifted values "
                              "or silent nulls; the previous landing stays; the follow-up lands the month whole")
                    if outcome == "fails" else
                    ("every district line is quarantined (too few fields) with the reason, the rest lands; the "
                     "follow-up lands the month whole"))
    post(scot, "config", {"srwr": {"fault_options": {"drop_field": drop}}})
    if outcome == "fails":
        error = srwr_fails_and_keeps(scot, lake, SchemaDriftError, "record layout changed", drop_field=1)
        reliability.observed(f"failed: {error[:120]}...; previous landing intact; follow-up exact")
        return
    post(scot, "faults", {"drop_field": 1})
    manifest = srwr_run(lake)
    want = scot.srwr.expected_month(SRWR_MONTH)
    assert manifest["quarantined"] == len(want["099"]) and manifest["tables"]["district"] == 0
    assert manifest["quarantine_reasons"] == {"record type 099 needs at least 6 fields, got 5": len(want["099"])}
    assert landed_keys(lake, "srwr", SRWR_MONTH) == sorted(f[2] for f in want["001"])
    again = srwr_run(lake)
    assert not again["skipped"] and again["quarantined"] == 0
    rows = srwr_exact(lake, scot)
    reliability.observed(f"{manifest['quarantined']} district lines quarantined, {manifest['rows']} activities "
                         f"landed; follow-up {rows}, every table exact")


def test_srwr_a_new_trailing_field_is_kept(scot, lake, reliability):
    reliability.row(fault="new field", source="srwr",
                    expected="every record lands with its documented columns unchanged; the extra field stays in "
                             "raw_fields and the widths in file_field_counts show it")
    post(scot, "faults", {"new_field": 1})
    manifest = srwr_run(lake)
    phase = pq.read_table(srwr_folder(lake) / "phase.parquet").to_pylist()
    assert all(r["raw_fields"][-1] == "replay-new-field" for r in phase)
    assert manifest["file_field_counts"]["001"] == {"15": 12 * SRWR_ACTIVITIES}
    faulted = pq.read_table(srwr_folder(lake) / "data.parquet").drop(["raw_fields", "field_count", "_landed_at"])
    again = srwr_run(lake)
    assert not again["skipped"] and again["file_field_counts"]["001"] == {"14": 12 * SRWR_ACTIVITIES}
    rows = srwr_exact(lake, scot)
    assert pq.read_table(srwr_folder(lake) / "data.parquet").drop(["raw_fields", "field_count", "_landed_at"]).equals(faulted)
    reliability.observed(f"{manifest['rows']} activities, documented columns equal to the normal file's, "
                         f"001 width 15 vs 14; follow-up {rows}, every table exact")


def test_srwr_a_changed_date_format_reads_the_same(scot, lake, reliability):
    reliability.row(fault="changed type (008 dates DD/MM/YYYY, times HHMM)", source="srwr",
                    expected="every record lands; start_at/end_at equal the normal file's (the text is kept as "
                             "published); no month assignment changes")
    post(scot, "faults", {"retype_field": 1})
    manifest = srwr_run(lake)
    columns = ["activity_id", "phase_number", "start_at", "end_at"]
    faulted = pq.read_table(srwr_folder(lake) / "undertaker_phase.parquet")
    assert all("/" in d for d in faulted["start_date"].to_pylist())
    again = srwr_run(lake)
    assert not again["skipped"]
    rows = srwr_exact(lake, scot)
    normal = pq.read_table(srwr_folder(lake) / "undertaker_phase.parquet")
    assert faulted.select(columns).equals(normal.select(columns)) and manifest["rows"] == rows
    reliability.observed(f"{rows} activities, {normal.num_rows} undertaker phases with identical start/end; "
                         "follow-up every table exact")


def test_srwr_an_expired_presigned_url_is_replaced(scot, lake, monkeypatch, reliability):
    reliability.row(fault="expired token: an expired pre-signed URL (the API is anonymous)", source="srwr",
                    expected="the 403 AccessDenied (request has expired) makes the client ask step 1 for a fresh "
                             "URL; every record lands once")
    seen = timeline(monkeypatch, scot)
    arm_after_probe(monkeypatch, srwr_source, scot, config={"srwr": {"expire_next_urls": 1}})
    manifest = srwr_run(lake)
    statuses = [e["status"] for e in step2(seen)]
    assert statuses == [206, 403, 200] and manifest["url_attempts"] == 2
    rows = srwr_exact(lake, scot)
    reliability.observed(f"step 2 {statuses}; url_attempts 2; {rows} activities, every table exact")


def test_srwr_urls_that_keep_expiring_fail_and_keep_the_landing(scot, lake, monkeypatch, reliability):
    reliability.row(fault="expired pre-signed URL, every time", source="srwr",
                    expected="after 4 URLs the block fails naming 403 AccessDenied, lands nothing; the previous "
                             "landing stays; the follow-up lands the month whole")
    first = srwr_run(lake)
    before = folder_bytes(srwr_folder(lake))
    post(scot, "config", {"srwr": {"late_edits": {"month": SRWR_MONTH, "n": 3}}})
    arm_after_probe(monkeypatch, srwr_source, scot, config={"srwr": {"expire_next_urls": 4}})
    with pytest.raises(srwr_source.SrwrError, match="no usable download after 4 .*403 AccessDenied") as raised:
        srwr_run(lake)
    assert folder_bytes(srwr_folder(lake)) == before
    assert_no_partial(lake, "srwr", SRWR_MONTH)
    monkeypatch.undo()  # the probe as it is, the connection too: set it again
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SRWR", _connection(scot, {"today": SRWR_TODAY}))
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    again = srwr_run(lake)
    assert not again["skipped"] and again["watermark"] != first["watermark"]
    srwr_exact(lake, scot)
    reliability.observed(f"failed: {str(raised.value)[:100]}...; previous landing intact; follow-up exact")
