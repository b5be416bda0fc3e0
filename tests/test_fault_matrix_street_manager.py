"""The fault matrix rows only Street Manager has (DfT monthly zips of JSON events, streamed by
``stream_block``): a reset mid-archive resumed with Range, quarantined members, an archive not
published, field drift and an unexpected 401. The rows it shares with SRWR (throttling, 5xx,
stalls, an empty month, faults that fail the block) are in ``test_fault_matrix_archives.py``,
which says how every row checks the lake.

Each check below proves one row of ``ROWS`` (at the end) and returns what it observed; the one
test, ``test_street_manager_fault`` (``archive_faults.matrix_test``), runs every row through ``run_row``.
"""

from __future__ import annotations

import orjson
import pytest
from archive_faults import EVENTS, MONTH, PART, folder_bytes, matrix_test, server, timeline  # noqa: F401 - fixtures
from fault_rows import Row

from civic_pipelines.http import SourceHTTPError
from civic_pipelines.replay.street_manager import archive_events
from civic_pipelines.sources import street_manager as sm


def a_reset_mid_archive_is_resumed(street, lake, fx) -> str:
    street.post("config", {"street_manager": {"events_per_month": {PART: 3000}}})  # ~2.5 MB: cut mid-stream
    seen = timeline(fx.monkeypatch, street.server)
    manifest = street.run_faulted(lake, {"reset_mid_page": 1})
    gets = [(e["status"], e["range"]) for e in seen if e["method"] == "GET"]
    assert manifest["download_resumes"] == 1 and len(gets) == 2 and gets[0] == (200, None)
    assert gets[1] == (200, None) or (gets[1][0] == 206 and gets[1][1].startswith("bytes="))
    assert street.server.faults["reset_mid_page"] == 0 and street.server.faults.fired["reset_mid_page"] == 1
    assert manifest["rows"] == street.exact(lake) == 3000
    assert manifest["archive_bytes"] == manifest["archive_size"]
    return f"1 reset, 1 resume ({gets[1][0]} {gets[1][1] or 'whole archive'}); 3000 rows, key set equal, 0 duplicates"


def malformed_records_are_quarantined(street, lake, fx) -> str:
    manifest = street.run_faulted(lake, {"malformed_row": 1})
    quarantine = street.table(lake, "quarantine.parquet")
    reasons = sorted(r.split(":")[0] for r in quarantine["_reason"].to_pylist())
    assert reasons == ["member is not valid JSON", "missing event_reference", "unparseable event_time"]
    assert manifest["quarantined"] == 3 and manifest["events"] == EVENTS + 3
    assert all(quarantine["raw"].to_pylist()) and all(m.endswith(".json") for m in quarantine["member"].to_pylist())
    assert manifest["rows"] == street.exact(lake) == EVENTS
    again = street.run(lake)  # the archive without the bad members (another ETag)
    assert not again["skipped"] and again["quarantined"] == 0
    assert not (street.folder(lake) / "quarantine.parquet").exists()
    assert street.exact(lake) == EVENTS
    return f"{EVENTS} rows landed, 3 quarantined ({', '.join(reasons)}); follow-up {EVENTS} rows, 0 quarantined, key set equal"


def an_empty_archive_lands_an_empty_month(street, lake, fx) -> str:
    manifest = street.run_faulted(lake, {"empty_month": 1})
    table = street.table(lake)
    assert manifest["rows"] == manifest["events"] == table.num_rows == 0 and table.schema == sm.data_schema(PART)
    again = street.run(lake)
    assert not again["skipped"] and street.exact(lake) == EVENTS
    return f"0 rows, schema kept; follow-up {EVENTS} rows, key set equal"


def an_archive_not_published_is_skipped(street, lake, fx) -> str:
    street.post("config", {"street_manager": {"latest_month": "2024-02"}})
    skipped = street.run(lake)
    assert skipped["skipped"] and "not published yet" in skipped["reason"] and "404" in skipped["reason"]
    assert not street.folder(lake).exists()
    street.post("config", {"street_manager": {"latest_month": "2024-06"}})
    assert street.run(lake)["rows"] == EVENTS
    before = folder_bytes(street.folder(lake))
    street.post("config", {"street_manager": {"latest_month": "2024-02"}})  # withdrawn again
    assert street.run(lake)["skipped"] and folder_bytes(street.folder(lake)) == before
    assert street.exact(lake) == EVENTS
    return f"skipped: {skipped['reason'][:60]}...; later {EVENTS} rows; a withdrawn archive leaves them untouched"


def a_vanished_optional_field_is_reported(street, lake, fx) -> str:
    street.post("config", {"street_manager": {"fault_options": {"drop_field": "street_name"}}})
    street.post("faults", {"drop_field": 1})
    with fx.caplog.at_level("WARNING", logger=sm.log.name):
        manifest = street.run(lake)
    assert "street_name" in manifest["drift"]["missing_fields"]
    assert any("street_name" in record.getMessage() for record in fx.caplog.records)
    assert street.table(lake)["street_name"].null_count == EVENTS
    assert manifest["rows"] == street.exact(lake) == EVENTS
    again = street.run(lake)
    assert not again["skipped"] and street.table(lake)["street_name"].null_count == 0
    assert "street_name" not in again["drift"]["missing_fields"] and street.exact(lake) == EVENTS
    return (
        f"{EVENTS} rows, street_name null in all and listed in drift.missing_fields (warned); "
        "follow-up: 0 nulls, key set equal"
    )


def a_new_field_is_kept_and_reported(street, lake, fx) -> str:
    manifest = street.run_faulted(lake, {"new_field": 1})
    assert manifest["drift"]["new_fields"] == {"object_data.replay_new_field": EVENTS}
    extras = [orjson.loads(v) for v in street.table(lake)["extras"].to_pylist()]
    assert all(e["object_data"]["replay_new_field"] == "a field the contract lacks" for e in extras)
    assert manifest["rows"] == street.exact(lake) == EVENTS
    assert not street.run(lake)["skipped"] and street.table(lake)["extras"].null_count == EVENTS
    assert street.exact(lake) == EVENTS
    return f"{EVENTS} rows, new field in extras for all {EVENTS}; follow-up exact"


def a_changed_type_is_converted_and_reported(street, lake, fx) -> str:
    manifest = street.run_faulted(lake, {"retype_field": 1})
    assert manifest["drift"]["type_changes"] == {"object_data.usrn: number": EVENTS}
    faulted = street.table(lake).select(["event_reference", "usrn"]).to_pylist()
    assert manifest["rows"] == street.exact(lake) == EVENTS
    again = street.run(lake)
    assert again["skipped"] and "content unchanged" in again["reason"]  # the same rows as published normally
    published = archive_events(street.server.street_manager.spec(PART, MONTH))
    assert {r["event_reference"]: r["usrn"] for r in faulted} == {
        e["event_reference"]: e["object_data"]["usrn"] for e in published
    }
    return (
        f"{EVENTS} rows, usrn identical to the normal archive's; type_changes "
        f"{manifest['drift']['type_changes']}; follow-up: content unchanged"
    )


def an_unexpected_401_fails_clearly(street, lake, fx) -> str:
    street.run(lake)
    before = folder_bytes(street.folder(lake))
    seen = timeline(fx.monkeypatch, street.server)
    street.post("faults", {"status_401": 1})
    with pytest.raises(SourceHTTPError, match="HTTP 401"):
        street.run(lake)
    assert [(e["method"], e["status"]) for e in seen] == [("HEAD", 401)]
    assert folder_bytes(street.folder(lake)) == before
    assert street.run(lake)["skipped"] and street.exact(lake) == EVENTS
    return f"one HEAD answered 401, no retry, nothing written; {EVENTS} rows intact"


# (fault, expected, check): every Street Manager-only row of docs/reliability.md
ROWS = [
    Row(
        "street_manager",
        "connection reset mid-archive",
        "the download resumes with Range/If-Range from the last byte received (a plain GET "
        "when the reset came before any byte was read); every event lands once",
        a_reset_mid_archive_is_resumed,
    ),
    Row(
        "street_manager",
        "malformed record",
        "members that are not JSON, lack event_reference (the key) or have an unreadable "
        "event_time are quarantined with the reason; every good event lands; the fixed "
        "republication re-lands without the stale quarantine",
        malformed_records_are_quarantined,
    ),
    Row(
        "street_manager",
        "empty month (archive with no events), first landing",
        "lands an empty block with the part's schema and events = 0 in the manifest; the "
        "republished month then lands whole",
        an_empty_archive_lands_an_empty_month,
    ),
    Row(
        "street_manager",
        "empty month: archive not published (404)",
        "skipped with the reason (not published yet), nothing written; a landed month stays; "
        "once published it lands whole",
        an_archive_not_published_is_skipped,
    ),
    Row(
        "street_manager",
        "field disappears (a non-key field)",
        "every event lands; the column is null and the drift (manifest missing_fields, a "
        "log warning) names it; the follow-up restores the values",
        a_vanished_optional_field_is_reported,
    ),
    Row(
        "street_manager",
        "new field",
        "every event lands; the unknown field is kept in extras and counted in drift.new_fields",
        a_new_field_is_kept_and_reported,
    ),
    Row(
        "street_manager",
        "changed type (usrn as a JSON number)",
        "every event lands with usrn as the same digits (text, the contract's type); the "
        "change is counted in drift.type_changes",
        a_changed_type_is_converted_and_reported,
    ),
    Row(
        "street_manager",
        "401 (the archive host is anonymous: no token to expire)",
        "fails at the HEAD with HTTP 401, without retrying (no credential could help), and "
        "lands nothing; the previous landing stays",
        an_unexpected_401_fails_clearly,
    ),
]


test_street_manager_fault = matrix_test(ROWS)
