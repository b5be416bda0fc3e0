"""The generic CKAN adapter with the Toronto 311 dataset file, against the replay server on loopback.

Expectations are computed from the replay's own views of its files (``rows_for_month``,
``bad_lines``, ``rows``, ``quirk_counts``), never from the adapter's code.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replay_env import control, requests_seen

from civic_pipelines import sources
from civic_pipelines.adapters import DatasetConfigError, load_dataset
from civic_pipelines.adapters.ckan import CkanError, CkanResourceSource, ZipMemberStream
from civic_pipelines.connections import resolve
from civic_pipelines.extract import run_block
from civic_pipelines.http import TransientBodyError, make_session
from civic_pipelines.lake import content_sha256
from civic_pipelines.replay.toronto import HEADER, is_valid_creation_date

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "include/civic_pipelines/datasets/toronto_311.toml"
SOURCE = "toronto_311"
ROWS = 6000  # rows per year: about 500 a month, 2 extra-field lines, 2 latin-1 rows, 2 odd wards
YEAR = 2024
MONTH = "2024-02"
LANDED = datetime(2026, 1, 1, tzinfo=UTC)
EXTRA_FIELD = "10 fields where the header has 9"
OUTSIDE = "created_at outside the file's year {year}"


@pytest.fixture
def source():
    return sources.get(SOURCE)


@pytest.fixture
def toronto(replay, point_at_replay):
    """The replay server, small yearly files, and the toronto_311 connection pointing at it."""
    point_at_replay(replay, "civic_toronto_311", offline=True)
    configure(replay, {"rows_per_year": ROWS})
    return replay


def configure(server, body: dict) -> dict:
    return control(server, "config", {SOURCE: body})[SOURCE]


def faults(server, body: dict) -> None:
    control(server, "faults", body)


def logged(server) -> list[str]:
    return requests_seen(server)


def connection():
    return resolve("civic_toronto_311", sources.spec(SOURCE).default_base_url)


def extract(source, month=MONTH):
    with make_session() as session:
        probed = source.probe(session, connection(), month=month)
        return source.extract_block(session, connection(), month, probed, landed_at=LANDED)


def landed(lake, month=MONTH, name="data.parquet"):
    return pq.read_table(Path(lake) / SOURCE / f"month={month}" / name)


def _value(text: str):
    text = text.strip()
    return text or None


def _when(text: str) -> datetime:
    day = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")
    return day.replace(microsecond=int((text[20:26] or "0").ljust(6, "0")))


def expected_rows(server, month=MONTH) -> Counter:
    """The replay's rows of the month as the lake should hold them (trimmed, empty -> null)."""
    return Counter(
        (_when(r["Creation Date"]),) + tuple(_value(r[name]) for name in HEADER[1:])
        for r in server.toronto.rows_for_month(month)
    )


def landed_rows(table: pa.Table) -> Counter:
    names = [
        "created_at",
        "status",
        "postal_prefix",
        "intersection_street_1",
        "intersection_street_2",
        "ward",
        "service_request_type",
        "division",
        "section",
    ]
    return Counter(zip(*(table[name].to_pylist() for name in names)))


def expected_reasons(server, month=MONTH) -> Counter:
    """The month's share of the year's broken lines, from the replay's views of its file."""
    year = int(month[:4])
    reasons = Counter()
    for line in server.toronto.bad_lines(year):
        if line.startswith(month):
            fields = next(csv.reader([line]))
            reasons[f"{len(fields)} fields where the header has {len(HEADER)}"] += 1
    for row in server.toronto.rows(year):
        date = row["Creation Date"]
        if not is_valid_creation_date(date):
            if date.startswith(month):
                reasons["unparseable created_at"] += 1
        elif int(date[:4]) != year and month == (f"{year}-01" if int(date[:4]) < year else f"{year}-12"):
            reasons[OUTSIDE.format(year=year)] += 1
    return reasons


def month_with(server, year: int, predicate) -> str:
    """The month of the first row of the year's file that satisfies ``predicate``."""
    for row in server.toronto.rows(year):
        if predicate(row):
            return row["Creation Date"][:7]
    raise AssertionError("no such row")


# ---------------------------------------------------------------- dataset file and adapter


def test_dataset_file_describes_the_source(source):
    spec = source.SPEC
    assert isinstance(source, CkanResourceSource)
    assert spec.name == SOURCE and spec.conn_id == "civic_toronto_311" and spec.dbt_tag == SOURCE
    assert spec.cron == "0 0 1 * *" and spec.cadence == "monthly" and spec.first_month == "2010-01"
    assert spec.default_base_url == "https://ckan0.cf.opendata.inter.prod-toronto.ca"
    assert spec.natural_key == "request_id" and spec.pool == "civic_toronto_311_api"
    assert SOURCE in sources.names()
    assert source.data_schema.names == [
        "request_id",
        "created_at",
        "status",
        "postal_prefix",
        "intersection_street_1",
        "intersection_street_2",
        "ward",
        "ward_name",
        "ward_number",
        "service_request_type",
        "division",
        "section",
        "ward_system",
        "_block_month",
        "_landed_at",
    ]
    assert source.data_schema.field("created_at").type == pa.timestamp("us")
    assert source.data_schema.field("ward_number").type == pa.int32()


def test_the_adapter_knows_no_city():
    """Everything Toronto-specific lives in the dataset file (docstrings may cite it as the example)."""
    import ast

    tree = ast.parse((ROOT / "include/civic_pipelines/adapters/ckan.py").read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body.pop(0)
    code = ast.unparse(tree)  # without docstrings and comments
    for word in ("toronto", "creation date", "ward", "311", "postal", "sr20", "latin"):
        assert not re.search(rf"\b{word}", code.lower()), word


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "blue"}, "unknown key"),
        ({"key": "Status ID"}, "key 'Status ID' is not among"),
        ({"date_field": "Status"}, "date_field 'Status' must be one of the fields, with type timestamp"),
        ({"resource_name": "311 Service Requests"}, "needs a {year} placeholder"),
        ({"splits": [{"field": "Ward", "pattern": "^(.+)$"}]}, "named groups"),
        ({"date_format": "%d %B %Y %H:%M:%S"}, "fixed-width"),
    ],
)
def test_bad_dataset_files_are_refused_with_the_key(tmp_path, change, message):
    import tomllib

    config = tomllib.loads(DATASET.read_text())
    config["adapter"].update(change)
    path = tmp_path / "toronto_311.toml"
    path.write_text(_to_toml(config))
    with pytest.raises(DatasetConfigError, match=re.escape(message)):
        load_dataset(path)


def _to_toml(config: dict) -> str:
    """Enough TOML for the dataset file (tables of scalars, lists, inline tables)."""

    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)

    out = []
    for table, body in config.items():
        out.append(f"[{table}]")
        out.extend(f"{json.dumps(k)} = {value(v)}" for k, v in body.items())
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- probe


def test_probe_picks_the_years_resource_and_its_last_modified(toronto, source):
    with make_session() as session:
        probed = source.probe(session, connection(), month=MONTH)
        assert probed["watermark"] == toronto.toronto.last_modified(YEAR)
        assert probed["resource"]["name"] == f"311 Service Requests {YEAR}"
        assert probed["resource"]["format"] == "ZIP" and probed["year"] == YEAR
        external = source.probe(session, connection(), month="2021-06")  # toronto.ca's own URL
        assert external["resource"]["url"].endswith("/data/311/opendata/servicerequest/SR2021.zip")
        with pytest.raises(CkanError, match="no ZIP/CSV resource for 2009"):
            source.probe(session, connection(), month="2009-12")
        with pytest.raises(TypeError, match="needs month"):
            source.probe(session, connection())
    assert [p for p in logged(toronto) if "package_show" in p] == [
        "/api/3/action/package_show?id=311-service-requests-customer-initiated"
    ] * 3


# ---------------------------------------------------------------- the block


@pytest.mark.parametrize("month", ["2012-01", "2024-01", "2024-12", "2020-01"])
def test_block_lands_exactly_the_months_rows_and_quarantines_the_rest(toronto, source, month):
    configure(toronto, {"date_quirks": True})
    block = extract(source, month)
    assert landed_rows(block.data) == expected_rows(toronto, month)
    reasons = expected_reasons(toronto, month)
    assert block.stats["quarantine_reasons"] == dict(reasons)
    got = Counter(block.quarantine["_reason"].to_pylist()) if block.quarantine is not None else Counter()
    assert got == reasons
    assert set(block.data["_block_month"].to_pylist()) == {month}
    assert block.data.schema.equals(source.data_schema)
    assert pa.compute.count_distinct(block.data["request_id"]).as_py() == block.data.num_rows
    created = block.data["created_at"].to_pylist()
    assert created == sorted(created) and all(c.strftime("%Y-%m") == month for c in created)


def test_every_line_of_a_year_lands_or_is_quarantined_exactly_once(toronto, source):
    configure(toronto, {"date_quirks": True})
    counts = toronto.toronto.quirk_counts(YEAR)
    rows = quarantined = 0
    keys = set()
    for m in range(1, 13):
        block = extract(source, f"{YEAR}-{m:02d}")
        rows += block.data.num_rows
        quarantined += block.quarantine.num_rows if block.quarantine is not None else 0
        keys.update(block.data["request_id"].to_pylist())
    assert quarantined == counts["quarantine"] == counts["malformed_lines"] + 3 + 2
    assert rows + quarantined == counts["data_lines"]
    assert len(keys) == rows  # the derived key is unique across the year's blocks


def test_block_from_run_block_has_a_manifest(toronto, lake):
    manifest = run_block(SOURCE, MONTH, lake=lake)
    table = landed(lake)
    assert manifest["skipped"] is False and manifest["rows"] == table.num_rows == sum(expected_rows(toronto).values())
    assert manifest["watermark"] == toronto.toronto.last_modified(YEAR)
    assert manifest["resource_name"] == f"311 Service Requests {YEAR}" and manifest["zip_member"] == f"SR{YEAR}.csv"
    assert manifest["file_rows"] == toronto.toronto.quirk_counts(YEAR)["rows"]
    assert manifest["drift"] == {"new_fields": [], "missing_fields": []}
    assert manifest["fetched_bytes"] == len(toronto.toronto.zip_bytes(YEAR))
    assert manifest["encoding"] == "latin-1" and manifest["rows_per_second"] > 0


def test_csv_and_zip_resources_give_the_same_block(toronto, source):
    zipped = extract(source)
    configure(toronto, {"resource_format": "CSV"})
    plain = extract(source)
    assert zipped.stats["zip_member"] == f"SR{YEAR}.csv" and plain.stats["zip_member"] is None
    assert plain.stats["resource_format"] == "CSV" and plain.stats["download_url"].endswith(f"sr{YEAR}.csv")
    assert content_sha256(zipped.data) == content_sha256(plain.data)
    assert zipped.data.equals(plain.data)
    assert zipped.stats["quarantine_reasons"] == plain.stats["quarantine_reasons"]


# ---------------------------------------------------------------- wards


@pytest.mark.parametrize(
    "month, created, ward, name, number, system",
    [
        ("2012-01", datetime(2012, 1, 1, 0, 8, 9), "York South-Weston (12)", "York South-Weston", 12, "44-ward"),
        ("2022-01", datetime(2022, 1, 1, 0, 20, 34), "York South-Weston (05)", "York South-Weston", 5, "25-ward"),
        ("2020-01", datetime(2020, 1, 1, 0, 1, 46), "Toronto-St. Paul's (12)", "Toronto-St. Paul's", 12, "25-ward"),
        ("2013-01", datetime(2013, 1, 1, 1, 12, 13), "Willowdale (23)", "Willowdale", 23, "44-ward"),
    ],
)
def test_ward_split_on_the_real_sample_rows(toronto, source, month, created, ward, name, number, system):
    rows = [r for r in extract(source, month).data.to_pylist() if r["created_at"] == created]
    assert len(rows) == 1
    assert (rows[0]["ward"], rows[0]["ward_name"], rows[0]["ward_number"], rows[0]["ward_system"]) == (
        ward,
        name,
        number,
        system,
    )


def test_ward_system_follows_the_date_of_the_2018_change(toronto, source):
    november, december = extract(source, "2018-11").data, extract(source, "2018-12").data
    assert set(november["ward_system"].to_pylist()) == {"44-ward"}
    assert set(december["ward_system"].to_pylist()) == {"25-ward"}
    assert max(n for n in december["ward_number"].to_pylist() if n is not None) <= 25
    assert max(n for n in november["ward_number"].to_pylist() if n is not None) > 25


def test_wards_not_in_name_number_form_land_as_published(toronto, source):
    month = month_with(toronto, YEAR, lambda r: not r["Ward"].endswith(")"))
    odd = Counter(r["Ward"] for r in toronto.toronto.rows_for_month(month) if not r["Ward"].endswith(")"))
    block = extract(source, month)
    rows = [r for r in block.data.to_pylist() if r["ward"] in odd]
    assert len(rows) == sum(odd.values()) and all(r["ward_name"] is None and r["ward_number"] is None for r in rows)
    assert block.stats["unmatched_splits"] == {"ward": sum(odd.values())}


# ---------------------------------------------------------------- file quirks from the replay


def test_latin1_bytes_are_decoded(toronto, source):
    month = month_with(toronto, YEAR, lambda r: "\xa0" in r["Intersection Street 1"])
    published = {
        r["Intersection Street 1"]
        for r in toronto.toronto.rows_for_month(month)
        if "\xa0" in r["Intersection Street 1"]
    }
    assert b"\xa0" in toronto.toronto.csv_bytes(YEAR)  # one raw byte, not valid UTF-8
    streets = set(extract(source, month).data["intersection_street_1"].to_pylist())
    assert published and published <= streets


def test_lines_with_an_extra_field_are_quarantined_with_their_text(toronto, source):
    bad = toronto.toronto.bad_lines(YEAR)
    month = bad[0][:7]
    block = extract(source, month)
    rows = [r for r in block.quarantine.to_pylist() if r["_raw_line"] is not None]
    assert sorted(r["_raw_line"] for r in rows) == sorted(line for line in bad if line.startswith(month))
    assert {r["_reason"] for r in rows} == {EXTRA_FIELD}
    assert all(r["created_at"] == r["_raw_line"][:27] and r["_block_month"] == month for r in rows)


def test_malformed_row_fault_lines_go_to_the_block_they_sit_in(toronto, source):
    """The fault adds an extra-field line and a ``not-a-date`` line; the undated one belongs to the
    month of the line before it (the file is sorted by date)."""
    package = toronto.apis["ckan"].packages[0]
    body, _ = package.faulted_file(YEAR, "csv", 1, 0)
    lines = body.decode("latin-1").split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("not-a-date"))
    undated_month = lines[at - 1][:7]
    faults(toronto, {"malformed_row": 1})
    block = extract(source, undated_month)
    undated = [r for r in block.quarantine.to_pylist() if r["created_at"] == "not-a-date"]
    assert len(undated) == 1 and undated[0]["_reason"] == "unparseable created_at"
    assert landed_rows(block.data) == expected_rows(toronto, undated_month)


def test_a_download_reset_mid_body_is_repeated_whole(toronto, source):
    clean = extract(source)
    toronto.state.reset()
    faults(toronto, {"reset_mid_page": 1})
    again = extract(source)
    assert again.data.equals(clean.data)
    downloads = [p for p in logged(toronto) if p.endswith(f"sr{YEAR}.zip")]
    assert len(downloads) == 2


def test_a_busy_download_is_retried(toronto, source):
    faults(toronto, {"status_503": 2})
    assert extract(source).data.num_rows == sum(expected_rows(toronto).values())


# ---------------------------------------------------------------- watermark and late edits


def test_unchanged_last_modified_skips_without_downloading(toronto, lake):
    first = run_block(SOURCE, MONTH, lake=lake)
    toronto.state.reset()
    second = run_block(SOURCE, MONTH, lake=lake)
    assert first["skipped"] is False and second["skipped"] is True
    assert second["reason"] == f"source unchanged since last landing (watermark {first['watermark']})"
    assert second["rows"] == first["rows"] and second["sha256"] == first["sha256"]
    assert not [p for p in logged(toronto) if "/download/" in p]


def test_late_edits_reland_only_the_month_that_changed(toronto, lake):
    feb = run_block(SOURCE, "2024-02", lake=lake)
    mar = run_block(SOURCE, "2024-03", lake=lake)
    done = configure(toronto, {"late_edits": {"month": "2024-02", "n": 5}})["late_edits"][0]
    assert done["n"] == 5 and done["last_modified"] != feb["watermark"]

    feb2 = run_block(SOURCE, "2024-02", lake=lake)
    assert feb2["skipped"] is False and feb2["watermark"] == done["last_modified"]
    assert feb2["rows_changed"] == {"added": 0, "removed": 0, "changed": 5}  # the key ignores Status
    assert feb2["rows"] == feb["rows"] and feb2["sha256"] != feb["sha256"]
    statuses = dict(
        zip(landed(lake, "2024-02")["created_at"].to_pylist(), landed(lake, "2024-02")["status"].to_pylist())
    )
    for edit in done["rows"]:
        assert statuses[_when(edit["creation_date"])] == edit["new_status"]

    mar2 = run_block(SOURCE, "2024-03", lake=lake)
    assert mar2["skipped"] is True and mar2["reason"].startswith("content unchanged (same sha256)")
    assert mar2["sha256"] == mar["sha256"] and mar2["watermark"] == done["last_modified"]


# ---------------------------------------------------------------- CSV quirks: test_toronto_311_csv.py


def read(source, data: bytes, month="2024-02", piece=7):
    """Feed bytes in small pieces, so every boundary (BOM, header, multi-byte) is crossed."""
    return source.read_file((data[i : i + piece] for i in range(0, len(data), piece)), month, LANDED)


# ---------------------------------------------------------------- the forward zip reader

CSV_BODY = (
    ",".join(HEADER) + "\r\n"
).encode() + b"2024-02-05 10:00:00.0000000,Closed,M4C,,,W (19),Noise,MLS,Sec\r\n" * 5000


def _zip(members, compression=zipfile.ZIP_DEFLATED, streamed=False) -> bytes:
    buffer = io.BytesIO()

    class Unseekable(io.RawIOBase):  # makes zipfile write data descriptors, as streaming writers do
        def writable(self):
            return True

        def write(self, data):
            return buffer.write(data)

    target = Unseekable() if streamed else buffer
    with zipfile.ZipFile(target, "w", compression=compression) as archive:
        for name, data in members:
            if streamed:
                with archive.open(name, "w") as handle:
                    handle.write(data)
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "compression, streamed",
    # (a stored member written with a data descriptor cannot be read forward: refused, see below)
    [(zipfile.ZIP_DEFLATED, False), (zipfile.ZIP_DEFLATED, True), (zipfile.ZIP_STORED, False)],
)
def test_zip_members_are_read_forward_in_pieces(compression, streamed):
    data = _zip([("readme.txt", b"not this" * 1000), ("SR2024.csv", CSV_BODY)], compression, streamed)
    pieces = (data[i : i + 1000] for i in range(0, len(data), 1000))
    stream = ZipMemberStream(pieces, r"(?i)^sr2024\.csv$")
    assert b"".join(stream) == CSV_BODY
    assert stream.name == "SR2024.csv" and stream.skipped == ["readme.txt"] and stream.size == len(CSV_BODY)


def test_a_cut_or_corrupt_zip_is_a_transient_error_and_a_missing_member_is_not():
    data = _zip([("SR2024.csv", CSV_BODY)])
    with pytest.raises(TransientBodyError, match="cut short"):
        b"".join(ZipMemberStream([data[: len(data) // 2]], r"\.csv$"))
    stored = bytearray(_zip([("SR2024.csv", CSV_BODY)], zipfile.ZIP_STORED))
    stored[200] ^= 0x01
    with pytest.raises(TransientBodyError, match="CRC"):
        b"".join(ZipMemberStream([bytes(stored)], r"\.csv$"))
    with pytest.raises(CkanError, match="no zip member matches"):
        b"".join(ZipMemberStream([data], r"^SR2023\.csv$"))
    streamed_stored = _zip([("SR2024.csv", CSV_BODY)], zipfile.ZIP_STORED, streamed=True)
    with pytest.raises(CkanError, match="cannot be read forward"):
        b"".join(ZipMemberStream([streamed_stored], r"\.csv$"))


def test_the_year_file_in_zip_or_csv_form_gives_the_same_block(source):
    zipped = read(source, _zip([("SR2024.csv", CSV_BODY)]), piece=4096)
    plain = read(source, CSV_BODY, piece=4096)
    assert zipped.data.num_rows == plain.data.num_rows == 5000
    assert zipped.data.equals(plain.data) and zipped.stats["zip_member"] == "SR2024.csv"


# ---------------------------------------------------------------- requests without a location (issue 14)


def test_requests_without_a_location_land_with_nulls_and_broken_lines_are_still_quarantined(
    toronto, lake, source, reliability
):
    reliability.row(
        fault="requests without a location (empty Ward / postal prefix)",
        source=SOURCE,
        expected="rows with an empty Ward or postal prefix are requests: they land with nulls there, "
        "counted in the manifest's empty_values; lines that cannot be parsed (extra field, "
        "impossible or out-of-year date) are still quarantined with their reason",
    )
    configure(toronto, {"location_quirks": True, "date_quirks": True})
    counts = toronto.toronto.quirk_counts(YEAR)
    assert counts["empty_wards"] >= 2 and counts["empty_postal_prefixes"] >= 6

    # The whole year, block by block: every row lands (those without a location too), only the
    # broken lines are quarantined, and the empty values are counted.
    rows = quarantined = 0
    empty: Counter = Counter()
    reasons: Counter = Counter()
    for m in range(1, 13):
        month = f"{YEAR}-{m:02d}"
        block = extract(source, month)
        assert landed_rows(block.data) == expected_rows(toronto, month)
        rows += block.data.num_rows
        quarantined += block.quarantine.num_rows if block.quarantine is not None else 0
        empty.update(block.stats["empty_values"])
        reasons.update(block.stats["quarantine_reasons"])
    assert empty == {"ward": counts["empty_wards"], "postal_prefix": counts["empty_postal_prefixes"]}
    assert quarantined == counts["quarantine"] == counts["malformed_lines"] + 3 + 2
    assert rows + quarantined == counts["data_lines"]
    assert not {r for r in reasons if r.startswith("missing ")}, reasons

    # The month with most of them, through run_block: the manifest counts them, the lake holds them.
    located = Counter(
        r["Creation Date"][:7]
        for r in toronto.toronto.rows(YEAR)
        if is_valid_creation_date(r["Creation Date"])
        and r["Creation Date"].startswith(str(YEAR))
        and not (r["Ward"].strip() and r["First 3 Chars of Postal Code"].strip())
    )
    month, _n = located.most_common(1)[0]
    month_rows = toronto.toronto.rows_for_month(month)
    no_ward = sum(not r["Ward"].strip() for r in month_rows)
    no_postal = sum(not r["First 3 Chars of Postal Code"].strip() for r in month_rows)
    manifest = run_block(SOURCE, month, lake=lake)
    table = landed(lake, month)
    assert manifest["rows"] == table.num_rows == len(month_rows)
    assert manifest["empty_values"] == {k: v for k, v in (("postal_prefix", no_postal), ("ward", no_ward)) if v}
    assert manifest["quarantine_reasons"] == dict(expected_reasons(toronto, month))
    assert table["ward"].null_count == no_ward and table["postal_prefix"].null_count == no_postal
    assert pa.compute.count_distinct(table["request_id"]).as_py() == table.num_rows
    reliability.observed(
        f"year {YEAR}: {rows:,} of {rows + quarantined:,} lines landed, {quarantined} quarantined "
        f"({', '.join(sorted(reasons))}); {counts['empty_wards']} empty wards and "
        f"{counts['empty_postal_prefixes']} empty postal prefixes landed with nulls; "
        f"{month}: {manifest['rows']:,} rows, empty_values={manifest['empty_values']}"
    )
