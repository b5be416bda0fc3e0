"""The fault matrix of the HTTP / paged sources: Socrata SODA (seattle_crime, nyc_311), ArcGIS REST
(minneapolis_311), CKAN yearly files (toronto_311) and the MDS provider APIs (mds).

Every row runs one block in-process (``run_block``) against the replay server with one fault
switched on, asserts what the run did (landed, retried, failed with which message), then runs the
block again with the fault gone and checks, with ``fault_checks``, that the lake holds exactly the
source's rows for the block (count and key set), no duplicate, nothing half-written where dbt or
the dashboard read. The rows are the table ``ROWS`` (at the end): per source, the fault, what is
expected, and the check below that proves it; ``test_http_fault`` runs each through
``http_faults.run_row``, which publishes the row of ``docs/reliability.md`` with what the check saw.

Blocks are small (1,200 rows a month over pages of 500; 6,000 rows a year for Toronto; twelve
MDS hours), so each case takes a fraction of a second plus the waits the fault itself imposes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from fault_checks import assert_no_partial, landed_keys
from http_faults import (  # noqa: F401 - case is the fixture the rows take
    FAKE_TOKEN,
    HTTP_SOURCES,
    MDS_CLOCK,
    SODA,
    case,
    control,
    fails_keeping_the_landing,
    fired,
    follow_up,
    gap_after,
    per_source,
    run_row,
    set_connection,
    set_faults,
)

from civic_pipelines.extract import run_block
from civic_pipelines.http import SourceHTTPError
from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.sources import mds
from civic_pipelines.sources.base import EmptyAnswerError, SchemaDriftError

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


def a_request_is_asked_again_after_the_wait(wait: Wait, case, monkeypatch) -> str:
    if wait.read_timeout:
        monkeypatch.setenv("CIVIC_HTTP_READ_TIMEOUT", wait.read_timeout)
    set_faults(case.server, **wait.faults)
    started = time.monotonic()
    manifest = case.run()
    took = time.monotonic() - started
    entries = case.data_log()
    waited = gap_after(entries, wait.repeated(entries))
    assert wait.at_least <= waited < wait.below, f"asked again after {waited:.2f} s ({wait.fault})"
    assert not manifest["skipped"] and fired(case.server)[wait.fired] == 1
    _, rows = follow_up(case)
    return f"waited {waited:.2f} s before the repeat (block {took:.2f} s); {rows:,} rows, key set equal, 0 duplicates"


def a_burst_of_500_502_503_is_retried(case, monkeypatch) -> str:
    set_faults(case.server, status_500=1, status_502=1, status_503=1)
    started = time.monotonic()
    manifest = case.run()
    took = time.monotonic() - started
    statuses = [e["status"] for e in case.data_log()]
    assert statuses[:4] == [503, 500, 502, 200]
    assert not manifest["skipped"]
    _, rows = follow_up(case)
    return f"answers {statuses[:4]}, block {took:.2f} s; {rows:,} rows, key set equal, 0 duplicates"


def a_burst_longer_than_the_retry_budget_fails_and_keeps_the_landing(case, monkeypatch) -> str:
    monkeypatch.setenv("CIVIC_HTTP_BACKOFF", "0.01")  # the budget is the point, not the waits
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
    return f"{tried} answers of 503, then: {str(error.value)[:70]}...; landing kept, {rows:,} rows"


def a_connection_reset_mid_body_repeats_the_request(case, monkeypatch) -> str:
    set_faults(case.server, reset_mid_page=1)
    manifest = case.run()
    entries = case.data_log()
    assert fired(case.server)["reset_mid_page"] == 1
    repeated = sum(1 for e in entries if (e["path"], e["query"]) == (entries[0]["path"], entries[0]["query"]))
    assert repeated == 2 and not manifest["skipped"]
    _, rows = follow_up(case)
    return f"first request sent twice; {rows:,} rows, key set equal, 0 duplicates"


# ---------------------------------------------------------------- data faults


def a_malformed_record_is_quarantined_with_the_reason(case, monkeypatch) -> str:
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
    return f"quarantined {manifest['quarantined']} ({', '.join(sorted(reasons))}); {rows:,} rows, key set equal"


def an_empty_answer_for_the_month(case, monkeypatch) -> str:
    # MDS: every hour of the walk answers "no data"; the others: the month's query (or file) has no rows.
    set_faults(case.server, empty_month=1000 if case.source == "mds" else 1)
    manifest = case.run()
    assert not manifest["skipped"] and manifest["rows"] == 0 and manifest["quarantined"] == 0
    assert_no_partial(case.lake, case.source, case.month, case.part)
    control(case.server, "reset", {})
    again, rows = follow_up(case)
    assert not again["skipped"] and rows > 0
    return f"landed 0 rows; the next run asked again and landed {rows:,} rows, key set equal"


def an_empty_answer_never_replaces_a_landed_month(case, monkeypatch) -> str:
    first = case.run()
    control(case.server, "config", {"seattle_crime": {"rows_updated_at": 1767229200}})  # the dataset moved on
    set_faults(case.server, empty_month=1)
    with pytest.raises(EmptyAnswerError, match="holds 1200") as error:
        case.run()
    assert case.manifest()["sha256"] == first["sha256"]
    again, rows = follow_up(case)
    assert again["skipped"] and "content unchanged" in again["reason"]
    return f"failed: {str(error.value)[:80]}...; landing kept, {rows:,} rows"


def a_page_repeating_rows_of_the_previous_page(case, monkeypatch) -> str:
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
    return f"{collapsed} repeated rows collapsed; {rows:,} rows, key set equal, 0 duplicates"


def quarantined_until_a_forced_rerun(case, faults: dict, reason: str) -> dict:
    """MDS validates each record: a trip the fault breaks is quarantined for ``reason``, the rest land."""
    set_faults(case.server, **faults)
    manifest = case.run()
    assert manifest["quarantine_reasons"] == {reason: manifest["quarantined"]}
    assert manifest["quarantined"] >= 1 and manifest["rows"] == len(case.keys()) - manifest["quarantined"]
    return manifest


def a_required_field_disappears(case, monkeypatch) -> str:
    if case.source == "mds":
        manifest = quarantined_until_a_forced_rerun(case, {"drop_field": 1}, "schema: (record): required")
        reasons = {r["_reason"] for r in case.table("quarantine.parquet").to_pylist()}
        assert reasons == {"schema: (record): 'end_time' is a required property"}
        _, rows = follow_up(case, force=True)
        return (
            f"{manifest['quarantined']} trip(s) quarantined ('end_time' is a required property), "
            f"{manifest['rows']} landed; forced re-run: {rows:,} rows, key set equal"
        )
    message = fails_keeping_the_landing(case, {"drop_field": 1}, SchemaDriftError, REQUIRED[case.source][0])
    _, rows = follow_up(case)
    return f"failed: {message[:90]}...; landing kept, {rows:,} rows, key set equal"


def an_optional_field_disappears(case, monkeypatch) -> str:
    wire, column = OPTIONAL[case.source]
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
    return (
        f"drift missing_fields={manifest['drift']['missing_fields']}, {column} null on all "
        f"{rows:,} rows; follow-up skipped; forced run: {restored.length() - restored.null_count:,} "
        f"values back, key set equal"
    )


def a_new_field_appears(case, monkeypatch) -> str:
    set_faults(case.server, new_field=100)
    manifest = case.run()
    if case.source == "mds":
        extras = [json.loads(e) for e in case.table()["extras"].to_pylist()]
        assert extras and all(set(e) == {"journey_id"} for e in extras)
        seen = f"extras holds journey_id on {len(extras)} rows"
    else:
        assert NEW[case.source] in manifest["drift"]["new_fields"]
        seen = f"drift new_fields={manifest['drift']['new_fields']}"
    assert manifest["quarantined"] == case.notes.get("quarantined", 0)  # Toronto's file has a few broken lines
    control(case.server, "reset", {})
    _, rows = follow_up(case)
    return f"{seen}; {rows:,} rows, key set equal"


def a_field_changes_type(case, monkeypatch) -> str:
    if case.source in SODA:
        key = case.notes["key"]
        set_faults(case.server, retype_field=100)
        manifest = case.run()
        assert manifest["drift"]["changed_types"] == {key: {"expected": "int64", "declared": "text"}}
        assert manifest["quarantined"] == 0
        control(case.server, "reset", {})
        _, rows = follow_up(case)
        return f"drift changed_types={manifest['drift']['changed_types']}; {rows:,} rows, key set equal"
    if case.source == "minneapolis_311":
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
        return f"case_id equal to the source on all {rows:,} rows; drift changed_types reported"
    if case.source == "toronto_311":
        message = fails_keeping_the_landing(case, {"retype_field": 1}, SchemaDriftError, "Creation Date")
        _, rows = follow_up(case)
        return f"failed: {message[:90]}...; landing kept, {rows:,} rows"
    manifest = quarantined_until_a_forced_rerun(case, {"retype_field": 1}, "schema: duration: type")
    _, rows = follow_up(case, force=True)
    return (
        f"{manifest['quarantined']} trip(s) quarantined ('is not of type integer'); forced "
        f"re-run: {rows:,} rows, key set equal"
    )


# ---------------------------------------------------------------- credentials


def a_refused_token_fails_naming_the_connection(case, monkeypatch) -> str:
    conn_id = case.notes["conn_id"]
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
    return f"failed after 1 request: {text[:110]}...; next run {rows:,} rows"


def an_expired_bearer_token_fails_naming_the_connection(case, monkeypatch) -> str:
    set_faults(case.server, status_401=1)
    with pytest.raises(mds.MdsAuthError) as error:
        case.run()
    text = str(error.value)
    assert "civic_mds_lyft" in text and case.server.mds.providers["lyft"].token not in text
    assert_no_partial(case.lake, case.source, case.month, case.part)
    _, rows = follow_up(case)
    return f"failed: {text[:100]}...; next run {rows:,} rows"


def an_expired_oauth2_token_is_renewed_and_the_block_continues(case, monkeypatch) -> str:
    set_faults(case.server, status_401=1)
    manifest = case.run()
    assert manifest["unauthorized_retries"] == 1 and manifest["token_requests"] == 2
    assert len(case.server.mds.issued_tokens()) == 2
    statuses = [e["status"] for e in case.data_log()]
    assert statuses[0] == 401 and statuses[1] == 200
    _, rows = follow_up(case)
    return f"1 × 401, 2 tokens issued, the hour asked again; {rows:,} rows, key set equal"


# ---------------------------------------------------------------- archives (CKAN yearly zip)


def a_damaged_zip_is_downloaded_again(fault: str, case, monkeypatch) -> str:
    set_faults(case.server, **{fault: 1})
    manifest = case.run()
    downloads = case.data_log()
    assert len(downloads) == 2 and fired(case.server)[fault] == 1 and not manifest["skipped"]
    _, rows = follow_up(case)
    return f"downloaded twice; {rows:,} rows, key set equal, 0 duplicates"


# ---------------------------------------------------------------- MDS versions


def an_mds_12_provider_s_status_changes_land(case, monkeypatch) -> str:
    """Issue 14 item 4: the 1.x schema required 0.4's event_type / event_type_reason, so every
    status change of a 1.2 provider (vehicle_state, event_types, trip_id) was quarantined."""
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
    return (
        f"{len(events)} of {len(want)} status changes landed (before: 0, all quarantined), "
        f"{with_trip} with their trip_id; {rows} trips, key set equal; 0 quarantined"
    )


# ---------------------------------------------------------------- the rows

# A required field per source (wire name, where it is declared); the optional field (wire name,
# landed column); the new field the replay adds.
REQUIRED = {
    "seattle_crime": ("report_datetime", "a page's X-SODA2-Fields and rows"),
    "nyc_311": ("created_date", "a page's X-SODA2-Fields and rows"),
    "minneapolis_311": ("OPENEDDATETIME", "a query answer's fields and features"),
    "toronto_311": ("Ward", "the yearly file's header and lines"),
}
OPTIONAL = {
    "seattle_crime": ("beat", "beat"),
    "minneapolis_311": ("TITLE", "title"),
    "toronto_311": ("Status", "status"),
}
NEW = {
    "seattle_crime": ":@computed_region_replay_2fw8",
    "nyc_311": ":@computed_region_replay_2fw8",
    "minneapolis_311": "EditDate",
    "toronto_311": "Service Request Location",
    "mds": "journey_id",
}
DAMAGED_ZIP = {
    "truncate_archive": "truncated download (a complete answer of 60 % of the zip)",
    "corrupt_archive": "corrupt download (64 garbage bytes mid-zip)",
}


def required_field_expected(source: str) -> str:
    if source == "mds":
        return (
            "MDS declares no schema per page: each trip without end_time breaks the MDS schema "
            "and is quarantined with the reason (nothing lands with a null time); a forced "
            "re-run after the fix lands them"
        )
    name, where = REQUIRED[source]
    return (
        f"{name} gone from {where} fails the block with SchemaDriftError naming it (no row "
        "lands with a null, none is quarantined for it); the previous landing stays whole"
    )


CHANGED_TYPE = {
    "seattle_crime": "offense_id declared text instead of number (X-SODA2-Types): values are cast as the "
    "contract says, the block lands whole, the change is reported in drift",
    "nyc_311": "unique_key declared text instead of number (X-SODA2-Types): values are cast as the "
    "contract says, the block lands whole, the change is reported in drift",
    "minneapolis_311": "CASEID sent as a JSON string and declared esriFieldTypeString: coerced to int64, "
    "same values as the source, change reported in drift",
    "toronto_311": "Creation Date written as ISO 8601 (2024-02-01T10:00:00.000) in the whole file: "
    "format drift fails the block naming the column, instead of quarantining every "
    "row over the landed month",
    "mds": "a trip duration sent as text breaks the MDS schema (integer): those trips are "
    "quarantined with the schema error, the rest land; a forced re-run after the fix "
    "lands them",
}
SODA_REFUSAL = "403 permission_denied 'Invalid app_token specified'"
TOKEN_ANSWER = {
    **dict.fromkeys(SODA, SODA_REFUSAL),
    "minneapolis_311": "HTTP 200 with ArcGIS error 498 'Invalid token.'",
}

ROWS = [
    *(
        row
        for wait in WAITS
        for row in per_source(
            partial(a_request_is_asked_again_after_the_wait, wait),
            wait.fault,
            wait.expected,
            name=f"a_request_is_asked_again_after_the_wait-{wait.name}",
        )
    ),
    *per_source(
        a_burst_of_500_502_503_is_retried,
        "burst of 500/502/503",
        "three 5xx answers in a row (503, 500, a proxy's 502 HTML page) are retried with backoff; the block lands whole",
    ),
    *per_source(
        a_burst_longer_than_the_retry_budget_fails_and_keeps_the_landing,
        "503 burst beyond the retry budget",
        "after 6 retries the block fails naming the status; the previous landing stays "
        "readable and complete; the next run lands nothing new (unchanged source)",
        ["seattle_crime"],
    ),
    *per_source(
        a_connection_reset_mid_body_repeats_the_request,
        lambda s: "connection reset " + ("mid-download (the yearly zip)" if s == "toronto_311" else "mid-page"),
        "the answer cut after half its Content-Length (TCP reset) is asked again whole; nothing of the cut body is kept",
    ),
    *per_source(
        a_malformed_record_is_quarantined_with_the_reason,
        "malformed record",
        "each broken record (no key / unreadable time, or a CSV line with an extra field) goes "
        "to quarantine with its reason; every good row lands",
    ),
    *per_source(
        an_empty_answer_for_the_month,
        "empty month",
        "a month the source answers empty lands as an empty block (0 rows), which the next run "
        "asks again whatever the watermark; the follow-up lands the month's rows",
    ),
    *per_source(
        an_empty_answer_never_replaces_a_landed_month,
        "empty month over a landed one",
        "the watermark moves and the month answers empty: the block fails (EmptyAnswerError) "
        "and keeps the 1,200 landed rows; force would land the empty month",
        ["seattle_crime"],
    ),
    *per_source(
        a_page_repeating_rows_of_the_previous_page,
        "page overlap (offset drift)",
        "rows repeated at a page seam (rows inserted ahead of the offset cursor) are "
        "collapsed by the natural key, the latest copy kept; each key lands once",
        ["seattle_crime", "nyc_311", "minneapolis_311", "mds:bolt"],
    ),
    *per_source(a_required_field_disappears, "required field disappears", required_field_expected),
    *per_source(
        an_optional_field_disappears,
        "optional field disappears",
        lambda s: (
            f"every row lands with {OPTIONAL[s][1]} null and the manifest's drift names {OPTIONAL[s][0]} as "
            "a missing field; no row is lost or quarantined. The follow-up (same watermark) is skipped, so the "
            "nulls stay until the source changes; a forced run restores the values"
        ),
        list(OPTIONAL),
    ),
    *per_source(
        a_new_field_appears,
        "new field",
        lambda s: (
            f"a field the contract lacks ({NEW[s]}) does not break the block: it lands whole, the "
            "new field is reported in the manifest" + (" (kept in extras)" if s == "mds" else " drift")
        ),
    ),
    *per_source(a_field_changes_type, "changed type", CHANGED_TYPE.get),
    *per_source(
        a_refused_token_fails_naming_the_connection,
        "expired/refused token",
        lambda s: (
            f"the API's own answer ({TOKEN_ANSWER[s]}) fails the block at once, without retries, naming "
            f"connection civic_{s} and never the token"
        ),
        list(TOKEN_ANSWER),
    ),
    *per_source(
        an_expired_bearer_token_fails_naming_the_connection,
        "expired token (MDS bearer)",
        "a 401 on a static bearer token fails the block at once naming connection "
        "civic_mds_lyft (a bearer token cannot be renewed by the client), never the token",
        ["mds:lyft"],
    ),
    *per_source(
        an_expired_oauth2_token_is_renewed_and_the_block_continues,
        "expired token (MDS OAuth2)",
        "a 401 mid-block fetches a new client-credentials token once and asks the same hour again; the block lands whole",
        ["mds:voi"],
    ),
    *(
        row
        for fault, what in DAMAGED_ZIP.items()
        for row in per_source(
            partial(a_damaged_zip_is_downloaded_again, fault),
            what.split(" (")[0],
            f"{what}: the zip reader notices (member cut short / inflate error / CRC) and the "
            "whole download is repeated; nothing of the damaged file lands",
            ["toronto_311"],
            name=f"a_damaged_zip_is_downloaded_again-{fault}",
        )
    ),
    *per_source(
        an_mds_12_provider_s_status_changes_land,
        "MDS 1.2 status changes (vehicle_state, event_types, trip_id)",
        "validated against the Open Mobility Foundation's published 1.x status_changes "
        "schema: every status change lands in events with vehicle_state, event_types and "
        "trip_ids (the 2.0 columns), none quarantined; trips land exactly",
        ["mds:bolt"],
    ),
]


@pytest.mark.parametrize("case, row", [(row.source, row) for row in ROWS], indirect=["case"], ids=map(str, ROWS))
def test_http_fault(case, row, monkeypatch, reliability):
    run_row(row, case, monkeypatch, reliability)
