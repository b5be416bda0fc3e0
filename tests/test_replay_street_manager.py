"""The replay's Street Manager host: generated monthly archives (DfT's broken central directory,
the quirks, any size in bounded memory) served like S3 objects (HEAD, ETag, Last-Modified,
ranges, 404 before publication)."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import zipfile

import orjson
import pytest
import requests

from civic_pipelines.replay import street_manager as gen
from civic_pipelines.replay.street_manager import ArchiveSpec, Quirks, archive_events, build_archive, iter_archive


@pytest.fixture(scope="module")
def server(module_replay):
    """One replay server for the module (building one takes a second or two); reset per test."""
    return module_replay


@pytest.fixture
def sm(server):
    requests.post(f"{server.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(server, {"latest_month": "2024-06", "events_per_month": 40})
    return server


def configure(server, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"street_manager": body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["street_manager"]


def members_of(archive: bytes) -> list[dict]:
    """Members read forward by local headers (what a streaming reader sees)."""
    out, at = [], 0
    while archive[at : at + 4] == b"PK\x03\x04":
        import struct
        import zlib

        _, flags, method, _, _, crc, csize, usize, nlen, xlen = struct.unpack_from("<HHHHHIIIHH", archive, at + 4)
        start = at + 30 + nlen + xlen
        if flags & 0x08:
            inflater = zlib.decompressobj(-15)
            body = inflater.decompress(archive[start:])
            end = len(archive) - len(inflater.unused_data)
            crc, csize, usize = struct.unpack_from("<III", archive, end + 4)
            at = end + 16
        else:
            body = zlib.decompress(archive[start : start + csize], -15)
            at = start + csize
        assert zlib.crc32(body) == crc and len(body) == usize
        out.append(orjson.loads(body))
    assert archive[at : at + 4] == b"PK\x01\x02"
    return out


def assert_zipfile_refuses(archive: bytes) -> None:
    """Python's zipfile cannot read the archive (it trusts the central directory, which is wrong)."""
    with pytest.raises(zipfile.BadZipFile):
        with zipfile.ZipFile(io.BytesIO(archive)) as broken:
            [broken.read(name) for name in broken.namelist()]


# ---------------------------------------------------------------- the archive


def test_zipfile_cannot_read_the_archive_but_its_local_headers_hold_every_event():
    spec = ArchiveSpec("permit", "2024-03", 120)
    archive = build_archive(spec)
    assert_zipfile_refuses(archive)
    assert members_of(archive) == list(archive_events(spec))


def test_a_valid_central_directory_variant_opens_with_zipfile_and_holds_the_same_events():
    spec = ArchiveSpec("permit", "2024-03", 120, central_directory="valid")
    with zipfile.ZipFile(io.BytesIO(build_archive(spec))) as archive:
        assert archive.testzip() is None
        events = [orjson.loads(archive.read(name)) for name in archive.namelist()]
    assert events == list(archive_events(ArchiveSpec("permit", "2024-03", 120)))
    assert all(name.endswith(".json") for name in archive.namelist())


def test_archives_are_deterministic_per_seed_type_and_month():
    a = build_archive(ArchiveSpec("activity", "2024-03", 30))
    assert a == build_archive(ArchiveSpec("activity", "2024-03", 30))
    assert a != build_archive(ArchiveSpec("activity", "2024-03", 30, seed=7))
    assert a != build_archive(ArchiveSpec("activity", "2024-04", 30))
    assert a != build_archive(ArchiveSpec("section_58", "2024-03", 30))


def test_events_follow_the_contract_field_sets_and_vocabularies():
    permits = list(archive_events(ArchiveSpec("permit", "2024-03", 600)))
    refs = [e["event_reference"] for e in permits]
    assert len(set(refs)) == len(refs)
    for event in permits:
        assert list(event) == gen.ENVELOPE_FIELDS and event["object_type"] == "PERMIT" and event["version"] == 1
        data = event["object_data"]
        known = set(gen.PERMIT_FIELDS) | {"replay_unannounced_field"}
        assert set(data) <= known and set(gen.PERMIT_FIELDS_2020) <= set(data)
        assert event["object_reference"] == data["permit_reference_number"]
        assert data["permit_reference_number"].startswith(data["work_reference_number"] + "-")
        assert (data["work_category"], data["work_category_ref"]) in {(d, r) for d, r, _ in gen.WORK_CATEGORIES}
        assert gen.WORK_STATUS[data["work_status_ref"]] == data["work_status"]
        assert data["traffic_management_type_ref"] in dict(gen.TRAFFIC_MANAGEMENT)
        assert data["permit_status"] in {
            "granted",
            "closed",
            "submitted",
            "revoked",
            "cancelled",
            "refused",
            "progressed",
            "permit_modification_request",
        }
        assert set(data["permit_conditions"].split(", ")) <= set(gen.PERMIT_CONDITIONS)
        assert data["road_category"] in [str(i) for i in range(10)]
        assert ("collaboration_type" in data) == (data["collaborative_working"] == "Yes")
        assert data["proposed_start_date"].endswith("Z") and event["event_time"].endswith("Z")
    # Dates are UTC instants of UK-local day starts: midnight in GMT, 23:00 the day before in BST.
    summer = list(archive_events(ArchiveSpec("permit", "2024-07", 200)))
    assert all(e["object_data"]["proposed_start_date"].endswith("T23:00:00.000Z") for e in summer)
    assert all(
        e["object_data"]["proposed_start_date"].endswith("T00:00:00.000Z")
        for e in permits
        if e["object_data"]["proposed_start_date"] < "2024-03-31"
    )
    activity = next(iter(archive_events(ArchiveSpec("activity", "2024-03", 1))))
    assert list(activity["object_data"]) == gen.ACTIVITY_FIELDS and activity["object_type"] == "ACTIVITY"
    s58 = next(iter(archive_events(ArchiveSpec("section_58", "2024-03", 1))))
    assert list(s58["object_data"]) == gen.SECTION_58_FIELDS and s58["object_type"] == "SECTION_58"


def test_the_quirks_are_in_the_archive():
    quirks = Quirks(spelling_variant_rate=0.3, bare_time_rate=0.2, extra_field_rate=0.1, test_data_rate=0.02)
    events = list(archive_events(ArchiveSpec("permit", "2024-03", 800, quirks=quirks)))
    types = {e["event_type"] for e in events}
    assert {"WORK_START", "work-start", "Work Start"} <= types
    assert {"CURRENT_TRAFFIC_MANAGEMENT_UPDATED", "CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED"} & types
    starts = [e["object_data"]["proposed_start_time"] for e in events]
    assert any(s and len(s) == 5 and s[2] == ":" for s in starts) and any(s and s.endswith("Z") for s in starts)
    assert any("replay_unannounced_field" in e["object_data"] for e in events)
    coordinates = [e["object_data"]["works_location_coordinates"] for e in events]
    assert None in coordinates and "" in coordinates
    assert {c.split("(")[0] for c in coordinates if c} == {"POINT", "LINESTRING", "POLYGON"}
    assert any(
        e["object_data"]["promoter_swa_code"] == "STPR" and e["object_data"]["street_name"] == "Fake Street"
        for e in events
    )
    assert any(e["object_data"]["area_name"] == "" for e in events)
    # 2025: is_covid_19_response is null; 2020: the 26-key field set of the SNS docs example.
    assert all(
        e["object_data"]["is_covid_19_response"] is None for e in archive_events(ArchiveSpec("permit", "2025-06", 50))
    )
    old = list(archive_events(ArchiveSpec("permit", "2020-08", 50)))
    assert all(
        list(e["object_data"]) == gen.PERMIT_FIELDS_2020
        for e in old
        if "replay_unannounced_field" not in e["object_data"]
    )


def test_pretty_members_data_descriptors_and_bad_members_keep_valid_local_headers():
    spec = ArchiveSpec("permit", "2024-03", 60, quirks=Quirks(pretty_rate=0.5, data_descriptors=True, bad_members=0))
    archive = build_archive(spec)
    assert members_of(archive) == list(archive_events(spec))
    pretty = ArchiveSpec("permit", "2024-03", 5, quirks=Quirks(pretty_rate=1.0), central_directory="valid")
    with zipfile.ZipFile(io.BytesIO(build_archive(pretty))) as archive:
        assert archive.read(archive.namelist()[0]).startswith(b'{\n  "event_reference"')
    bad = build_archive(ArchiveSpec("permit", "2024-03", 60, quirks=Quirks(bad_members=5), central_directory="valid"))
    with zipfile.ZipFile(io.BytesIO(bad)) as archive:
        assert archive.testzip() is None  # the zip is sound; five members break the contract
        bodies = [archive.read(name) for name in archive.namelist()]
    parsed = []
    for body in bodies:
        try:
            parsed.append(orjson.loads(body))
        except orjson.JSONDecodeError:
            parsed.append("not json")
    assert parsed.count("not json") == 1 and sum(isinstance(p, list) for p in parsed) == 1


def test_a_truncated_archive_ends_inside_a_member_without_a_central_directory():
    whole = build_archive(ArchiveSpec("permit", "2024-03", 100))
    cut = build_archive(ArchiveSpec("permit", "2024-03", 100, truncate=True))
    assert len(cut) < 0.7 * len(whole) and whole.startswith(cut[:-2000])
    assert b"PK\x01\x02" not in cut and b"PK\x05\x06" not in cut
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(cut))


def test_any_size_is_generated_in_bounded_memory():
    spec = ArchiveSpec("permit", "2024-03", 6_000)
    tracemalloc.start()
    try:
        total = 0
        digest = hashlib.md5()
        for piece in iter_archive(spec, piece_size=128 << 10):
            total += len(piece)
            digest.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 4_500_000
    assert peak < total / 4, (peak, total)  # pieces, the spooled directory and one event at a time


# ---------------------------------------------------------------- the HTTP host


def test_head_and_get_answer_like_s3(sm):
    url = f"{sm.url}/permit/2024/03.zip"
    head = requests.head(url, timeout=30)
    get = requests.get(url, timeout=30)
    assert head.status_code == get.status_code == 200 and head.content == b""
    for name in ("ETag", "Last-Modified", "Content-Length", "Accept-Ranges"):
        assert head.headers[name] == get.headers[name]
    assert int(head.headers["Content-Length"]) == len(get.content)
    assert head.headers["ETag"] == f'"{hashlib.md5(get.content).hexdigest()}"'
    assert head.headers["Last-Modified"] == "Mon, 01 Apr 2024 03:00:00 GMT"  # published on the 1st of the next month
    assert get.headers["Content-Type"] == "application/zip"
    assert get.content == build_archive(sm.street_manager.spec("permit", "2024-03"))
    for kind in ("activity", "section_58"):
        assert requests.get(f"{sm.url}/{kind}/2024/03.zip", timeout=30).content.startswith(b"PK\x03\x04")


def test_ranges_conditionals_and_errors(sm):
    url = f"{sm.url}/permit/2024/03.zip"
    whole = requests.get(url, timeout=30)
    etag, size = whole.headers["ETag"], len(whole.content)
    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    tail = requests.get(url, headers={"Range": "bytes=-50"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    rest = requests.get(url, headers={"Range": f"bytes={size - 10}-", "If-Range": etag}, timeout=30)
    assert rest.status_code == 206 and rest.content == whole.content[-10:]
    stale = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'}, timeout=30)
    assert stale.status_code == 200 and stale.content == whole.content
    assert requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=30).status_code == 416
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    assert requests.get(url, headers={"If-Match": '"other"'}, timeout=30).status_code == 412
    for path in ("/permit/2024/13.zip", "/permit/24/03.zip", "/permits/2024/03.zip", "/permit/2024/03.json"):
        assert requests.get(f"{sm.url}{path}", timeout=30).status_code == 404


def test_months_not_yet_published_are_404_nosuchkey(sm):
    configure(sm, {"latest_month": None, "today": "2024-05-01"})
    assert requests.head(f"{sm.url}/permit/2024/04.zip", timeout=30).status_code == 200
    missing = requests.get(f"{sm.url}/permit/2024/05.zip", timeout=30)
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content
    assert requests.head(f"{sm.url}/permit/2024/05.zip", timeout=30).status_code == 404
    assert requests.head(f"{sm.url}/permit/2020/06.zip", timeout=30).status_code == 404  # before Street Manager
    assert requests.head(f"{sm.url}/permit/2020/07.zip", timeout=30).status_code == 200
    configure(sm, {"latest_month": "2024-05"})
    assert requests.head(f"{sm.url}/permit/2024/05.zip", timeout=30).status_code == 200


def test_truncate_and_late_edit_switches_change_the_object(sm):
    url = f"{sm.url}/activity/2024/03.zip"
    before = requests.head(url, timeout=30).headers
    configure(sm, {"truncate": ["activity/2024-03"]})
    cut = requests.get(url, timeout=30)
    assert len(cut.content) == int(cut.headers["Content-Length"]) < int(before["Content-Length"])
    assert cut.headers["ETag"] != before["ETag"]
    assert requests.head(f"{sm.url}/permit/2024/03.zip", timeout=30).status_code == 200
    configure(sm, {"truncate": False, "late_edit": {"activity/2024-03": 1}})
    edited = requests.head(url, timeout=30).headers
    assert edited["ETag"] != before["ETag"] and edited["Last-Modified"] == "Tue, 02 Apr 2024 03:00:00 GMT"
    configure(sm, {"late_edit": {}})
    assert requests.head(url, timeout=30).headers["ETag"] == before["ETag"]


def test_configuration_is_checked_and_reset(sm):
    for bad in (
        {"events_per_month": -1},
        {"truncate": "yes"},
        {"late_edit": {"permits/2024-03": 1}},
        {"quirks": {"no_such_quirk": 1}},
        {"central_directory": "fine"},
        {"nonsense": 1},
    ):
        response = requests.post(f"{sm.url}/_replay/config", json={"street_manager": bad}, timeout=30)
        assert response.status_code == 400, bad
    described = configure(sm, {"events_per_month": {"permit": 5}, "today": "2026-10-04", "latest_month": None})
    assert described["latest_published"] == "2026-09" and described["first_month"] == "2020-07"
    requests.post(f"{sm.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    assert requests.get(f"{sm.url}/_replay/config", timeout=10).json()["street_manager"]["events_per_month"] is None


def test_large_archives_are_served_from_the_cache_folder(sm, monkeypatch, tmp_path):
    monkeypatch.setattr(gen, "_MEMORY_LIMIT", 100_000)
    configure(sm, {"events_per_month": 400, "cache_dir": str(tmp_path)})
    response = requests.get(f"{sm.url}/section_58/2024/02.zip", timeout=60)
    spec, stored = sm.street_manager.archive("section_58", "2024-02")
    assert stored.path and stored.data is None and str(tmp_path) in stored.path
    assert response.content == build_archive(spec)
    part = requests.get(f"{sm.url}/section_58/2024/02.zip", headers={"Range": "bytes=1000-"}, timeout=60)
    assert part.content == response.content[1000:]


def test_a_dropped_connection_sends_half_then_resets(sm):
    requests.post(f"{sm.url}/_replay/faults", json={"reset_mid_page": 1}, timeout=10).raise_for_status()
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"{sm.url}/permit/2024/03.zip", timeout=30).content  # noqa: B018
    assert requests.get(f"{sm.url}/permit/2024/03.zip", timeout=30).status_code == 200


def test_data_faults_change_the_events_as_their_names_say():
    from dataclasses import replace

    base = ArchiveSpec("permit", "2024-03", 40)
    events = list(archive_events(base))

    def faulted(*faults, **options):
        return replace(base, faults=faults, fault_options=tuple(options.items()))

    assert build_archive(faulted("empty_month"))[:4] == b"PK\x05\x06"  # no member: the end record alone
    dropped = members_of(build_archive(faulted("drop_field")))
    assert all("permit_reference_number" not in e["object_data"] for e in dropped) and len(dropped) == 40
    assert all(
        "street_name" not in e["object_data"]
        for e in members_of(build_archive(faulted("drop_field", drop_field="street_name")))
    )
    assert all(e["object_data"]["replay_new_field"] for e in members_of(build_archive(faulted("new_field"))))
    retyped = members_of(build_archive(faulted("retype_field")))
    assert [e["object_data"]["usrn"] for e in retyped] == [int(e["object_data"]["usrn"]) for e in events]
    # malformed_row: three more members after the 40 good ones' references (one of them is not JSON)
    archive = build_archive(faulted("malformed_row"))
    with pytest.raises(orjson.JSONDecodeError):
        members_of(archive)
    assert archive.count(b"PK\x03\x04") == 43 and archive.count(b"_no_key.json") == 2  # local + central
    # truncate and corrupt: the same members up to the damage, no usable end
    assert b"PK\x05\x06" not in build_archive(faulted("truncate_archive"))
    whole, corrupt = build_archive(base), build_archive(faulted("corrupt_archive"))
    assert len(corrupt) == len(whole) and corrupt != whole
    between = build_archive(faulted("corrupt_archive", corrupt="between"))
    assert len(between) == len(whole) + 64
    assert base.key == ArchiveSpec("permit", "2024-03", 40).key != faulted("new_field").key


def test_a_data_fault_is_the_published_object_until_a_download_takes_it(sm):
    url = f"{sm.url}/permit/2024/03.zip"
    normal = requests.head(url, timeout=30).headers
    requests.post(f"{sm.url}/_replay/faults", json={"truncate_archive": 1}, timeout=10).raise_for_status()
    head = requests.head(url, timeout=30).headers  # looks, does not take
    assert head["ETag"] != normal["ETag"] and int(head["Content-Length"]) < int(normal["Content-Length"])
    assert requests.head(url, timeout=30).headers["ETag"] == head["ETag"]
    cut = requests.get(url, timeout=30)  # the download takes it: HEAD and GET agree
    assert cut.headers["ETag"] == head["ETag"] and len(cut.content) == int(head["Content-Length"])
    assert requests.head(url, timeout=30).headers["ETag"] == normal["ETag"]
    fired = requests.get(f"{sm.url}/_replay/faults", timeout=10).json()["fired"]
    assert fired["truncate_archive"] == 1
    for bad in (
        {"fault_options": {"corrupt": "everywhere"}},
        {"fault_options": {"nonsense": 1}},
        {"fault_options": {"drop_field": 3}},
    ):
        response = requests.post(f"{sm.url}/_replay/config", json={"street_manager": bad}, timeout=30)
        assert response.status_code == 400, bad
