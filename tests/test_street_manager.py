"""Street Manager (England): the archives read forward despite DfT's broken central directory,
typed and normalised, with quarantine and drift; blocks skip on an unchanged HEAD watermark and on
months not yet published; a truncated archive fails and leaves the previous landing."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from test_replay_street_manager import assert_zipfile_refuses

from civic_pipelines import sources
from civic_pipelines.extract import run_block
from civic_pipelines.replay.street_manager import ArchiveSpec, Quirks, archive_events, build_archive
from civic_pipelines.sources import street_manager as sm
from civic_pipelines.sources.base import SchemaDriftError

LANDED = datetime(2026, 1, 1, tzinfo=UTC)
SAMPLES = Path(__file__).resolve().parent / "data" / "street_manager"  # copies of shared/samples/street_manager


@pytest.fixture(scope="module")
def server(module_replay):
    """One replay server for the module; each test resets it (see ``street``)."""
    return module_replay


@pytest.fixture
def street(server, point_at_replay):
    point_at_replay(server, "civic_street_manager", offline=True)
    requests.post(f"{server.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(
        server, {"latest_month": "2024-06", "events_per_month": {"permit": 300, "activity": 40, "section_58": 15}}
    )
    return server


def configure(server, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"street_manager": body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["street_manager"]


def landed(lake, part, month, name="data.parquet"):
    return pq.read_table(Path(lake) / "street_manager" / part / f"month={month}" / name)


def read(archive: bytes, part: str = "permit", month: str = "2024-03", piece: int = 7919):
    """An archive through the reader (as the block reads it, in odd-sized pieces): data,
    quarantine (or None) and the manifest's stats."""
    reader = sm.ArchiveReader(part, month, LANDED)
    pieces = (archive[i : i + piece] for i in range(0, len(archive), piece))
    data, bad = [], []
    for batch, quarantine in reader.run(pieces):
        data.append(batch)
        if quarantine is not None:
            bad.append(quarantine)
    table = pa.concat_tables(data) if data else sm.data_schema(part).empty_table()
    return table, (pa.concat_tables(bad) if bad else None), reader.finish()


def zip_of(members: list[tuple[str, bytes]], broken_directory: bool = True) -> bytes:
    """A zip of hand-made members; with DfT's defect (the end record points at the wrong place)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members:
            archive.writestr(name, body)
    data = bytearray(buffer.getvalue())
    if broken_directory:
        end = data.rfind(b"PK\x05\x06")
        data[end + 12 : end + 16] = (1234).to_bytes(4, "little")  # the directory's size: wrong
    return bytes(data)


def sample_event(name: str) -> dict:
    return orjson.loads((SAMPLES / name).read_bytes())


# ---------------------------------------------------------------- the archive, read forward


def test_zipfile_fails_on_the_archive_but_the_reader_lands_exactly_the_generated_events():
    spec = ArchiveSpec("permit", "2024-03", 700)
    archive = build_archive(spec)
    assert_zipfile_refuses(archive)
    table, quarantine, stats = read(archive)
    events = list(archive_events(spec))
    assert quarantine is None and stats["events"] == stats["members"] == table.num_rows == len(events)
    assert table.schema == sm.data_schema("permit")
    assert table["event_reference"].to_pylist() == [e["event_reference"] for e in events]
    for row, event in zip(table.to_pylist(), events):
        data = event["object_data"]
        assert row["object_reference"] == event["object_reference"] == row["permit_reference_number"]
        assert (
            row["event_time"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{row['event_time'].microsecond // 1000:03d}Z"
            == event["event_time"]
        )
        for name in (
            "work_reference_number",
            "promoter_swa_code",
            "highway_authority",
            "street_name",
            "usrn",
            "work_category",
            "work_status_ref",
            "permit_conditions",
            "works_location_coordinates",
        ):
            assert row[name] == data.get(name), name
        assert row["event_type_published"] == event["event_type"]
        assert row["_block_month"] == "2024-03" and row["_landed_at"] == LANDED
    added = sum(1 for e in events if "replay_unannounced_field" in e["object_data"])
    assert stats["drift"]["new_fields"] == ({"object_data.replay_unannounced_field": added} if added else {})
    assert table["extras"].null_count == len(events) - added


def test_every_part_lands_with_its_own_schema():
    for part in ("activity", "section_58"):
        spec = ArchiveSpec(part, "2024-03", 50)
        table, quarantine, stats = read(build_archive(spec), part=part)
        assert table.schema == sm.data_schema(part) and quarantine is None
        assert table.num_rows == 50 == stats["events"]
        ref = sm.REFERENCE_FIELDS[part]
        assert table[ref].to_pylist() == [e["object_data"][ref] for e in archive_events(spec)]
        assert set(table["object_type"].to_pylist()) == {sm.OBJECT_TYPES[part]}
    start_times = read(build_archive(ArchiveSpec("activity", "2024-03", 5)), part="activity")[0]["start_time"]
    assert start_times.type == sm.TIMESTAMP and start_times.null_count == 0


def test_data_descriptors_pretty_members_and_a_valid_directory_read_the_same():
    base = ArchiveSpec("permit", "2024-03", 200)
    want = read(build_archive(base))[0].drop(["_landed_at"])
    for variant in (
        ArchiveSpec("permit", "2024-03", 200, quirks=Quirks(data_descriptors=True)),
        ArchiveSpec("permit", "2024-03", 200, quirks=Quirks(pretty_rate=0.5)),
        ArchiveSpec("permit", "2024-03", 200, central_directory="valid"),
    ):
        table, _, stats = read(build_archive(variant), piece=1000)
        assert table.drop(["_landed_at"]).equals(want), variant
    assert (
        read(build_archive(ArchiveSpec("permit", "2024-03", 20, quirks=Quirks(data_descriptors=True))))[2][
            "data_descriptor_members"
        ]
        == 20
    )


def test_a_truncated_archive_raises_a_clear_error():
    cut = build_archive(ArchiveSpec("permit", "2024-03", 200, truncate=True))
    with pytest.raises(sm.ArchiveTruncated, match="truncated"):
        read(cut)
    whole = build_archive(ArchiveSpec("permit", "2024-03", 200))
    members_only = whole[: whole.find(b"PK\x01\x02")]  # cut exactly before the central directory
    with pytest.raises(sm.ArchiveTruncated, match="before its central directory"):
        read(members_only)
    garbage = whole[:5000] + b"\x00" * 64 + whole[5000:]
    with pytest.raises(sm.ArchiveError):
        read(garbage)


def test_bad_members_are_quarantined_with_the_reason():
    spec = ArchiveSpec("permit", "2024-03", 400, quirks=Quirks(bad_members=5))
    table, quarantine, stats = read(build_archive(spec))
    assert table.num_rows == 395 and quarantine.num_rows == 5 and stats["events"] == 400
    assert quarantine.schema == sm.QUARANTINE_SCHEMA
    assert stats["quarantine_reasons"] == {
        "duplicate event_reference": 1,
        "member is not a JSON object": 1,
        "member is not valid JSON": 1,
        "missing permit_reference_number": 1,
        "unparseable event_time": 1,
    }
    assert all(raw for raw in quarantine["raw"].to_pylist()) and all(
        m.endswith(".json") for m in quarantine["member"].to_pylist()
    )
    assert stats["fallback_chunks"] == 0  # the broken members are set aside; the rest still parse in Arrow
    refs = table["event_reference"].to_pylist()
    assert len(refs) == len(set(refs))


def test_a_member_that_fails_its_crc_or_does_not_inflate_fails_the_archive():
    # Damaged bytes lose the event (unlike a bad record, whose text stays in quarantine): landing
    # the other members would land a partial month that looks whole.
    good = orjson.dumps(sample_event("real_permit_event_LC10620213165-01_PERMIT_ALTERATION_GRANTED.json"))
    other = orjson.dumps({**orjson.loads(good), "event_reference": 1})
    archive = bytearray(zip_of([("a.json", good), ("b.json", other)]))
    crc_at = archive.find(b"PK\x03\x04", 10) + 14
    archive[crc_at : crc_at + 4] = b"\x00\x00\x00\x00"  # b.json's CRC in its local header
    with pytest.raises(sm.ArchiveCorrupt, match=r"member 2 \(b.json\) fails its CRC-32"):
        read(bytes(archive))
    archive = bytearray(zip_of([("a.json", good), ("b.json", other)]))
    data_at = archive.find(b"PK\x03\x04", 10) + 30 + len("b.json")
    archive[data_at : data_at + 8] = b"\xff" * 8  # b.json's deflate data
    with pytest.raises(sm.ArchiveCorrupt, match=r"member 2 \(b.json\) (does not inflate|fails its CRC-32)"):
        read(bytes(archive))
    assert read(bytes(zip_of([("a.json", good), ("b.json", other)])))[0].num_rows == 2


def test_spelling_variants_are_normalised_and_the_published_spelling_kept():
    quirks = Quirks(spelling_variant_rate=0.5, tm_type_spelling_rate=0.5)
    table, _, stats = read(build_archive(ArchiveSpec("permit", "2024-03", 500, quirks=quirks)))
    published = set(table["event_type_published"].to_pylist())
    assert {"WORK_START", "work-start", "Work Start"} <= published
    assert set(table["event_type"].to_pylist()) <= sm.KNOWN_EVENT_TYPES
    pairs = set(zip(table["event_type_published"].to_pylist(), table["event_type"].to_pylist()))
    assert {
        ("work-start", "WORK_START"),
        ("Work Start", "WORK_START"),
        ("WORK_START", "WORK_START"),
        ("CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED", "CURRENT_TRAFFIC_MANAGEMENT_UPDATED"),
    } <= pairs
    assert stats["event_type_spellings"]["work-start"] == "WORK_START" and stats["unknown_event_types"] == {}
    assert sum(stats["event_types"].values()) == table.num_rows
    for value, want in (
        ("work-start", "WORK_START"),
        ("Work  Start", "WORK_START"),
        (" work_stop ", "WORK_STOP"),
        ("Current Traffic Management Type Updated", "CURRENT_TRAFFIC_MANAGEMENT_UPDATED"),
    ):
        assert sm.normalise_event_type(value) == want


def test_bare_proposed_start_times_become_the_uk_local_time_of_the_start_day():
    sns = sample_event("docs_example_sns_notification_envelope_0000218889274-01.json")
    event = orjson.loads(sns["Message"])  # the 2020 field set (26 keys)
    summer = {
        **event,
        "event_reference": 1,
        "object_data": {**event["object_data"], "proposed_start_time": "13:50"},
    }  # start 2020-06-23T23:00Z
    winter = {
        **event,
        "event_reference": 2,
        "object_data": {
            **event["object_data"],
            "proposed_start_time": "09:05",
            "proposed_start_date": "2020-12-01T00:00:00.000Z",
        },
    }
    iso = {
        **event,
        "event_reference": 3,
        "object_data": {**event["object_data"], "proposed_start_time": "2020-06-24T08:00:00.000Z"},
    }
    broken = {**event, "event_reference": 4, "object_data": {**event["object_data"], "proposed_start_time": "27:99"}}
    members = [(f"{e['event_reference']}.json", orjson.dumps(e)) for e in (summer, winter, iso, broken)]
    table, quarantine, stats = read(zip_of(members), month="2020-06")
    times = table["proposed_start_time"].to_pylist()
    assert times[0] == datetime(2020, 6, 24, 12, 50, tzinfo=UTC)  # 13:50 BST on 24 June
    assert times[1] == datetime(2020, 12, 1, 9, 5, tzinfo=UTC)  # 09:05 GMT
    assert times[2] == datetime(2020, 6, 24, 8, 0, tzinfo=UTC)
    assert times[3] is None and quarantine is None
    assert stats["bare_times_normalised"] == {"proposed_start_time": 2}
    assert stats["nulled_values"] == {"proposed_start_time": 1}
    assert "permit_conditions" in stats["drift"]["missing_fields"]  # the 2020 field set lacks it


def test_the_generated_bare_times_are_normalised_too():
    spec = ArchiveSpec("permit", "2024-07", 300, quirks=Quirks(bare_time_rate=0.3))
    table, _, stats = read(build_archive(spec), month="2024-07")
    events = list(archive_events(spec))
    bare = [i for i, e in enumerate(events) if len(e["object_data"]["proposed_start_time"] or "") == 5]
    assert bare and stats["bare_times_normalised"]["proposed_start_time"] == len(bare)
    for i in bare:
        data = events[i]["object_data"]
        start = table["proposed_start_time"][i].as_py()
        day = datetime.fromisoformat(data["proposed_start_date"].replace("Z", "+00:00"))
        assert start.astimezone(sm._LONDON).strftime("%H:%M") == data["proposed_start_time"]
        assert start.astimezone(sm._LONDON).date() == day.astimezone(sm._LONDON).date()


def test_unknown_fields_are_kept_as_extras_and_reported_as_drift():
    real = sample_event("real_permit_event_LC10620213165-01_PERMIT_ALTERATION_GRANTED.json")
    added = {
        **real,
        "event_reference": 2,
        "publisher_note": "top level",
        "object_data": {**real["object_data"], "lane_detail": "new", "nested_detail": {"a": 1}},
    }
    table, quarantine, stats = read(
        zip_of([("1.json", orjson.dumps(real)), ("2.json", orjson.dumps(added))]), month="2025-06"
    )
    assert quarantine is None and table.num_rows == 2
    assert table["extras"][0].as_py() is None
    assert orjson.loads(table["extras"][1].as_py()) == {
        "publisher_note": "top level",
        "object_data": {"lane_detail": "new", "nested_detail": {"a": 1}},
    }
    assert stats["drift"]["new_fields"] == {
        "object_data.lane_detail": 1,
        "object_data.nested_detail": 1,
        "publisher_note": 1,
    }
    assert "collaboration_type" in stats["drift"]["missing_fields"]  # absent from the real 2025 record


def test_a_known_field_with_another_json_type_is_converted_and_reported():
    real = sample_event("real_permit_event_LC10620213165-01_PERMIT_ALTERATION_GRANTED.json")
    numbered = {**real, "event_reference": 2, "object_data": {**real["object_data"], "usrn": 34409447}}
    mixed = {**real, "event_reference": "3", "object_data": {**real["object_data"], "road_category": 8}}
    members = [("1.json", orjson.dumps(real)), ("2.json", orjson.dumps(numbered)), ("3.json", orjson.dumps(mixed))]
    table, quarantine, stats = read(zip_of(members), month="2025-06")
    assert quarantine is None
    assert table["event_reference"].to_pylist() == [128587307, 2, 3]
    assert table["usrn"].to_pylist() == ["34409447"] * 3 and table["road_category"].to_pylist() == ["8"] * 3
    assert stats["drift"]["type_changes"] == {
        "event_reference: string": 1,
        "object_data.road_category: number": 1,
        "object_data.usrn: number": 1,
    }
    assert stats["fallback_chunks"] == 1  # mixed types in one chunk: parsed member by member
    # A type that changes for the whole archive stays on the fast path: the field is inferred, then converted.
    numbers = [
        {**real, "event_reference": i, "object_data": {**real["object_data"], "usrn": 100 + i}} for i in range(3)
    ]
    table, _, stats = read(zip_of([(f"{i}.json", orjson.dumps(e)) for i, e in enumerate(numbers)]), month="2025-06")
    assert table["usrn"].to_pylist() == ["100", "101", "102"] and stats["fallback_chunks"] == 0
    assert stats["drift"]["type_changes"] == {"object_data.usrn: number": 3}


def test_the_samples_read_as_the_contract_says():
    names = [
        "real_permit_event_LC10620213165-01_PERMIT_ALTERATION_GRANTED.json",
        "docs_example_permit_TSR1591199404915-01_work-start.json",
    ]
    members = [(name, (SAMPLES / name).read_bytes()) for name in names]  # pretty-printed, as published
    table, quarantine, stats = read(zip_of(members), month="2025-06")
    assert quarantine is None
    rows = table.to_pylist()
    assert [r["event_type"] for r in rows] == ["PERMIT_ALTERATION_GRANTED", "WORK_START"]
    assert rows[1]["event_type_published"] == "work-start"
    assert rows[0]["proposed_start_date"] == datetime(2025, 6, 15, 23, 0, tzinfo=UTC)
    assert rows[0]["area_name"] == "" and rows[0]["is_covid_19_response"] is None
    assert rows[1]["collaboration_type"] == "Other" and rows[0]["collaboration_type"] is None
    # The activity and section 58 docs examples share event_reference 529771 (contract): the second is a duplicate.
    parts = {
        "activity": "docs_example_activity_ARN-5990-85775436_ACTIVITY_CREATED.json",
        "section_58": "docs_example_section58_S58-5990-46589070_SECTION_58_CREATED.json",
    }
    for part, name in parts.items():
        table, quarantine, _ = read(zip_of([(name, (SAMPLES / name).read_bytes())]), part=part, month="2020-06")
        assert table.num_rows == 1 and table["event_reference"][0].as_py() == 529771


def test_wrong_object_type_and_missing_required_fields():
    real = sample_event("real_permit_event_LC10620213165-01_PERMIT_ALTERATION_GRANTED.json")
    activity = {**real, "event_reference": 2, "object_type": "ACTIVITY"}
    no_time = {k: v for k, v in real.items() if k != "event_time"} | {"event_reference": 3}
    no_data = {k: v for k, v in real.items() if k != "object_data"} | {"event_reference": 4}
    members = [(f"{i}.json", orjson.dumps(e)) for i, e in enumerate((real, activity, no_time, no_data))]
    table, quarantine, stats = read(zip_of(members), month="2025-06")
    assert table["event_reference"].to_pylist() == [128587307]
    assert sorted(quarantine["_reason"].to_pylist()) == [
        "missing event_time",
        "missing object_data",
        "object_type is not PERMIT",
    ]
    # A required field gone from every event is the publisher's change of format: the block fails.
    gone = [
        {
            **real,
            "event_reference": i,
            "object_data": {k: v for k, v in real["object_data"].items() if k != "permit_reference_number"},
        }
        for i in range(3)
    ]
    with pytest.raises(SchemaDriftError, match="permit_reference_number"):
        read(zip_of([(f"{i}.json", orjson.dumps(e)) for i, e in enumerate(gone)]), month="2025-06")


# ---------------------------------------------------------------- blocks through run_block


def test_run_block_round_trip_and_an_unchanged_head_skips(street, lake):
    spec = street.street_manager.spec("permit", "2024-03")
    manifest = run_block("street_manager", "2024-03", lake=lake, part="permit")
    table = landed(lake, "permit", "2024-03")
    assert not manifest["skipped"] and manifest["part"] == "permit"
    assert manifest["rows"] == table.num_rows == 300 == manifest["events"]
    assert table["event_reference"].to_pylist() == [e["event_reference"] for e in archive_events(spec)]
    assert manifest["watermark"].startswith('etag="') and "last-modified=Mon, 01 Apr 2024" in manifest["watermark"]
    assert manifest["archive_bytes"] > 0 and manifest["coordinates"]["converted"] > 0
    assert sorted(p.name for p in (Path(lake) / "street_manager" / "permit" / "month=2024-03").iterdir()) == [
        "_manifest.json",
        "data.parquet",
    ]
    again = run_block("street_manager", "2024-03", lake=lake, part="permit")
    assert again["skipped"] and "watermark" in again["reason"]
    log = requests.get(f"{street.url}/_replay/requests", params={"detail": 1}, timeout=10).json()
    assert [(e["method"], e["path"]) for e in log if e["path"].startswith("/permit/")] == [
        ("HEAD", "/permit/2024/03.zip"),
        ("GET", "/permit/2024/03.zip"),
        ("HEAD", "/permit/2024/03.zip"),
    ]
    for part in ("activity", "section_58"):
        other = run_block("street_manager", "2024-03", lake=lake, part=part)
        assert other["rows"] == landed(lake, part, "2024-03").num_rows == {"activity": 40, "section_58": 15}[part]


def test_an_empty_archive_lands_an_empty_block_with_the_schema(street, lake):
    configure(street, {"events_per_month": {"section_58": 0}})
    manifest = run_block("street_manager", "2024-03", lake=lake, part="section_58")
    table = landed(lake, "section_58", "2024-03")
    assert manifest["rows"] == table.num_rows == manifest["events"] == 0
    assert table.schema == sm.data_schema("section_58")


def test_a_republished_month_lands_again_with_the_changed_rows(street, lake):
    run_block("street_manager", "2024-03", lake=lake, part="permit")
    configure(street, {"late_edit": {"permit/2024-03": 1}})
    manifest = run_block("street_manager", "2024-03", lake=lake, part="permit")
    assert not manifest["skipped"] and manifest["rows"] == 305
    assert manifest["rows_changed"]["added"] == 5 and manifest["rows_changed"]["removed"] == 0
    assert manifest["rows_changed"]["changed"] > 0


def test_a_month_not_yet_published_is_skipped_with_the_reason(street, lake):
    configure(street, {"latest_month": "2024-02"})
    manifest = run_block("street_manager", "2024-03", lake=lake, part="permit")
    assert manifest["skipped"] and manifest["reason"].startswith("not published yet")
    assert "404" in manifest["reason"] and not (Path(lake) / "street_manager" / "permit" / "month=2024-03").exists()
    future = run_block("street_manager", "2099-01", lake=lake, part="permit")  # not ended: no request at all
    assert future["skipped"] and "published on 2099-02-01" in future["reason"]


def test_a_truncated_archive_fails_and_leaves_the_previous_landing(street, lake):
    first = run_block("street_manager", "2024-03", lake=lake, part="activity")
    folder = Path(lake) / "street_manager" / "activity" / "month=2024-03"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    configure(street, {"truncate": ["activity/2024-03"]})
    with pytest.raises(sm.ArchiveTruncated, match="truncated"):
        run_block("street_manager", "2024-03", lake=lake, part="activity")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert first["rows"] == landed(lake, "activity", "2024-03").num_rows


def test_a_dropped_download_resumes_and_lands_exactly(street, lake):
    configure(street, {"events_per_month": {"permit": 6000}})
    requests.post(f"{street.url}/_replay/faults", json={"reset_mid_page": 1}, timeout=10).raise_for_status()
    manifest = run_block("street_manager", "2024-03", lake=lake, part="permit")
    assert manifest["rows"] == 6000 and manifest["download_resumes"] == 1
    log = requests.get(f"{street.url}/_replay/requests", params={"detail": 1}, timeout=10).json()
    statuses = [e["status"] for e in log if e["path"] == "/permit/2024/03.zip"]
    # HEAD, the GET cut by a reset, then a ranged GET from the last byte received (a plain GET
    # when the reset came before any byte: a TCP reset discards what the client had not read).
    assert statuses[:2] == [200, 200] and statuses[2] in (200, 206) and len(statuses) == 3
    spec = street.street_manager.spec("permit", "2024-03")
    assert landed(lake, "permit", "2024-03")["event_reference"].to_pylist() == [
        e["event_reference"] for e in archive_events(spec)
    ]


class _Response:
    def __init__(self, status, headers, pieces, fail_after=None):
        self.status_code, self.headers, self._pieces, self._fail_after = status, headers, pieces, fail_after

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass

    def iter_content(self, chunk_size):
        for i, piece in enumerate(self._pieces):
            if i == self._fail_after:
                raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
            yield piece


class _Session:
    """Serves ``body`` once cut after two pieces, then honours ``Range`` (206) as S3 does."""

    def __init__(self, body: bytes, etag='"e"', change_on_resume=False):
        self.body, self.etag, self.change = body, etag, change_on_resume
        self.calls = []

    def get(self, url, stream, timeout, headers):
        self.calls.append(dict(headers))
        if "Range" not in headers:
            pieces = [self.body[i : i + 1000] for i in range(0, len(self.body), 1000)]
            return _Response(200, {"ETag": self.etag, "Content-Length": str(len(self.body))}, pieces, fail_after=2)
        if self.change or headers.get("If-Range") != self.etag:
            return _Response(200, {"ETag": '"new"'}, [b"x"])
        start = int(headers["Range"].split("=")[1].rstrip("-"))
        return _Response(
            206,
            {"ETag": self.etag, "Content-Range": f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"},
            [self.body[start:]],
        )


def test_the_download_resumes_from_the_last_byte_with_if_range():
    body = bytes(range(256)) * 20
    session = _Session(body)
    download = sm.Download(session, "http://x/permit/2024/03.zip", {"etag": '"e"', "length": len(body)})
    assert b"".join(download.pieces()) == body
    assert session.calls == [{}, {"Range": "bytes=2000-", "If-Range": '"e"'}] and download.resumes == 1
    changed = sm.Download(_Session(body, change_on_resume=True), "http://x/a.zip", {"etag": '"e"', "length": len(body)})
    with pytest.raises(sm.ArchiveChanged):
        b"".join(changed.pieces())
    moved = sm.Download(_Session(body, etag='"other"'), "http://x/a.zip", {"etag": '"e"', "length": len(body)})
    with pytest.raises(sm.ArchiveChanged, match="since its HEAD"):
        b"".join(moved.pieces())


def test_the_source_is_registered_with_its_parts():
    spec = sources.spec("street_manager")
    assert spec.parts == ("permit", "activity", "section_58") and spec.natural_key == "event_reference"
    assert spec.conn_id == "civic_street_manager" and spec.first_month == "2020-07"
    assert spec.default_base_url == "https://opendata.manage-roadworks.service.gov.uk"
    assert sm.auth_headers(None) == {}
    with pytest.raises(ValueError, match="has parts"):
        run_block("street_manager", "2024-03", lake="/nonexistent")


def test_an_error_while_writing_stops_the_unzip_thread_and_the_download():
    import threading

    archive = build_archive(ArchiveSpec("permit", "2024-03", 3000))
    cancelled = []

    def pieces():
        for i in range(0, len(archive), 4096):
            yield archive[i : i + 4096]

    reader = sm.ArchiveReader("permit", "2024-03", LANDED)
    batches = sm.pipelined(
        sm.ZipWalker(pieces(), chunk_bytes=64 << 10).chunks(), reader.process, cancel=lambda: cancelled.append(True)
    )
    next(batches)  # one chunk processed; the thread is unzipping the next ones
    with pytest.raises(RuntimeError, match="disk full"):
        batches.throw(RuntimeError("disk full"))  # as if the writer failed there
    assert not [t for t in threading.enumerate() if t.name == "street-manager-unzip"]
    assert cancelled == [True]
