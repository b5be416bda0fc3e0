"""The fault matrix rows only SRWR has (Scotland's zipped headerless CSV behind a pre-signed URL):
a cut or damaged download fetched again with a fresh URL, quarantined lines, activities starting
after the file's period, a file not published, field drift and expired pre-signed URLs. The rows
it shares with Street Manager are in ``test_fault_matrix_archives.py``, which says how every row
checks the lake.

Each check below proves one row of ``ROWS`` (at the end) and returns what it observed; the one
test, ``test_srwr_fault`` (``archive_faults.matrix_test``), runs every row through ``run_row``.
"""

from __future__ import annotations

from functools import partial

import pyarrow.parquet as pq
import pytest
from archive_faults import SRWR_ACTIVITIES, SRWR_MONTH, SRWR_TODAY, folder_bytes, matrix_test, server, step2, timeline  # noqa: F401 - fixtures
from fault_checks import assert_no_partial, landed_keys
from fault_rows import Row

from civic_pipelines.sources import srwr as srwr_source


def a_reset_mid_download_is_retried(scot, lake, fx) -> str:
    seen = timeline(fx.monkeypatch, scot.server)
    scot.arm_after_probe(reset_mid_page=1)
    manifest = scot.run(lake)
    assert manifest["url_attempts"] == 2
    rows = scot.exact(lake)
    return (
        f"download attempts {manifest['url_attempts']} (step 2 {[e['status'] for e in step2(seen)]}); "
        f"{rows} activities and every table exact"
    )


def a_damaged_file_is_fetched_again_once(fault, scot, lake, fx) -> str:
    seen = timeline(fx.monkeypatch, scot.server)
    scot.arm_after_probe(**{fault: 1})
    manifest = scot.run(lake)
    assert manifest["url_attempts"] == 2
    rows = scot.exact(lake)
    return f"download attempts 2 (step 2 {[e['status'] for e in step2(seen)]}); {rows} activities and every table exact"


def malformed_lines_are_quarantined(scot, lake, fx) -> str:
    month = "2023-01"  # the broken lines belong to the file's first activity
    manifest = scot.run_faulted(lake, {"malformed_row": 1}, month)
    quarantine = pq.read_table(scot.folder(lake, month) / "quarantine.parquet")
    assert quarantine.num_rows == manifest["quarantined"] == 2  # undated activities land (January)
    reasons = set(quarantine["_reason"].to_pylist())
    assert "record type 007 needs at least 13 fields, got 6" in reasons
    assert any(r.startswith("unparseable start_date/start_time 'not-a-date'") for r in reasons)
    rows = scot.exact(lake, month)
    again = scot.run(lake, month)
    assert not again["skipped"] and again["quarantined"] == 0
    assert not (scot.folder(lake, month) / "quarantine.parquet").exists()
    scot.exact(lake, month)
    return f"{rows} activities landed, 2 malformed lines quarantined; follow-up 0 quarantined, every table exact"


def activities_whose_works_start_after_the_file_land(month, identifier, scot, lake, fx) -> str:
    """Issue 14 item 3: a third of a month file's activities start after the month; they were
    quarantined (``start outside the file's period``) and no later file lists them again."""
    scot.post("config", {"srwr": {"activities_per_month": 301, "late_start_share": 0.35, "undated_share": 0.0}})
    manifest = scot.run(lake, month)
    want = scot.server.srwr.expected_month(month, identifier)
    listed = scot.server.srwr.activities(int(month[:4]), int(month[5:]))
    late = [a for a in listed if a["first_start"] and f"{a['first_start']:%Y-%m}" > month]
    assert late and manifest["quarantined"] == 0
    rows = scot.exact(lake, month, identifier)
    data = pq.read_table(scot.folder(lake, month) / "data.parquet")
    after = [r for r in data.to_pylist() if r["placement"] == "after_period"]
    if identifier == "MAR":
        assert rows == len(listed) == 301 and len(after) == len(late)
    else:  # December of a year file: those of every month of the year that start in the next year
        assert {r["activity_id"] for r in after} >= {a["id"] for a in late if a["first_start"].year > 2023}
    directory = pq.read_table(scot.folder(lake, month) / "district_directory.parquet")
    keys = sorted({f"{f[3]}-{f[4]}" for f in want["099"]})
    assert set(keys) <= set(directory["district_key"].to_pylist())
    assert directory.num_rows == len(set(directory["district_key"].to_pylist()))
    return (
        f"{rows} activities landed ({len(after)} starting after the period), 0 quarantined "
        f"(before: {len(after)} quarantined); {directory.num_rows} district keys in "
        "district_directory"
    )


def an_empty_export_lands_an_empty_month(scot, lake, fx) -> str:
    manifest = scot.run_faulted(lake, {"empty_month": 1})
    assert manifest["rows"] == manifest["file_lines"] == 0 and set(manifest["tables"].values()) == {0}
    assert not scot.run(lake)["skipped"]
    return f"0 rows in 6 tables; follow-up {scot.exact(lake)} activities, every table exact"


def a_file_not_published_is_skipped(scot, lake, fx) -> str:
    month = "2026-10"  # the OCT month file
    first = scot.run(lake, month)
    before = folder_bytes(scot.folder(lake, month))
    scot.post("config", {"srwr": {"today": "2026-10-02"}})  # the file is not (or no longer) there
    skipped = scot.run(lake, month)
    assert skipped["skipped"] and "404" in skipped["reason"] and "'OCT'" in skipped["reason"]
    assert folder_bytes(scot.folder(lake, month)) == before
    scot.post("config", {"srwr": {"today": SRWR_TODAY}})
    assert scot.run(lake, month)["skipped"] and scot.exact(lake, month) == first["rows"]
    return f"skipped: {skipped['reason'][:70]}...; {first['rows']} activities intact"


def a_vanished_last_field_quarantines_the_lines(scot, lake, fx) -> str:
    """The district line's last field (099 row[5]) gone: too few fields. The other vanished columns
    fail the block: ``test_fault_matrix_archives.test_a_fault_that_fails_the_block_keeps_the_landing``."""
    scot.post("config", {"srwr": {"fault_options": {"drop_field": {"record_type": "099", "position": 5}}}})
    manifest = scot.run_faulted(lake, {"drop_field": 1})
    want = scot.server.srwr.expected_month(SRWR_MONTH)
    assert manifest["quarantined"] == len(want["099"]) and manifest["tables"]["district"] == 0
    assert manifest["quarantine_reasons"] == {"record type 099 needs at least 6 fields, got 5": len(want["099"])}
    assert landed_keys(lake, "srwr", SRWR_MONTH) == sorted(f[2] for f in want["001"])
    again = scot.run(lake)
    assert not again["skipped"] and again["quarantined"] == 0
    return (
        f"{manifest['quarantined']} district lines quarantined, {manifest['rows']} activities "
        f"landed; follow-up {scot.exact(lake)}, every table exact"
    )


def a_new_trailing_field_is_kept(scot, lake, fx) -> str:
    manifest = scot.run_faulted(lake, {"new_field": 1})
    phase = pq.read_table(scot.folder(lake) / "phase.parquet").to_pylist()
    assert all(r["raw_fields"][-1] == "replay-new-field" for r in phase)
    assert manifest["file_field_counts"]["001"] == {"15": 12 * SRWR_ACTIVITIES}
    documented = ["raw_fields", "field_count", "_landed_at"]  # dropped: what is left is documented
    faulted = pq.read_table(scot.folder(lake) / "data.parquet").drop(documented)
    again = scot.run(lake)
    assert not again["skipped"] and again["file_field_counts"]["001"] == {"14": 12 * SRWR_ACTIVITIES}
    rows = scot.exact(lake)
    assert pq.read_table(scot.folder(lake) / "data.parquet").drop(documented).equals(faulted)
    return (
        f"{manifest['rows']} activities, documented columns equal to the normal file's, "
        f"001 width 15 vs 14; follow-up {rows}, every table exact"
    )


def a_changed_date_format_reads_the_same(scot, lake, fx) -> str:
    manifest = scot.run_faulted(lake, {"retype_field": 1})
    columns = ["activity_id", "phase_number", "start_at", "end_at"]
    faulted = pq.read_table(scot.folder(lake) / "undertaker_phase.parquet")
    assert all("/" in d for d in faulted["start_date"].to_pylist())
    assert not scot.run(lake)["skipped"]
    rows = scot.exact(lake)
    normal = pq.read_table(scot.folder(lake) / "undertaker_phase.parquet")
    assert faulted.select(columns).equals(normal.select(columns)) and manifest["rows"] == rows
    return (
        f"{rows} activities, {normal.num_rows} undertaker phases with identical start/end; follow-up every table exact"
    )


def an_expired_presigned_url_is_replaced(scot, lake, fx) -> str:
    seen = timeline(fx.monkeypatch, scot.server)
    scot.arm_after_probe(config={"srwr": {"expire_next_urls": 1}})
    manifest = scot.run(lake)
    statuses = [e["status"] for e in step2(seen)]
    assert statuses == [206, 403, 200] and manifest["url_attempts"] == 2
    return f"step 2 {statuses}; url_attempts 2; {scot.exact(lake)} activities, every table exact"


def urls_that_keep_expiring_fail_and_keep_the_landing(scot, lake, fx) -> str:
    first = scot.run(lake)
    before = folder_bytes(scot.folder(lake))
    scot.post("config", {"srwr": {"late_edits": {"month": SRWR_MONTH, "n": 3}}})
    scot.arm_after_probe(config={"srwr": {"expire_next_urls": 4}})
    with pytest.raises(srwr_source.SrwrError, match="no usable download after 4 .*403 AccessDenied") as raised:
        scot.run(lake)
    assert folder_bytes(scot.folder(lake)) == before
    assert_no_partial(lake, "srwr", SRWR_MONTH)
    fx.monkeypatch.undo()  # the probe as it is, the connection too: set it again
    scot.connect()
    again = scot.run(lake)
    assert not again["skipped"] and again["watermark"] != first["watermark"]
    scot.exact(lake)
    return f"failed: {str(raised.value)[:100]}...; previous landing intact; follow-up exact"


DAMAGED = (
    "the damaged zip is detected (cut short / CRC-32 or inflate fails), nothing is landed "
    "from it, and a fresh URL's download lands every record once"
)
AFTER_THE_PERIOD = (
    "every activity the file lists lands: a month file's block is all of it, a year "
    "file's last month takes those starting after the year (placement after_period); "
    "nothing is quarantined for its start date; districts land in district_directory, "
    "one row per district key"
)

# (fault, expected, check[, test id]): every SRWR-only row of docs/reliability.md
ROWS = [
    Row(
        "srwr",
        "connection reset mid-archive",
        "the cut download is fetched again with a fresh pre-signed URL; every record lands once",
        a_reset_mid_download_is_retried,
    ),
    Row(
        "srwr",
        "truncated archive (one download)",
        DAMAGED,
        partial(a_damaged_file_is_fetched_again_once, "truncate_archive"),
        "a_damaged_file_is_fetched_again_once-truncate_archive",
    ),
    Row(
        "srwr",
        "corrupt archive (one download)",
        DAMAGED,
        partial(a_damaged_file_is_fetched_again_once, "corrupt_archive"),
        "a_damaged_file_is_fetched_again_once-corrupt_archive",
    ),
    Row(
        "srwr",
        "malformed record",
        "a line with too few fields and one with an unparseable start date are quarantined "
        "with the reason; the rest of the month lands, the activity too (its good lines date "
        "it); the fixed file re-lands without the stale quarantine",
        malformed_lines_are_quarantined,
    ),
    Row(
        "srwr",
        "activities whose works start after the file's period (MAR file)",
        AFTER_THE_PERIOD,
        partial(activities_whose_works_start_after_the_file_land, "2026-03", "MAR"),
        "activities_whose_works_start_after_the_file_land-2026-03-MAR",
    ),
    Row(
        "srwr",
        "activities whose works start after the file's period (2023 file)",
        AFTER_THE_PERIOD,
        partial(activities_whose_works_start_after_the_file_land, "2023-12", "2023"),
        "activities_whose_works_start_after_the_file_land-2023-12-2023",
    ),
    Row(
        "srwr",
        "empty month (export with no lines), first landing",
        "lands an empty block (every table, 0 rows; file_lines 0 in the manifest); the "
        "republished file then lands the month whole",
        an_empty_export_lands_an_empty_month,
    ),
    Row(
        "srwr",
        "empty month: file not published (404)",
        "skipped with the reason (404 from step 1), nothing written; a landed month stays",
        a_file_not_published_is_skipped,
    ),
    Row(
        "srwr",
        "field disappears (099 row[5])",
        "every district line is quarantined (too few fields) with the reason, the rest lands; "
        "the follow-up lands the month whole",
        a_vanished_last_field_quarantines_the_lines,
    ),
    Row(
        "srwr",
        "new field",
        "every record lands with its documented columns unchanged; the extra field stays in "
        "raw_fields and the widths in file_field_counts show it",
        a_new_trailing_field_is_kept,
    ),
    Row(
        "srwr",
        "changed type (008 dates DD/MM/YYYY, times HHMM)",
        "every record lands; start_at/end_at equal the normal file's (the text is kept as "
        "published); no month assignment changes",
        a_changed_date_format_reads_the_same,
    ),
    Row(
        "srwr",
        "expired token: an expired pre-signed URL (the API is anonymous)",
        "the 403 AccessDenied (request has expired) makes the client ask step 1 for a fresh "
        "URL; every record lands once",
        an_expired_presigned_url_is_replaced,
    ),
    Row(
        "srwr",
        "expired pre-signed URL, every time",
        "after 4 URLs the block fails naming 403 AccessDenied, lands nothing; the previous "
        "landing stays; the follow-up lands the month whole",
        urls_that_keep_expiring_fail_and_keep_the_landing,
    ),
]


test_srwr_fault = matrix_test(ROWS)
