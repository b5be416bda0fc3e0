"""SRWR: the two-step export API client, the planner's identifiers, the record-type decoder and
whole blocks against the replay server."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from civic_pipelines import sources
from civic_pipelines.connections import SourceConnection, resolve
from civic_pipelines.extract import run_block
from civic_pipelines.http import make_session
from civic_pipelines.sources import srwr
from civic_pipelines.sources.base import NotPublished

TODAY = "2026-11-23"
ACTIVITIES = 40
LANDED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TABLES = ("phase", "undertaker_phase", "site", "district", "unknown_records")
TABLE_OF_TYPE = {"001": "data", "007": "phase", "008": "undertaker_phase", "010": "site", "099": "district"}


def configure(server, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"srwr": body}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["srwr"]


@pytest.fixture
def server(replay, point_at_replay):
    requests.post(f"{replay.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(replay, {"today": TODAY, "activities_per_month": ACTIVITIES})
    return point_at_replay(replay, "civic_srwr", extra={"today": TODAY})


def connection():
    return resolve(srwr.SPEC.conn_id, srwr.SPEC.default_base_url)


def requests_log(server) -> list[dict]:
    return requests.get(f"{server.url}/_replay/requests", params={"detail": 1}, timeout=10).json()


def step1(entries, identifier=None):
    return [
        e
        for e in entries
        if e["path"].startswith("/export/api/v1/file/")
        and (identifier is None or e["path"].endswith(f"/{identifier}.zip"))
    ]


def step2(entries):
    return [e for e in entries if e["path"].startswith("/srwr-exports/")]


def landed(lake: str, month: str, name: str = "data"):
    return pq.read_table(Path(lake) / "srwr" / f"month={month}" / f"{name}.parquet")


def zipped(text: str, name: str = "2023.csv") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text.encode("utf-8"))
    return buffer.getvalue()


def pieces(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


def line(record_type: str, activity_id: str, values: dict[int, str], width: int) -> str:
    fields = [""] * width
    fields[0], fields[1], fields[2] = "1", record_type, activity_id
    for position, value in values.items():
        fields[position] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue()


def undertaker(activity_id: str, start: str, time_of_day: str = "08:00", phase: str = "1", tm: str = "6") -> str:
    return line("008", activity_id, {3: phase, 4: start, 6: time_of_day, 8: "", 9: "", 20: tm, 21: "N"}, 22)


# ---------------------------------------------------------------- registry and spec


def test_the_source_is_registered_with_its_contract():
    source = sources.get("srwr")
    assert source is srwr
    spec = source.SPEC
    assert (spec.name, spec.conn_id, spec.default_base_url, spec.dbt_tag) == (
        "srwr",
        "civic_srwr",
        "https://downloads.srwr.scot",
        "srwr",
    )
    assert spec.natural_key == "activity_id" and spec.first_month == "2020-01" and not spec.parts
    assert srwr.auth_headers(SourceConnection("civic_srwr", "https://downloads.srwr.scot", password="x")) == {}
    for name, schema in srwr.SCHEMAS.items():
        assert schema.names[-2:] == ["_block_month", "_landed_at"], name


# ---------------------------------------------------------------- the planner


@pytest.mark.parametrize(
    "month, today, identifier",
    [
        ("2023-05", "2026-11-23", "2023"),
        ("2020-01", "2026-11-23", "2020"),
        ("2025-12", "2026-11-23", "2025"),
        ("2026-01", "2026-11-23", "JAN"),
        ("2026-03", "2026-11-23", "MAR"),
        ("2026-10", "2026-11-23", "OCT"),
        ("2026-12", "2027-01-01", "2026"),  # the year turned: December is in last year's file
    ],
)
def test_year_vs_month_identifiers(month, today, identifier):
    assert srwr.identifier_for(month, date.fromisoformat(today)) == identifier


@pytest.mark.parametrize("month, words", [("2026-11", "current month"), ("2026-12", "future"), ("2027-03", "future")])
def test_months_not_over_are_not_published(month, words):
    with pytest.raises(NotPublished, match=words):
        srwr.identifier_for(month, date(2026, 11, 23))


def test_today_comes_from_the_connection_extra(server):
    assert srwr.today_for(connection()) == date(2026, 11, 23)


# ---------------------------------------------------------------- month assignment (read_file)


def test_a_year_file_feeds_each_month_its_own_activities_and_lands_every_activity():
    """Issue 14 item 3: an activity dated before or after the file's period, or not dated at all,
    lands (the file's first or last month) instead of being quarantined and lost."""
    text = "".join(
        [
            line("001", "JAN", {5: "1", 11: "2"}, 12),
            undertaker("JAN", "2023-02-02", phase="2"),  # a later phase first in the file: the earliest start wins
            undertaker("JAN", "2023-01-31", phase="1"),
            line("555", "JAN", {3: "x"}, 4),
            line("001", "FEB", {5: "1", 11: "1"}, 12),
            undertaker("FEB", "2023-02-10"),
            line("001", "UNDATED", {5: "1", 11: "1"}, 12),
            line("099", "UNDATED", {3: "1", 4: "2", 5: "Fife Council"}, 6),
            line("001", "EARLY", {5: "1", 11: "1"}, 12),
            undertaker("EARLY", "2022-12-30"),
            line("001", "LATE", {5: "1", 11: "1"}, 12),
            undertaker("LATE", "2024-01-02"),
            "1,007\r\n",  # no activity id: quarantined in the file's first month
        ]
    )
    body = zipped(text)
    blocks = {
        m: srwr.read_file(pieces(body, 5), m, "2023", date(2026, 11, 23), LANDED)
        for m in ("2023-01", "2023-02", "2023-12")
    }
    january, february, december = blocks["2023-01"], blocks["2023-02"], blocks["2023-12"]
    assert january.data.select(["activity_id", "placement"]).to_pylist() == [
        {"activity_id": "EARLY", "placement": "before_period"},
        {"activity_id": "JAN", "placement": "start"},
        {"activity_id": "UNDATED", "placement": "undated"},
    ]
    assert january.data["first_start_at"].to_pylist() == [
        datetime(2022, 12, 30, 8, 0),
        datetime(2023, 1, 31, 8, 0),
        None,
    ]
    assert january.tables["undertaker_phase"]["phase_number"].to_pylist() == [1, 2, 1]  # file order kept per activity
    assert january.tables["undertaker_phase"]["traffic_management_type_code"].to_pylist() == ["06", "06", "06"]
    assert january.tables["unknown_records"].select(["record_type", "activity_id", "raw_line"]).to_pylist() == [
        {"record_type": "555", "activity_id": "JAN", "raw_line": "1,555,JAN,x"}
    ]
    assert january.tables["district"].select(["activity_id", "district_key_1", "organisation_name"]).to_pylist() == [
        {"activity_id": "UNDATED", "district_key_1": "1", "organisation_name": "Fife Council"}
    ]
    assert february.data["activity_id"].to_pylist() == ["FEB"] and february.quarantine is None
    assert {(r["activity_id"], r["_reason"]) for r in january.quarantine.to_pylist()} == {
        (None, "2 field(s): a record needs at least 3 (row[1] record type, row[2] activity id)")
    }
    assert december.data.select(["activity_id", "placement"]).to_pylist() == [
        {"activity_id": "LATE", "placement": "after_period"}
    ]
    assert december.quarantine is None
    assert january.stats["file_activities_by_placement"] == {
        "after_period": 1,
        "before_period": 1,
        "start": 2,
        "undated": 1,
    }
    for month, block in blocks.items():
        for table in [block.data, *block.tables.values()] + ([block.quarantine] if block.quarantine else []):
            assert set(table["_block_month"].to_pylist()) <= {month}
    # Every line of the file lands or is quarantined in exactly one of the twelve blocks, and every
    # activity lands in one (the district directory is the file's, repeated in each block).
    total, activities = 0, []
    for month in [f"2023-{m:02d}" for m in range(1, 13)]:
        block = srwr.read_file(pieces(body, 1 << 20), month, "2023", date(2026, 11, 23), LANDED)
        total += block.data.num_rows + sum(t.num_rows for n, t in block.tables.items() if n != "district_directory")
        total += block.quarantine.num_rows if block.quarantine is not None else 0
        activities += block.data["activity_id"].to_pylist()
        assert block.tables["district_directory"]["district_key"].to_pylist() == ["1-2"]
    assert total == text.count("\r\n")
    assert sorted(activities) == ["EARLY", "FEB", "JAN", "LATE", "UNDATED"]


def test_a_month_file_lands_activities_whose_works_start_after_it():
    """Issue 14 item 3, the month-file case: an activity listed in MAR whose first phase starts in
    May was quarantined (``start outside the file's period``) and never listed again; now the
    month file's period is its block, so every activity it lists lands in it."""
    text = "".join(
        [
            line("001", "IN", {5: "1", 11: "1"}, 12),
            undertaker("IN", "2026-03-04"),
            line("001", "AHEAD", {5: "1", 11: "1"}, 12),
            undertaker("AHEAD", "2026-05-19"),
            line("001", "PAST", {5: "1", 11: "1"}, 12),
            undertaker("PAST", "2026-02-27"),
        ]
    )
    block = srwr.read_file([zipped(text, "MAR.csv")], "2026-03", "MAR", date(2026, 11, 23), LANDED)
    assert block.quarantine is None
    assert block.data.select(["activity_id", "placement"]).to_pylist() == [
        {"activity_id": "AHEAD", "placement": "after_period"},
        {"activity_id": "IN", "placement": "start"},
        {"activity_id": "PAST", "placement": "before_period"},
    ]
    assert block.tables["undertaker_phase"]["start_at"].to_pylist() == [
        datetime(2026, 5, 19, 8),
        datetime(2026, 3, 4, 8),
        datetime(2026, 2, 27, 8),
    ]


def test_district_records_land_in_a_directory_keyed_by_district():
    """Issue 14 item 3: district records (``099``) land in ``district_directory``, one row per key,
    whether an activity lists them or they stand alone (no activity id, or an id with no other
    record), besides the per-activity ``district`` table."""
    text = "".join(
        [
            line("001", "A1", {5: "1", 11: "1"}, 12),
            undertaker("A1", "2023-04-02"),
            line("099", "A1", {3: "9005", 4: "01", 5: "City of Edinburgh Council"}, 6),
            line("001", "A2", {5: "1", 11: "1"}, 12),
            undertaker("A2", "2023-09-12"),
            line("099", "A2", {3: "9005", 4: "01", 5: "City of Edinburgh Council"}, 6),
            line("099", "", {3: "9016", 4: "02", 5: "Glasgow City Council"}, 6),
            line("099", "D9017", {3: "9017", 4: "01", 5: "Highland Council"}, 6),
        ]
    )
    body = zipped(text)
    april = srwr.read_file([body], "2023-04", "2023", date(2026, 11, 23), LANDED)
    june = srwr.read_file([body], "2023-06", "2023", date(2026, 11, 23), LANDED)
    for block in (april, june):
        directory = block.tables["district_directory"]
        assert directory.select(
            ["district_key", "organisation_name", "record_count", "activity_count"]
        ).to_pylist() == [
            {
                "district_key": "9005-01",
                "organisation_name": "City of Edinburgh Council",
                "record_count": 2,
                "activity_count": 2,
            },
            {
                "district_key": "9016-02",
                "organisation_name": "Glasgow City Council",
                "record_count": 1,
                "activity_count": 0,
            },
            {
                "district_key": "9017-01",
                "organisation_name": "Highland Council",
                "record_count": 1,
                "activity_count": 1,
            },
        ]
        assert block.quarantine is None
    assert april.tables["district"]["activity_id"].to_pylist() == ["A1"]
    assert april.data["activity_id"].to_pylist() == ["A1"]  # a lone district is not an activity
    assert june.data.num_rows == 0
    january = srwr.read_file([body], "2023-01", "2023", date(2026, 11, 23), LANDED)
    assert january.data.num_rows == 0 and january.quarantine is None
    assert january.stats["district_records_without_activity"] == 2


def test_the_parse_does_not_depend_on_how_the_bytes_arrive():
    text = "".join(
        line("001", f"A{i}", {5: "1", 11: "1"}, 12) + undertaker(f"A{i}", f"2023-03-{i + 1:02d}", tm=str(i % 10))
        for i in range(20)
    )
    body = zipped(text)
    whole = srwr.read_file([body], "2023-03", "2023", date(2026, 11, 23), LANDED)
    for size in (1, 13, 4096):
        again = srwr.read_file(pieces(body, size), "2023-03", "2023", date(2026, 11, 23), LANDED)
        assert again.data.equals(whole.data)
        assert all(again.tables[name].equals(whole.tables[name]) for name in TABLES)


# ---------------------------------------------------------------- against the replay server


def test_two_step_fetch(server):
    conn = connection()
    with make_session(srwr.auth_headers(conn)) as session:
        signed = srwr.presigned_url(session, conn, "2023")
        assert signed.startswith(f"{server.url}/srwr-exports/2023.zip?") and "X-Amz-Signature=" in signed
        probed = srwr.probe(session, conn, month="2023-04")
    entries = requests_log(server)
    assert [e["path"] for e in entries] == [
        "/export/api/v1/file/2023.zip",
        "/export/api/v1/file/2023.zip",
        "/srwr-exports/2023.zip",
    ]
    assert entries[-1]["status"] == 206  # the probe reads one byte
    body, etag, _ = server.srwr.file("2023")
    assert probed["identifier"] == "2023" and probed["etag"] == etag and probed["size"] == len(body)
    assert probed["watermark"].startswith(f"2023|etag={etag}|last-modified=Mon, 01 Jan 2024 03:00:00 GMT")


def test_run_block_lands_exactly_the_generated_rows_per_table(server, lake):
    # enough activities without an 008, and whose works start after their month, in every month
    configure(server, {"undated_share": 0.1, "late_start_share": 0.35})
    dataset = server.srwr
    for month, identifier in (("2023-01", "2023"), ("2023-07", "2023"), ("2023-12", "2023"), ("2026-03", "MAR")):
        manifest = run_block("srwr", month, lake=lake)
        assert not manifest["skipped"] and manifest["identifier"] == identifier
        want = dataset.expected_month(month, identifier)
        unknown = [f for t, rows in want.items() if t not in TABLE_OF_TYPE for f in rows]
        for record_type, name in TABLE_OF_TYPE.items():
            table = landed(lake, month, name)
            rows = sorted(want.get(record_type, []), key=lambda f: f[2])  # stable: file order per activity
            assert table["raw_fields"].to_pylist() == rows, (month, name)
            assert set(table["_block_month"].to_pylist()) <= {month}
        table = landed(lake, month, "unknown_records")
        assert table["raw_fields"].to_pylist() == sorted(unknown, key=lambda f: f[2])
        assert set(table["record_type"].to_pylist()) <= {"002", "036", "041", "555"} and table.num_rows
        assert manifest["rows"] == len(want["001"]) and manifest["tables"] == {
            name: landed(lake, month, name).num_rows for name in (*TABLES, "district_directory")
        }
        # nothing is quarantined for when its works start: every listed activity lands
        assert manifest["quarantined"] == 0
        assert not (Path(lake) / "srwr" / f"month={month}" / "quarantine.parquet").exists()

        phase = landed(lake, month, "phase").to_pylist()
        for row in phase:
            assert row["work_category_code"] == row["raw_fields"][9].zfill(2)
            assert row["status_code"] == row["raw_fields"][10].zfill(2)
            assert row["phase_number"] == int(row["raw_fields"][7])
        assert any(len(row["raw_fields"][10]) == 1 for row in phase)  # the quirk was there, and is gone
        undertaker_rows = landed(lake, month, "undertaker_phase").to_pylist()
        for row in undertaker_rows:
            assert row["start_at"] == datetime.strptime(f"{row['start_date']} {row['start_time']}", "%Y-%m-%d %H:%M")
            assert row["traffic_management_type_code"] == row["raw_fields"][20].zfill(2)
        activities = landed(lake, month, "data").to_pylist()
        placements = Counter(row["placement"] for row in activities)
        if identifier == "MAR":
            # the month file's own activities, whenever their works start
            assert placements["after_period"] and placements["start"] and placements["undated"]
            assert all(f"{r['first_start_at']:%Y-%m}" > month for r in activities if r["placement"] == "after_period")
        elif month == "2023-01":
            assert placements["undated"] and set(placements) <= {"start", "undated"}
        elif month == "2023-07":
            assert set(placements) == {"start"}
            assert {f"{r['first_start_at']:%Y-%m}" for r in activities} == {month}
        else:  # December: its own and those listed in the year whose works start in 2024
            assert placements["after_period"] and placements["start"]
        directory = landed(lake, month, "district_directory")
        keys = {f"{f[3]}-{f[4]}" for f in want["099"]}
        assert keys <= set(directory["district_key"].to_pylist())
        assert directory["district_key"].to_pylist() == sorted(set(directory["district_key"].to_pylist()))


def test_the_right_identifier_is_requested(server, lake):
    for month in ("2021-06", "2026-02", "2026-10"):
        run_block("srwr", month, lake=lake)
    files = [e["path"].rsplit("/", 1)[1] for e in step1(requests_log(server))]
    assert sorted(set(files)) == ["2021.zip", "FEB.zip", "OCT.zip"]


def test_an_expired_url_is_requested_again(server, lake):
    configure(server, {"expire_next_urls": 2})
    manifest = run_block("srwr", "2023-02", lake=lake)
    assert not manifest["skipped"] and manifest["rows"] > 0
    entries = requests_log(server)
    statuses = [e["status"] for e in step2(entries)]
    assert statuses == [403, 403, 206, 200]  # two refused URLs, then the probe's byte, then the download
    assert len(step1(entries)) == 4  # a fresh pre-signed URL before every download attempt

    conn = connection()
    with make_session() as session:
        probed = srwr.probe(session, conn, month="2023-03")
        configure(server, {"expire_next_urls": 1})  # the download's first URL, after the probe
        block = srwr.extract_block(session, conn, "2023-03", probed, landed_at=LANDED)
    assert block.stats["url_attempts"] == 2 and block.data.num_rows > 0


def test_a_url_that_never_works_fails_the_block_and_lands_nothing(server, lake):
    configure(server, {"expire_next_urls": 50})
    with pytest.raises(srwr.SrwrError, match="no usable download after 4 pre-signed URLs.*403 AccessDenied"):
        run_block("srwr", "2023-02", lake=lake)
    assert not (Path(lake) / "srwr").exists()
    configure(server, {"expire_next_urls": 0})


def test_unchanged_watermark_skips_and_a_late_edit_relands(server, lake):
    first = run_block("srwr", "2023-05", lake=lake)
    again = run_block("srwr", "2023-05", lake=lake)
    assert again["skipped"] and "source unchanged" in again["reason"] and again["watermark"] == first["watermark"]
    assert len(step2(requests_log(server))) == 3  # the second run only probed

    edited = configure(server, {"late_edits": {"month": "2023-05", "n": 2}})["late_edits"][0]["activity_ids"]
    relanded = run_block("srwr", "2023-05", lake=lake)
    assert not relanded["skipped"] and relanded["watermark"] != first["watermark"]
    assert relanded["rows_changed"] == {"added": 0, "removed": 0, "changed": 0}  # the 001 rows did not change...
    phase = landed(lake, "2023-05", "phase").to_pylist()
    want = {tuple(f) for f in server.srwr.expected_month("2023-05")["007"]}
    assert {tuple(r["raw_fields"]) for r in phase} == want  # ...their phases did
    assert {r["activity_id"] for r in phase} >= set(edited)

    configure(server, {"late_edits": {"month": "2023-09", "n": 1}})  # the same year file, another month
    other = run_block("srwr", "2023-05", lake=lake)
    assert other["skipped"] and "content unchanged" in other["reason"]
    assert run_block("srwr", "2023-05", lake=lake)["reason"].startswith("source unchanged")


def test_not_yet_published_is_skipped_with_the_reason(server, lake, monkeypatch):
    current = run_block("srwr", "2026-11", lake=lake)
    assert current["skipped"] and current["reason"].startswith("not published yet: 2026-11 is the current month")
    assert requests_log(server) == []  # decided without asking
    # The API has no file yet (the replay's today is earlier than the client's): a 404 is a skip too.
    configure(server, {"today": "2026-10-02"})
    missing = run_block("srwr", "2026-10", lake=lake)
    assert missing["skipped"] and "404" in missing["reason"] and "'OCT'" in missing["reason"]
    assert not (Path(lake) / "srwr").exists()


def test_malformed_lines_are_quarantined_with_a_reason(server, lake):
    requests.post(f"{server.url}/_replay/faults", json={"malformed_row": 1}, timeout=10).raise_for_status()
    manifest = run_block("srwr", "2023-01", lake=lake)
    quarantine = pq.read_table(Path(lake) / "srwr" / "month=2023-01" / "quarantine.parquet").to_pylist()
    reasons = {r["_reason"] for r in quarantine}
    assert "record type 007 needs at least 13 fields, got 6" in reasons
    assert any(r.startswith("unparseable start_date/start_time 'not-a-date'") for r in reasons)
    assert len(quarantine) == 2  # only the broken lines: undated activities land (January)
    assert manifest["quarantine_reasons"]["record type 007 needs at least 13 fields, got 6"] == 1
    # The broken lines' activity still lands: its good lines date it.
    first = next(a for a in server.srwr.activities(2023, 1) if a["dated"])
    assert first["id"] in landed(lake, "2023-01")["activity_id"].to_pylist()


def test_a_download_cut_short_starts_again_with_a_new_url(server, lake):
    requests.post(
        f"{server.url}/_replay/faults", json={"reset_mid_page": 1, "status_503": 1}, timeout=10
    ).raise_for_status()
    manifest = run_block("srwr", "2024-02", lake=lake)
    assert not manifest["skipped"] and manifest["url_attempts"] == 2
    assert manifest["rows"] == len(server.srwr.expected_month("2024-02")["001"])
    assert [e["status"] for e in step2(requests_log(server))] == [503, 206, 200, 200]


def test_a_moved_column_fails_the_layout_check_and_a_trailing_one_does_not():
    from civic_pipelines.sources.base import SchemaDriftError

    def file(shift: bool, extra: bool = False) -> bytes:
        text = ""
        for i in range(6):
            values = {4: "1", 10: "1"} if shift else {5: "1", 11: "1"}  # promoter id and latest phase, one left
            text += line("001", f"A{i}", values, 13 if extra else 12)
            text += undertaker(f"A{i}", f"2023-03-{i + 1:02d}")
        return zipped(text)

    fine = srwr.read_file([file(False)], "2023-03", "2023", date(2026, 11, 23), LANDED)
    assert fine.data.num_rows == 6 and fine.stats["file_field_counts"]["001"] == {"12": 6}
    trailing = srwr.read_file([file(False, extra=True)], "2023-03", "2023", date(2026, 11, 23), LANDED)
    assert trailing.data.drop(["raw_fields", "field_count"]).equals(fine.data.drop(["raw_fields", "field_count"]))
    with pytest.raises(SchemaDriftError, match=r"001 promoter_id \(row\[5\]\) is empty in all 6 records"):
        srwr.read_file([file(True)], "2023-03", "2023", date(2026, 11, 23), LANDED)


def test_deflate_data_that_does_not_inflate_is_a_damaged_download():
    from civic_pipelines.http import TransientBodyError

    text = "".join(line("001", f"A{i}", {5: "1", 11: "1"}, 12) + undertaker(f"A{i}", "2023-03-02") for i in range(50))
    body = bytearray(zipped(text))
    start = 30 + len("2023.csv")
    body[start : start + 3] = b"\x07\xff\xff"  # a deflate block of the reserved type 3
    with pytest.raises(TransientBodyError, match="does not inflate|is corrupt after"):
        srwr.read_file([bytes(body)], "2023-03", "2023", date(2026, 11, 23), LANDED)
