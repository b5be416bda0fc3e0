"""The SODA client and the Seattle contract, against the replay server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest
import requests

from civic_pipelines import sources
from civic_pipelines.connections import resolve
from civic_pipelines.extract import run_block
from civic_pipelines.http import make_session
from civic_pipelines.sources.base import SchemaDriftError

sc = sources.get("seattle_crime")

MONTH = "2024-02"


def control(server, path, body=None):
    response = requests.post(f"{server.url}/_replay/{path}", json=body or {}, timeout=10)
    response.raise_for_status()


def logged_requests(server, prefix="/resource/"):
    entries = requests.get(f"{server.url}/_replay/requests", timeout=10).json()
    paths = [
        entry
        if isinstance(entry, str)
        else entry.get("path", "") + ("?" + entry["query"] if entry.get("query") else "")
        for entry in entries
    ]
    return [p for p in paths if p.startswith(prefix)]


def want_ids(server, month=MONTH):
    return {int(row["offense_id"]) for row in server.dataset.rows_for_month(month)}


def landed(lake, month=MONTH, name="data.parquet"):
    return pq.read_table(Path(lake) / "seattle_crime" / f"month={month}" / name)


def test_where_bounds_take_the_first_and_last_instant_of_the_month():
    params = sc.page_params("A", "2024-01", 0)
    assert (
        params["$where"]
        == "report_datetime >= '2024-01-01T00:00:00.000' AND report_datetime < '2024-02-01T00:00:00.000'"
    )
    assert params["$order"] == ":id" and params["$limit"] == "50000" and params["$offset"] == "0"
    assert sc.page_params("B", "2024-12", 100_000)["$where"].startswith(
        "report_date_time >= '2024-12-01T00:00:00.000' AND report_date_time < '2025-01-01"
    )


def test_paging_requests_exact_pages_and_stops_on_the_short_page(seattle_conn):
    server = seattle_conn
    control(server, "reset")
    connection = resolve("civic_seattle_crime", sc.SPEC.default_base_url)
    total = len(server.dataset.rows_for_month(MONTH))
    page = 2000
    with make_session() as session:
        pages = [
            p.to_table(sorted(sc.wire_names("A"))).to_pylist()
            for p in sc.iter_pages(session, connection.base_url, "A", MONTH, page_size=page)
        ]
    assert sum(len(p) for p in pages) == total
    assert [len(p) for p in pages[:-1]] == [page] * (len(pages) - 1) and len(pages[-1]) < page
    offsets = [int(parse_qs(urlsplit(p).query)["$offset"][0]) for p in logged_requests(server)]
    assert offsets == list(range(0, page * len(pages), page))
    ids = [row["offense_id"] for p in pages for row in p]
    assert len(ids) == len(set(ids)) == total


def test_block_lands_exactly_the_month_with_a_manifest(seattle_conn, lake):
    server = seattle_conn
    manifest = run_block("seattle_crime", MONTH, lake=lake)
    table = landed(lake)
    assert set(table["offense_id"].to_pylist()) == want_ids(server)
    assert manifest["rows"] == table.num_rows == len(want_ids(server))
    assert manifest["quarantined"] == 0 and manifest["skipped"] is False
    assert manifest["watermark"] == str(server.dataset.rows_updated_at)
    assert len(manifest["sha256"]) == 64 and manifest["bytes"] > 0 and manifest["seconds"] > 0
    assert manifest["schema"] == "A" and manifest["duplicates_collapsed"] == 0
    reports = table["report_datetime"].to_pylist()
    assert min(reports) >= datetime(2024, 2, 1) and max(reports) < datetime(2024, 3, 1)
    assert table.schema.equals(sc.DATA_SCHEMA)
    again = run_block("seattle_crime", MONTH, lake=lake)
    assert again["skipped"] is True and "unchanged" in again["reason"]
    forced = run_block("seattle_crime", MONTH, lake=lake, force=True)
    assert forced["skipped"] is False and forced["sha256"] == manifest["sha256"]


def test_429_with_retry_after_is_honoured(seattle_conn, lake):
    server = seattle_conn
    control(server, "faults", {"status_429": 2, "retry_after": 1})
    started = time.monotonic()
    manifest = run_block("seattle_crime", MONTH, lake=lake)
    waited = time.monotonic() - started
    assert manifest["rows"] == len(want_ids(server))
    assert waited >= 2.0, f"two Retry-After: 1 answers must cost at least 2 s, took {waited:.2f}"


def test_burst_of_503_then_success(seattle_conn, lake):
    server = seattle_conn
    control(server, "faults", {"status_503": 3})
    assert run_block("seattle_crime", MONTH, lake=lake)["rows"] == len(want_ids(server))


def test_connection_reset_mid_page_repeats_the_page(seattle_conn, lake):
    server = seattle_conn
    control(server, "reset")
    control(server, "faults", {"reset_mid_page": 1})
    manifest = run_block("seattle_crime", MONTH, lake=lake)
    assert set(landed(lake)["offense_id"].to_pylist()) == want_ids(server)
    assert manifest["rows"] == len(want_ids(server))


def test_malformed_rows_go_to_quarantine_with_the_reason(seattle_conn, lake):
    server = seattle_conn
    control(server, "faults", {"malformed_row": 1})
    manifest = run_block("seattle_crime", MONTH, lake=lake)
    assert manifest["rows"] == len(want_ids(server))
    quarantine = landed(lake, name="quarantine.parquet")
    reasons = sorted(quarantine["_reason"].to_pylist())
    assert manifest["quarantined"] == quarantine.num_rows == 2
    assert reasons == ["missing offense_id", "unparseable report_datetime"]
    assert manifest["quarantine_reasons"] == {"missing offense_id": 1, "unparseable report_datetime": 1}


def test_duplicate_keys_are_collapsed_keeping_the_latest_report(seattle_conn, lake):
    server = seattle_conn
    control(server, "faults", {"duplicate_row": 1})
    manifest = run_block("seattle_crime", MONTH, lake=lake)
    table = landed(lake)
    assert manifest["duplicates_collapsed"] == 1
    assert table.num_rows == len(set(table["offense_id"].to_pylist())) == len(want_ids(server))


def test_schema_b_maps_onto_the_same_contract(seattle_conn, lake):
    server = seattle_conn
    control(server, "config", {"seattle_crime": {"schema": "B"}})
    manifest = run_block("seattle_crime", MONTH, lake=lake, force=True)
    table = landed(lake)
    assert manifest["schema"] == "B"
    assert set(table["offense_id"].to_pylist()) == want_ids(server)
    assert set(table["source_schema"].to_pylist()) == {"B"}
    assert table["offense_end_datetime"].null_count == table.num_rows
    assert set(table["precinct"].drop_null().to_pylist()) <= {"North", "East", "South", "West", "Southwest", "OOJ"}
    assert table["neighborhood"].null_count < table.num_rows


def test_schema_detection_and_drift():
    assert sc.detect_schema({"report_datetime", "offense_id"}) == "A"
    assert sc.detect_schema({"report_date_time", "offense_id"}) == "B"
    with pytest.raises(SchemaDriftError, match="required field gone"):
        sc.detect_schema({"offense_id", "beat"})
    drift = sc.schema_drift("A", sc.wire_names("A") - {"beat"} | {"new_thing"})
    assert drift == {"new_fields": ["new_thing"], "missing_fields": ["beat"]}
    with pytest.raises(SchemaDriftError, match="offense_id"):
        sc.schema_drift("A", sc.wire_names("A") - {"offense_id"})


def test_validation_rules_in_one_page():
    rows = [
        {"offense_id": "1", "report_datetime": "2024-02-01T00:00:00.000", "longitude": "0", "latitude": "0"},
        {"offense_id": "2", "report_datetime": "2024-02-29T23:59:59.999", "longitude": "-122.3", "latitude": "47.6"},
        {"offense_id": "x3", "report_datetime": "2024-02-10T10:00:00.000"},
        {"report_datetime": "2024-02-10T10:00:00.000"},
        {"offense_id": "5"},
        {"offense_id": "6", "report_datetime": "2024-02-30T10:00:00.000"},
        {"offense_id": "7", "report_datetime": "2024-03-01T00:00:00.000"},
    ]
    good, quarantine, stats = sc.validate(sc.rows_to_columns(rows, "A"), "A", MONTH, datetime.now(UTC))
    assert good["offense_id"].to_pylist() == [1, 2]
    assert good["longitude"].to_pylist() == [None, -122.3], "0/0 is a withheld location, not a point"
    assert stats["withheld_locations"] == 1
    assert dict(zip(quarantine["offense_id"].to_pylist(), quarantine["_reason"].to_pylist())) == {
        "x3": "offense_id is not an integer",
        None: "missing offense_id",
        "5": "missing report_datetime",
        "6": "unparseable report_datetime",
        "7": f"report_datetime outside block {MONTH}",
    }


def test_cli_prints_the_manifest_last_and_fails_in_one_line(seattle_conn, lake):
    def extract(source: str, month: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "civic_pipelines.cli", "extract", "--source", source, "--month", month, *options],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[1],
        )

    result = extract("seattle_crime", MONTH, "--lake", lake)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout.strip().splitlines()[-1])
    assert manifest["rows"] == len(want_ids(seattle_conn)) and manifest["month"] == MONTH
    bad = extract("nowhere", MONTH)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown source 'nowhere'" in bad.stderr
    dry = extract("seattle_crime", "2023-03", "--lake", lake, "--dry-run")
    assert json.loads(dry.stdout.strip().splitlines()[-1])["skipped"] is True
    assert not (Path(lake) / "seattle_crime" / "month=2023-03").exists()


def test_a_moved_watermark_relands_changed_blocks_and_counts_the_changed_rows(seattle_conn, lake):
    from civic_pipelines.lake import BlockLocation, read_manifest

    server = seattle_conn
    first = run_block("seattle_crime", MONTH, lake=lake)
    assert first["rows_changed"] is None, "nothing to compare on a first landing"
    server.dataset.apply_late_edits(MONTH, 4)
    second = run_block("seattle_crime", MONTH, lake=lake)
    assert second["skipped"] is False and second["sha256"] != first["sha256"]
    assert second["rows_changed"] == {"added": 0, "removed": 0, "changed": 4}
    # The dataset-wide watermark moves for an edit elsewhere; this block's content does not.
    server.dataset.apply_late_edits("2024-03", 2)
    third = run_block("seattle_crime", MONTH, lake=lake)
    assert third["skipped"] is True and "content unchanged" in third["reason"]
    manifest = read_manifest(BlockLocation(lake, "seattle_crime", MONTH))
    assert manifest["watermark"] == str(server.dataset.rows_updated_at) and manifest["sha256"] == second["sha256"]
    assert run_block("seattle_crime", MONTH, lake=lake)["reason"].startswith("source unchanged")
