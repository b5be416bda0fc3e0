"""The fault matrix of the HTTP / paged sources: Socrata SODA (seattle_crime, nyc_311), ArcGIS REST
(minneapolis_311), CKAN yearly files (toronto_311) and the MDS provider APIs (mds).

Every test runs one block in-process (``run_block``) against the replay server with one fault
switched on, asserts what the run did (landed, retried, failed with which message), then runs the
block again with the fault gone and checks, with ``fault_checks``, that the lake holds exactly the
source's rows for the block (count and key set), no duplicate, nothing half-written where dbt or
the dashboard read. Each test publishes its row of ``docs/reliability.md`` through the
``reliability`` fixture, with what it measured.

Blocks are small (1,200 rows a month over pages of 500; 6,000 rows a year for Toronto; twelve
MDS hours), so each case takes a fraction of a second plus the waits the fault itself imposes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_checks import assert_no_partial, landed_keys
from http_faults import (  # noqa: F401 - case is the fixture the rows take
    FAKE_TOKEN,
    HTTP_SOURCES,
    MDS_CLOCK,
    SODA,
    _seattle,
    case,
    control,
    fails_keeping_the_landing,
    fired,
    follow_up,
    gap_after,
    set_connection,
    set_faults,
)

from civic_pipelines.extract import run_block
from civic_pipelines.http import SourceHTTPError
from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.sources import mds
from civic_pipelines.sources.base import SchemaDriftError

# ---------------------------------------------------------------- transient HTTP faults (every source)


@dataclass
class Wait:
    """A fault the client must wait out before asking again: how long, and which request it repeats."""

    name: str
    fault: str
    expected: str
    faults: dict
    fired: str
    at_least: float
    below: float
    repeated: Callable[[list[dict]], int]  # the index of the request that is asked again
    read_timeout: str | None = None

    def __str__(self) -> str:
        return self.name


def first_429(entries: list[dict]) -> int:
    return next(i for i, e in enumerate(entries) if e["status"] == 429)


WAITS = [
    Wait(
        "retry-after",
        "429 + Retry-After",
        "waits the Retry-After (1 s) before asking again, then lands every row once",
        {"status_429": 1, "retry_after": 1},
        "status_429",
        1.0,
        3.0,
        first_429,
    ),
    Wait(
        "fractional-retry-after",
        "429 + fractional Retry-After (0.5)",
        "waits 0.5 s (urllib3 alone refused the header and failed the request), then lands every row once",
        {"status_429": 1, "retry_after": 0.5},
        "status_429",
        0.5,
        1.5,
        first_429,
    ),
    Wait(
        "stall",
        "timeout (answer stalls)",
        "with a 1 s read timeout, a request whose answer stalls 2.5 s times out "
        "after ~1 s and is asked again; the block lands whole",
        {"delay": 1, "delay_seconds": 2.5},
        "delay",
        0.9,
        2.4,
        lambda entries: 0,
        read_timeout="1",
    ),
]


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
@pytest.mark.parametrize("wait", WAITS, ids=str)
def test_a_request_is_asked_again_after_the_wait(case, wait, reliability, monkeypatch):
    if wait.read_timeout:
        monkeypatch.setenv("CIVIC_HTTP_READ_TIMEOUT", wait.read_timeout)
    reliability.row(fault=wait.fault, source=case.source, expected=wait.expected)
    set_faults(case.server, **wait.faults)
    started = time.monotonic()
    manifest = case.run()
    took = time.monotonic() - started
    entries = case.data_log()
    waited = gap_after(entries, wait.repeated(entries))
    assert wait.at_least <= waited < wait.below, f"asked again after {waited:.2f} s ({wait.fault})"
    assert not manifest["skipped"] and fired(case.server)[wait.fired] == 1
    _, rows = follow_up(case)
    reliability.observed(
        f"waited {waited:.2f} s before the repeat (block {took:.2f} s); {rows:,} rows, key set equal, 0 duplicates"
    )


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_a_burst_of_500_502_503_is_retried(case, reliability):
    reliability.row(
        fault="burst of 500/502/503",
        source=case.source,
        expected="three 5xx answers in a row (503, 500, a proxy's 502 HTML page) are retried with "
        "backoff; the block lands whole",
    )
    set_faults(case.server, status_500=1, status_502=1, status_503=1)
    started = time.monotonic()
    manifest = case.run()
    took = time.monotonic() - started
    statuses = [e["status"] for e in case.data_log()]
    assert statuses[:4] == [503, 500, 502, 200]
    assert not manifest["skipped"]
    _, rows = follow_up(case)
    reliability.observed(f"answers {statuses[:4]}, block {took:.2f} s; {rows:,} rows, key set equal, 0 duplicates")


def test_a_burst_longer_than_the_retry_budget_fails_and_keeps_the_landing(
    replay, monkeypatch, lake, tmp_path, reliability
):
    monkeypatch.setenv("CIVIC_HTTP_BACKOFF", "0.01")  # the budget is the point, not the waits
    case = _seattle(replay, monkeypatch, lake, tmp_path)
    reliability.row(
        fault="503 burst beyond the retry budget",
        source=case.source,
        expected="after 6 retries the block fails naming the status; the previous landing stays "
        "readable and complete; the next run lands nothing new (unchanged source)",
    )
    first = case.run()
    set_faults(case.server, status_503=20)
    with pytest.raises(SourceHTTPError, match="503") as error:
        case.run(force=True)
    assert case.manifest()["sha256"] == first["sha256"]
    assert_no_partial(case.lake, case.source, case.month)
    tried = sum(1 for e in case.data_log() if e["status"] == 503)
    control(case.server, "reset", {})
    again, rows = follow_up(case)
    assert again["skipped"]
    reliability.observed(f"{tried} answers of 503, then: {str(error.value)[:70]}...; landing kept, {rows:,} rows")


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_a_connection_reset_mid_body_repeats_the_request(case, reliability):
    what = "mid-download (the yearly zip)" if case.source == "toronto_311" else "mid-page"
    reliability.row(
        fault=f"connection reset {what}",
        source=case.source,
        expected="the answer cut after half its Content-Length (TCP reset) is asked again whole; "
        "nothing of the cut body is kept",
    )
    set_faults(case.server, reset_mid_page=1)
    manifest = case.run()
    entries = case.data_log()
    assert fired(case.server)["reset_mid_page"] == 1
    repeated = sum(1 for e in entries if (e["path"], e["query"]) == (entries[0]["path"], entries[0]["query"]))
    assert repeated == 2 and not manifest["skipped"]
    _, rows = follow_up(case)
    reliability.observed(f"first request sent twice; {rows:,} rows, key set equal, 0 duplicates")


# ---------------------------------------------------------------- data faults


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_a_malformed_record_is_quarantined_with_the_reason(case, reliability):
    reliability.row(
        fault="malformed record",
        source=case.source,
        expected="each broken record (no key / unreadable time, or a CSV line with an extra field) goes "
        "to quarantine with its reason; every good row lands",
    )
    if case.source == "toronto_311":
        # The fault lines sit a third and two thirds into the year file: the block is the month of the first.
        lines = case.server.toronto.csv_bytes(2024).split(b"\r\n")[1:-1]
        case.month = lines[len(lines) // 3][:7].decode()
        clean = str(Path(case.lake).parent / "baseline-malformed")
        run_block("toronto_311", case.month, lake=clean)
        baseline = landed_keys(clean, "toronto_311", case.month)
        clean_quarantine = read_manifest(BlockLocation(clean, "toronto_311", case.month))["quarantined"]
        case.keys = lambda: baseline
    set_faults(case.server, malformed_row=1)
    manifest = case.run()
    reasons = manifest["quarantine_reasons"]
    if case.source == "toronto_311":
        assert manifest["quarantined"] == clean_quarantine + 1
        assert reasons["10 fields where the header has 9"] >= 1
    elif case.source == "mds":
        assert manifest["quarantined"] == 2
        assert reasons == {"schema: (record): required": 1, "schema: end_time: type": 1}
    else:
        assert manifest["quarantined"] == 2
        key = {"seattle_crime": "offense_id", "nyc_311": "unique_key", "minneapolis_311": "object_id"}[case.source]
        date = {"seattle_crime": "report_datetime", "nyc_311": "created_date", "minneapolis_311": "opened_at"}[
            case.source
        ]
        assert reasons == {f"missing {key}": 1, f"unparseable {date}": 1}
    _, rows = follow_up(case)
    reliability.observed(
        f"quarantined {manifest['quarantined']} ({', '.join(sorted(reasons))}); {rows:,} rows, key set equal"
    )


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_an_empty_answer_for_the_month(case, reliability):
    reliability.row(
        fault="empty month",
        source=case.source,
        expected="a month the source answers empty lands as an empty block (0 rows), which the next run "
        "asks again whatever the watermark; the follow-up lands the month's rows",
    )
    # MDS: every hour of the walk answers "no data"; the others: the month's query (or file) has no rows.
    set_faults(case.server, empty_month=1000 if case.source == "mds" else 1)
    manifest = case.run()
    assert not manifest["skipped"] and manifest["rows"] == 0 and manifest["quarantined"] == 0
    assert_no_partial(case.lake, case.source, case.month, case.part)
    control(case.server, "reset", {})
    again, rows = follow_up(case)
    assert not again["skipped"] and rows > 0
    reliability.observed(f"landed 0 rows; the next run asked again and landed {rows:,} rows, key set equal")


def test_an_empty_answer_never_replaces_a_landed_month(replay, monkeypatch, lake, tmp_path, reliability):
    case = _seattle(replay, monkeypatch, lake, tmp_path)
    reliability.row(
        fault="empty month over a landed one",
        source=case.source,
        expected="the watermark moves and the month answers empty: the block fails (EmptyAnswerError) "
        "and keeps the 1,200 landed rows; force would land the empty month",
    )
    from civic_pipelines.sources.base import EmptyAnswerError

    first = case.run()
    control(case.server, "config", {"seattle_crime": {"rows_updated_at": 1767229200}})  # the dataset moved on
    set_faults(case.server, empty_month=1)
    with pytest.raises(EmptyAnswerError, match="holds 1200") as error:
        case.run()
    assert case.manifest()["sha256"] == first["sha256"]
    again, rows = follow_up(case)
    assert again["skipped"] and "content unchanged" in again["reason"]
    reliability.observed(f"failed: {str(error.value)[:80]}...; landing kept, {rows:,} rows")


@pytest.mark.parametrize("case", ["seattle_crime", "nyc_311", "minneapolis_311", "mds:bolt"], indirect=True)
def test_a_page_repeating_rows_of_the_previous_page(case, reliability):
    reliability.row(
        fault="page overlap (offset drift)",
        source=case.source,
        expected="rows repeated at a page seam (rows inserted ahead of the offset cursor) are "
        "collapsed by the natural key, the latest copy kept; each key lands once",
    )
    overlaps = 3 if case.source == "mds" else 1
    set_faults(case.server, page_overlap=overlaps)
    manifest = case.run()
    assert fired(case.server)["page_overlap"] == overlaps
    if case.source == "mds":
        collapsed = manifest["duplicates_dropped"]["trips"] + manifest["duplicates_dropped"]["events"]
        assert collapsed == overlaps
    else:
        collapsed = manifest["duplicates_collapsed"]
        assert collapsed == 3 and manifest["fetched_rows"] == len(case.keys()) + 3
    _, rows = follow_up(case)
    reliability.observed(f"{collapsed} repeated rows collapsed; {rows:,} rows, key set equal, 0 duplicates")


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_a_required_field_disappears(case, reliability):
    if case.source == "mds":
        reliability.row(
            fault="required field disappears",
            source=case.source,
            expected="MDS declares no schema per page: each trip without end_time breaks the MDS schema "
            "and is quarantined with the reason (nothing lands with a null time); a forced "
            "re-run after the fix lands them",
        )
        set_faults(case.server, drop_field=1)
        manifest = case.run()
        assert manifest["quarantine_reasons"] == {"schema: (record): required": manifest["quarantined"]}
        assert manifest["quarantined"] >= 1 and manifest["rows"] == len(case.keys()) - manifest["quarantined"]
        reasons = {r["_reason"] for r in case.table("quarantine.parquet").to_pylist()}
        assert reasons == {"schema: (record): 'end_time' is a required property"}
        _, rows = follow_up(case, force=True)
        reliability.observed(
            f"{manifest['quarantined']} trip(s) quarantined ('end_time' is a required property), "
            f"{manifest['rows']} landed; forced re-run: {rows:,} rows, key set equal"
        )
        return
    name, where = {
        "seattle_crime": ("report_datetime", "a page's X-SODA2-Fields and rows"),
        "nyc_311": ("created_date", "a page's X-SODA2-Fields and rows"),
        "minneapolis_311": ("OPENEDDATETIME", "a query answer's fields and features"),
        "toronto_311": ("Ward", "the yearly file's header and lines"),
    }[case.source]
    reliability.row(
        fault="required field disappears",
        source=case.source,
        expected=f"{name} gone from {where} fails the block with SchemaDriftError naming it (no row "
        "lands with a null, none is quarantined for it); the previous landing stays whole",
    )
    message = fails_keeping_the_landing(case, {"drop_field": 1}, SchemaDriftError, name)
    _, rows = follow_up(case)
    reliability.observed(f"failed: {message[:90]}...; landing kept, {rows:,} rows, key set equal")


@pytest.mark.parametrize("case", ["seattle_crime", "minneapolis_311", "toronto_311"], indirect=True)
def test_an_optional_field_disappears(case, reliability):
    wire, column = {
        "seattle_crime": ("beat", "beat"),
        "minneapolis_311": ("TITLE", "title"),
        "toronto_311": ("Status", "status"),
    }[case.source]
    reliability.row(
        fault="optional field disappears",
        source=case.source,
        expected=f"every row lands with {column} null and the manifest's drift names {wire} as a missing "
        "field; no row is lost or quarantined. The follow-up (same watermark) is skipped, so the "
        "nulls stay until the source changes; a forced run restores the values",
    )
    set_faults(case.server, drop_field=100, field=wire)
    manifest = case.run()
    assert wire in manifest["drift"]["missing_fields"] and manifest["quarantined"] == case.notes.get("quarantined", 0)
    if case.source != "toronto_311":
        assert manifest["drift"]["pages_without"] == {wire: manifest["pages"]}
    table = case.table()
    assert table[column].null_count == table.num_rows
    control(case.server, "reset", {})
    again, rows = follow_up(case)
    assert again["skipped"] and case.table()[column].null_count == rows
    forced, rows = follow_up(case, force=True)
    restored = case.table()[column]
    assert forced["drift"]["missing_fields"] == [] and restored.null_count < restored.length() // 2
    reliability.observed(
        f"drift missing_fields={manifest['drift']['missing_fields']}, {column} null on all "
        f"{rows:,} rows; follow-up skipped; forced run: {restored.length() - restored.null_count:,} "
        f"values back, key set equal"
    )


@pytest.mark.parametrize("case", ["seattle_crime", "nyc_311", "minneapolis_311", "toronto_311", "mds"], indirect=True)
def test_a_new_field_appears(case, reliability):
    new = {
        "seattle_crime": ":@computed_region_replay_2fw8",
        "nyc_311": ":@computed_region_replay_2fw8",
        "minneapolis_311": "EditDate",
        "toronto_311": "Service Request Location",
        "mds": "journey_id",
    }[case.source]
    reliability.row(
        fault="new field",
        source=case.source,
        expected=f"a field the contract lacks ({new}) does not break the block: it lands whole, the "
        "new field is reported in the manifest" + (" (kept in extras)" if case.source == "mds" else " drift"),
    )
    set_faults(case.server, new_field=100)
    manifest = case.run()
    if case.source == "mds":
        extras = [json.loads(e) for e in case.table()["extras"].to_pylist()]
        assert extras and all(set(e) == {"journey_id"} for e in extras)
        seen = f"extras holds journey_id on {len(extras)} rows"
    else:
        assert new in manifest["drift"]["new_fields"]
        seen = f"drift new_fields={manifest['drift']['new_fields']}"
    assert manifest["quarantined"] == case.notes.get("quarantined", 0)  # Toronto's file has a few broken lines
    control(case.server, "reset", {})
    _, rows = follow_up(case)
    reliability.observed(f"{seen}; {rows:,} rows, key set equal")


@pytest.mark.parametrize("case", HTTP_SOURCES, indirect=True)
def test_a_field_changes_type(case, reliability):
    if case.source in SODA:
        key = case.notes["key"]
        reliability.row(
            fault="changed type",
            source=case.source,
            expected=f"{key} declared text instead of number (X-SODA2-Types): values are cast as the "
            "contract says, the block lands whole, the change is reported in drift",
        )
        set_faults(case.server, retype_field=100)
        manifest = case.run()
        assert manifest["drift"]["changed_types"] == {key: {"expected": "int64", "declared": "text"}}
        assert manifest["quarantined"] == 0
        control(case.server, "reset", {})
        _, rows = follow_up(case)
        reliability.observed(f"drift changed_types={manifest['drift']['changed_types']}; {rows:,} rows, key set equal")
    elif case.source == "minneapolis_311":
        reliability.row(
            fault="changed type",
            source=case.source,
            expected="CASEID sent as a JSON string and declared esriFieldTypeString: coerced to int64, "
            "same values as the source, change reported in drift",
        )
        set_faults(case.server, retype_field=100)
        manifest = case.run()
        assert manifest["drift"]["changed_types"] == {
            "CASEID": {"expected": "int64", "declared": "esriFieldTypeString"}
        }
        assert manifest["quarantined"] == 0 and manifest["nulled_values"] == {}
        want = {
            a["OBJECTID"]: None if a.get("CASEID") is None else int(a["CASEID"])
            for a in case.server.minneapolis.rows_for_month(case.month)
        }
        table = case.table()
        assert dict(zip(table["object_id"].to_pylist(), table["case_id"].to_pylist())) == want
        control(case.server, "reset", {})
        _, rows = follow_up(case)
        reliability.observed(f"case_id equal to the source on all {rows:,} rows; drift changed_types reported")
    elif case.source == "toronto_311":
        reliability.row(
            fault="changed type",
            source=case.source,
            expected="Creation Date written as ISO 8601 (2024-02-01T10:00:00.000) in the whole file: "
            "format drift fails the block naming the column, instead of quarantining every "
            "row over the landed month",
        )
        message = fails_keeping_the_landing(case, {"retype_field": 1}, SchemaDriftError, "Creation Date")
        _, rows = follow_up(case)
        reliability.observed(f"failed: {message[:90]}...; landing kept, {rows:,} rows")
    else:
        reliability.row(
            fault="changed type",
            source=case.source,
            expected="a trip duration sent as text breaks the MDS schema (integer): those trips are "
            "quarantined with the schema error, the rest land; a forced re-run after the fix "
            "lands them",
        )
        set_faults(case.server, retype_field=1)
        manifest = case.run()
        assert manifest["quarantine_reasons"] == {"schema: duration: type": manifest["quarantined"]}
        assert manifest["quarantined"] >= 1 and manifest["rows"] == len(case.keys()) - manifest["quarantined"]
        _, rows = follow_up(case, force=True)
        reliability.observed(
            f"{manifest['quarantined']} trip(s) quarantined ('is not of type integer'); forced "
            f"re-run: {rows:,} rows, key set equal"
        )


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize("case", ["seattle_crime", "nyc_311", "minneapolis_311"], indirect=True)
def test_a_refused_token_fails_naming_the_connection(case, reliability, monkeypatch):
    conn_id = case.notes["conn_id"]
    answer = (
        "403 permission_denied 'Invalid app_token specified'"
        if case.source in SODA
        else "HTTP 200 with ArcGIS error 498 'Invalid token.'"
    )
    reliability.row(
        fault="expired/refused token",
        source=case.source,
        expected=f"the API's own answer ({answer}) fails the block at once, without retries, naming "
        f"connection {conn_id} and never the token",
    )
    set_connection(monkeypatch, conn_id, case.server, password=FAKE_TOKEN)
    set_faults(case.server, status_401=1)
    with pytest.raises(SourceHTTPError) as error:
        case.run()
    text = str(error.value)
    assert conn_id in text and FAKE_TOKEN not in text
    assert ("Invalid app_token specified" if case.source in SODA else "498") in text
    assert [e["status"] for e in case.data_log()] == [403 if case.source in SODA else 200]
    assert_no_partial(case.lake, case.source, case.month)
    _, rows = follow_up(case)
    reliability.observed(f"failed after 1 request: {text[:110]}...; next run {rows:,} rows")


@pytest.mark.parametrize("case", ["mds:lyft"], indirect=True)
def test_an_expired_bearer_token_fails_naming_the_connection(case, reliability):
    reliability.row(
        fault="expired token (MDS bearer)",
        source=case.source,
        expected="a 401 on a static bearer token fails the block at once naming connection "
        "civic_mds_lyft (a bearer token cannot be renewed by the client), never the token",
    )
    set_faults(case.server, status_401=1)
    with pytest.raises(mds.MdsAuthError) as error:
        case.run()
    text = str(error.value)
    assert "civic_mds_lyft" in text and case.server.mds.providers["lyft"].token not in text
    assert_no_partial(case.lake, case.source, case.month, case.part)
    _, rows = follow_up(case)
    reliability.observed(f"failed: {text[:100]}...; next run {rows:,} rows")


@pytest.mark.parametrize("case", ["mds:voi"], indirect=True)
def test_an_expired_oauth2_token_is_renewed_and_the_block_continues(case, reliability):
    reliability.row(
        fault="expired token (MDS OAuth2)",
        source=case.source,
        expected="a 401 mid-block fetches a new client-credentials token once and asks the same hour "
        "again; the block lands whole",
    )
    set_faults(case.server, status_401=1)
    manifest = case.run()
    assert manifest["unauthorized_retries"] == 1 and manifest["token_requests"] == 2
    assert len(case.server.mds.issued_tokens()) == 2
    statuses = [e["status"] for e in case.data_log()]
    assert statuses[0] == 401 and statuses[1] == 200
    _, rows = follow_up(case)
    reliability.observed(f"1 × 401, 2 tokens issued, the hour asked again; {rows:,} rows, key set equal")


# ---------------------------------------------------------------- archives (CKAN yearly zip)


@pytest.mark.parametrize("case", ["toronto_311"], indirect=True)
@pytest.mark.parametrize("fault", ["truncate_archive", "corrupt_archive"])
def test_a_damaged_zip_is_downloaded_again(case, fault, reliability):
    what = {
        "truncate_archive": "truncated download (a complete answer of 60 % of the zip)",
        "corrupt_archive": "corrupt download (64 garbage bytes mid-zip)",
    }[fault]
    reliability.row(
        fault=what.split(" (")[0],
        source=case.source,
        expected=f"{what}: the zip reader notices (member cut short / inflate error / CRC) and the "
        "whole download is repeated; nothing of the damaged file lands",
    )
    set_faults(case.server, **{fault: 1})
    manifest = case.run()
    downloads = case.data_log()
    assert len(downloads) == 2 and fired(case.server)[fault] == 1 and not manifest["skipped"]
    _, rows = follow_up(case)
    reliability.observed(f"downloaded twice; {rows:,} rows, key set equal, 0 duplicates")


# ---------------------------------------------------------------- MDS versions


@pytest.mark.parametrize("case", ["mds:bolt"], indirect=True)
def test_an_mds_12_provider_s_status_changes_land(case, reliability):
    """Issue 14 item 4: the 1.x schema required 0.4's event_type / event_type_reason, so every
    status change of a 1.2 provider (vehicle_state, event_types, trip_id) was quarantined."""
    reliability.row(
        fault="MDS 1.2 status changes (vehicle_state, event_types, trip_id)",
        source=case.source,
        expected="validated against the Open Mobility Foundation's published 1.x status_changes "
        "schema: every status change lands in events with vehicle_state, event_types and "
        "trip_ids (the 2.0 columns), none quarantined; trips land exactly",
    )
    control(case.server, "config", {"mds": {"events_per_hour": 6}})
    manifest = case.run()
    hours = [h for h in mds.month_hours(case.month) if h < MDS_CLOCK]
    want = [e for h in hours for e in case.server.mds.records("bolt", mds.hour_text(h))["events"]]
    events = case.table("events.parquet").to_pylist()
    assert manifest["quarantined"] == 0 and len(events) == len(want) > 30
    assert sorted(r["event_id"] for r in events) == sorted(mds.derived_event_id("bolt", e) for e in want)
    by_id = {mds.derived_event_id("bolt", e): e for e in want}
    for row in events:
        record = by_id[row["event_id"]]
        assert (row["vehicle_state"], row["event_types"]) == (record["vehicle_state"], record["event_types"])
        assert row["trip_ids"] == ([record["trip_id"]] if "trip_id" in record else None)
        assert row["mds_version"] == "1.2" and row["event_type"] is None
    with_trip = sum(1 for r in events if r["trip_ids"])
    rows = case.exactly()
    reliability.observed(
        f"{len(events)} of {len(want)} status changes landed (before: 0, all quarantined), "
        f"{with_trip} with their trip_id; {rows} trips, key set equal; 0 quarantined"
    )
