"""The generic ArcGIS adapter with the Minneapolis 311 dataset file, against the replay server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
from replay_env import control

from civic_pipelines import sources
from civic_pipelines.adapters import DatasetConfigError, load_dataset
from civic_pipelines.adapters.arcgis import ArcGisServiceError, typed_column
from civic_pipelines.connections import resolve
from civic_pipelines.extract import run_block
from civic_pipelines.http import make_session
from civic_pipelines.replay.arcgis import MINNEAPOLIS_PATH
from civic_pipelines.sources.base import SchemaDriftError

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "minneapolis_311"
MONTH = "2024-02"
FEB_START_MS = 1_706_745_600_000  # 2024-02-01T00:00:00Z
MAR_START_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
VARIABLE = "AIRFLOW_VAR_CIVIC_MINNEAPOLIS_311_LAYERS"


@pytest.fixture
def source():
    return sources.get(SOURCE)


@pytest.fixture
def mpls(replay, point_at_replay, monkeypatch):
    """The replay server with the minneapolis_311 connection pointing at it."""
    point_at_replay(replay, "civic_minneapolis_311", offline=True)
    monkeypatch.delenv(VARIABLE, raising=False)
    return replay


def configure(server, section: str, body: dict) -> dict:
    return control(server, "config", {section: body})[section]


def faults(server, body: dict) -> None:
    control(server, "faults", body)


def query_requests(server) -> list[dict]:
    """The /query requests the server saw, as parameter dicts, in order."""
    entries = requests.get(f"{server.url}/_replay/requests", timeout=30).json()
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(e).query, keep_blank_values=True).items()}
        for e in entries
        if urlsplit(e).path.endswith("/query")
    ]


def landed(lake, month=MONTH, name="data.parquet"):
    return pq.read_table(Path(lake) / SOURCE / f"month={month}" / name)


def expected_ids(server, month=MONTH) -> set[int]:
    return {row["OBJECTID"] for row in server.minneapolis.rows_for_month(month)}


def connection():
    return resolve("civic_minneapolis_311", sources.spec(SOURCE).default_base_url)


# ---------------------------------------------------------------- dataset file and request shape


def test_dataset_file_describes_the_source(source):
    spec = source.SPEC
    assert spec.name == SOURCE and spec.conn_id == "civic_minneapolis_311"
    assert spec.cron == "0 0 1 * *" and spec.cadence == "monthly" and spec.first_month == "2015-01"
    assert spec.default_base_url == "https://services.arcgis.com" and spec.natural_key == "object_id"
    assert spec.dbt_tag == SOURCE and spec.pool == "civic_minneapolis_311_api"
    assert SOURCE in sources.names()


def test_where_clause_takes_the_utc_month_including_the_year_end(source):
    assert source.where_clause("2024-02") == (
        "OPENEDDATETIME >= DATE '2024-02-01 00:00:00' AND OPENEDDATETIME < DATE '2024-03-01 00:00:00'"
    )
    assert source.where_clause("2024-12") == (
        "OPENEDDATETIME >= DATE '2024-12-01 00:00:00' AND OPENEDDATETIME < DATE '2025-01-01 00:00:00'"
    )


@pytest.mark.parametrize("page_size,rows", [(500, 1730), (700, 2100)])
def test_pages_step_by_the_layers_max_record_count(mpls, source, page_size, rows):
    server = mpls
    configure(server, SOURCE, {"max_record_count": page_size, "rows_per_month": rows})
    server.state.reset()
    with make_session() as session:
        probed = source.probe(session, connection(), month=MONTH)
        assert probed["max_record_count"] == page_size
        block = source.extract_block(session, connection(), MONTH, probed)
    pages = -(-rows // page_size)
    sent = query_requests(server)
    assert [int(p["resultOffset"]) for p in sent] == [page_size * k for k in range(pages)]
    for params in sent:
        assert params["resultRecordCount"] == str(page_size)
        assert params["where"] == source.where_clause(MONTH)
        assert params["outFields"] == "*" and params["f"] == "json" and params["outSR"] == "4326"
        assert params["orderByFields"] == "OBJECTID ASC"
    assert block.stats["pages"] == pages and block.stats["page_size"] == page_size
    assert block.data.num_rows == rows
    assert set(block.data["object_id"].to_pylist()) == expected_ids(server)


def test_block_lands_exactly_the_month_with_typed_columns(mpls, source, lake):
    server = mpls
    rows = server.minneapolis.rows_for_month(MONTH)
    manifest = run_block(SOURCE, MONTH, lake=lake)
    table = landed(lake)

    # Independently: OBJECTID is unique, nothing breaks the contract, so every row lands once;
    # CASEID repeats are counted, not collapsed.
    case_ids = [row["CASEID"] for row in rows]
    assert sorted(table["object_id"].to_pylist()) == sorted(row["OBJECTID"] for row in rows)
    assert manifest["rows"] == table.num_rows == len(rows)
    assert manifest["quarantined"] == 0 and manifest["skipped"] is False
    assert manifest["duplicates_collapsed"] == 0
    assert manifest["duplicate_values"] == {"case_id": len(case_ids) - len(set(case_ids))} and len(set(case_ids)) < len(
        rows
    )
    assert manifest["watermark"] == str(server.minneapolis.layer_last_edit_date(2024))
    assert manifest["drift"] == {"new_fields": [], "missing_fields": []}
    assert manifest["pages"] == -(-len(rows) // 2000)  # the replay's default maxRecordCount

    assert table.schema.equals(source.data_schema)
    utc_ms = pa.timestamp("ms", tz="UTC")
    expected_types = {
        "object_id": pa.int64(),
        "case_id": pa.int64(),
        "subject_name": pa.string(),
        "reason_name": pa.string(),
        "type_name": pa.string(),
        "title": pa.string(),
        "opened_at": utc_ms,
        "case_status": pa.int32(),
        "closed_at": utc_ms,
        "x_coord": pa.float64(),
        "y_coord": pa.float64(),
        "last_updated_at": utc_ms,
        "is_accessibility_related": pa.string(),
        "longitude": pa.float64(),
        "latitude": pa.float64(),
        "layer_year": pa.int32(),
        "_block_month": pa.string(),
        "_landed_at": pa.timestamp("us", tz="UTC"),
    }
    assert {f.name: f.type for f in table.schema} == expected_types

    by_id = {row["OBJECTID"]: row for row in rows}
    for record in table.slice(0, 200).to_pylist():
        wire = by_id[record["object_id"]]
        assert record["case_id"] == wire["CASEID"] and record["type_name"] == wire["TYPENAME"]
        assert int(record["opened_at"].timestamp() * 1000) == wire["OPENEDDATETIME"]
        assert (
            record["closed_at"] is None
            if wire["CLOSEDDATETIME"] is None
            else int(record["closed_at"].timestamp() * 1000) == wire["CLOSEDDATETIME"]
        )
        assert int(record["last_updated_at"].timestamp() * 1000) == wire["LastUpdateDate"]
        assert record["case_status"] == wire["CASESTATUS"] and record["x_coord"] == wire["XCOORD"]
        assert -93.33 <= record["longitude"] <= -93.19 and 44.89 <= record["latitude"] <= 45.06
        assert record["_block_month"] == MONTH and record["layer_year"] == 2024
    opened = table["opened_at"].to_pylist()
    assert min(opened) >= datetime(2024, 2, 1, tzinfo=UTC) and max(opened) < datetime(2024, 3, 1, tzinfo=UTC)
    assert table["object_id"].to_pylist() == sorted(table["object_id"].to_pylist())


def test_unchanged_watermark_skips_and_force_relands_the_same_content(mpls, lake):
    first = run_block(SOURCE, MONTH, lake=lake)
    before = len(query_requests(mpls))
    again = run_block(SOURCE, MONTH, lake=lake)
    assert again["skipped"] is True and "unchanged" in again["reason"] and again["watermark"] == first["watermark"]
    assert len(query_requests(mpls)) == before, "a skipped block must not query the layer"
    forced = run_block(SOURCE, MONTH, lake=lake, force=True)
    assert forced["skipped"] is False and forced["sha256"] == first["sha256"]


def test_late_edits_move_the_watermark_and_reland_the_block(mpls, lake):
    server = mpls
    first = run_block(SOURCE, MONTH, lake=lake)
    january = run_block(SOURCE, "2024-01", lake=lake)
    december = run_block(SOURCE, "2023-12", lake=lake)
    june = run_block(SOURCE, "2023-06", lake=lake)
    edit = configure(server, SOURCE, {"late_edits": {"month": MONTH, "n": 5}})["late_edits"][0]
    assert len(edit["object_ids"]) == 5

    relanded = run_block(SOURCE, MONTH, lake=lake)
    assert relanded["skipped"] is False
    assert relanded["watermark"] == str(edit["lastEditDate"]) != first["watermark"]
    assert relanded["rows_changed"] == {"added": 0, "removed": 0, "changed": 5}
    assert relanded["rows"] == first["rows"] and relanded["sha256"] != first["sha256"]
    table = landed(lake)
    edited = table.filter(pc.is_in(table["object_id"], pa.array(edit["object_ids"], pa.int64())))
    assert edited.num_rows == 5
    assert {int(t.timestamp() * 1000) for t in edited["last_updated_at"].to_pylist()} == {edit["lastEditDate"]}

    # The watermark is the layer's: another month of 2024 is fetched again but keeps its landing,
    # and so is December 2023, which also reads the 2024 layer (its year edge); the 2023 layer
    # did not move at all, so its other months are not even fetched.
    jan_again = run_block(SOURCE, "2024-01", lake=lake)
    assert jan_again["skipped"] is True and "same sha256" in jan_again["reason"]
    assert jan_again["sha256"] == january["sha256"]
    assert run_block(SOURCE, "2024-01", lake=lake)["reason"].startswith("source unchanged")
    dec_again = run_block(SOURCE, "2023-12", lake=lake)
    assert dec_again["skipped"] is True and "same sha256" in dec_again["reason"]
    assert dec_again["watermark"] == f"{june['watermark']}|2024={edit['lastEditDate']}" != december["watermark"]
    june_again = run_block(SOURCE, "2023-06", lake=lake)
    assert june_again["skipped"] is True and june_again["reason"].startswith("source unchanged")


# ---------------------------------------------------------------- errors and retries


def test_error_envelope_on_http_200_raises_after_retrying_5xx(mpls, lake):
    server = mpls
    configure(server, "arcgis", {"arcgis_error": 10})
    with pytest.raises(
        ArcGisServiceError, match=r"ArcGIS error 500 from .*/query .*Error performing query operation"
    ) as raised:
        run_block(SOURCE, MONTH, lake=lake)
    assert raised.value.code == 500
    assert len(query_requests(server)) == 3, "a 5xx envelope is tried three times (two retries)"
    assert not (Path(lake) / SOURCE / f"month={MONTH}" / "data.parquet").exists()


def test_a_passing_5xx_envelope_is_retried(mpls, lake):
    server = mpls
    configure(server, "arcgis", {"arcgis_error": 2})
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert manifest["rows"] == len(expected_ids(server))


def test_a_4xx_envelope_fails_at_once(mpls, lake, monkeypatch):
    # The Variable points 2024 at a layer the service does not have: ArcGIS says "Invalid URL" (400).
    monkeypatch.setenv(VARIABLE, json.dumps({"2024": MINNEAPOLIS_PATH.format(year=2099)}))
    with pytest.raises(ArcGisServiceError, match=r"ArcGIS error 400 .*Public_311_2099.*Invalid URL"):
        run_block(SOURCE, MONTH, lake=lake)
    entries = requests.get(f"{mpls.url}/_replay/requests", timeout=30).json()
    assert len(entries) == 1 and "Public_311_2099" in entries[0]


def test_the_variable_chooses_the_years_layer(mpls, lake, monkeypatch):
    # The connection goes nowhere; only the Variable's full URL reaches the service.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_MINNEAPOLIS_311",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "schema": "http"}),
    )
    monkeypatch.setenv(
        VARIABLE, json.dumps({2024: mpls.url + MINNEAPOLIS_PATH.format(year=2024).replace("/arcgis/", "/ArcGIS/")})
    )
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert manifest["rows"] == len(expected_ids(mpls)) and "/ArcGIS/" in manifest["layer_url"]
    monkeypatch.setenv(VARIABLE, "[1, 2]")
    with pytest.raises(ValueError, match="civic_minneapolis_311_layers"):
        run_block(SOURCE, MONTH, lake=lake, force=True)


def test_429_with_retry_after_and_a_503_burst_are_retried(mpls, lake):
    server = mpls
    faults(server, {"status_429": 2, "retry_after": 1})
    started = time.monotonic()
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert manifest["rows"] == len(expected_ids(server))
    assert time.monotonic() - started >= 2.0, "two Retry-After: 1 answers cost at least 2 s"
    faults(server, {"status_503": 3})
    assert run_block(SOURCE, MONTH, lake=lake, force=True)["rows"] == len(expected_ids(server))
    assert requests.get(f"{server.url}/_replay/faults", timeout=30).json()["fired"]["status_503"] == 3


def test_connection_reset_mid_page_repeats_the_page(mpls, lake):
    faults(mpls, {"reset_mid_page": 1})
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert set(landed(lake)["object_id"].to_pylist()) == expected_ids(mpls)
    assert manifest["rows"] == len(expected_ids(mpls))


# ---------------------------------------------------------------- contract: quarantine and duplicates


def test_malformed_rows_go_to_quarantine_with_the_reason(mpls, lake):
    faults(mpls, {"malformed_row": 1})
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert manifest["rows"] == len(expected_ids(mpls))
    assert set(landed(lake)["object_id"].to_pylist()) == expected_ids(mpls)
    quarantine = landed(lake, name="quarantine.parquet")
    assert manifest["quarantined"] == quarantine.num_rows == 2
    assert sorted(quarantine["_reason"].to_pylist()) == ["missing object_id", "unparseable opened_at"]
    assert manifest["quarantine_reasons"] == {"missing object_id": 1, "unparseable opened_at": 1}
    assert "not-a-date" in quarantine["opened_at"].to_pylist()
    assert set(quarantine["_block_month"].to_pylist()) == {MONTH}


def test_a_repeated_object_id_keeps_the_latest_update(mpls, lake):
    faults(mpls, {"duplicate_row": 1})
    manifest = run_block(SOURCE, MONTH, lake=lake)
    table = landed(lake)
    rows = mpls.minneapolis.rows_for_month(MONTH)
    assert manifest["duplicates_collapsed"] == 1 and table.num_rows == len(rows)
    first = rows[0]
    kept = table.filter(pc.equal(table["object_id"], first["OBJECTID"])).to_pylist()
    assert len(kept) == 1
    assert int(kept[0]["last_updated_at"].timestamp() * 1000) == first["LastUpdateDate"] + 3_600_000


def test_rows_outside_the_block_and_odd_values(source):
    def feature(oid, opened, **more):
        return {"attributes": {"OBJECTID": oid, "OPENEDDATETIME": opened, **more}, "geometry": {"x": -93.2, "y": 45.0}}

    features = [
        feature(1, FEB_START_MS),  # the month's first instant is in
        feature(2, MAR_START_MS - 1),  # its last millisecond is in
        feature(3, MAR_START_MS),  # the next month's first instant is out
        feature(4, FEB_START_MS - 1),
        feature(
            5, FEB_START_MS + 10, CASESTATUS="open", CASEID=2.024e11
        ),  # bad optional -> null; integral double -> int
        feature(6.5, FEB_START_MS),  # a fractional id is not an id
        feature(7, None),
    ]
    landed_at = datetime(2026, 1, 1, tzinfo=UTC)
    good, quarantine, stats = source.page_table(features, {}, MONTH, landed_at)
    assert good["object_id"].to_pylist() == [1, 2, 5]
    assert dict(zip(quarantine["object_id"].to_pylist(), quarantine["_reason"].to_pylist())) == {
        "3": f"opened_at outside block {MONTH}",
        "4": f"opened_at outside block {MONTH}",
        "6.5": "unparseable object_id",
        "7": "missing opened_at",
    }
    assert stats["nulled_values"] == {"case_status": 1}
    assert good.to_pylist()[2]["case_status"] is None and good.to_pylist()[2]["case_id"] == 202_400_000_000
    assert good["longitude"].to_pylist() == [-93.2] * 3


def test_typed_columns_never_truncate():
    values, bad = typed_column([1, 1.5, "7", True, None], "int64")
    assert values.to_pylist() == [1, None, 7, None, None] and bad.to_pylist() == [False, True, False, True, False]
    values, bad = typed_column([2**40], "int32")
    assert values.to_pylist() == [None] and bad.to_pylist() == [True]
    values, bad = typed_column([FEB_START_MS, "not-a-date"], "timestamp")
    assert values.type == pa.timestamp("ms", tz="UTC") and bad.to_pylist() == [False, True]
    values, bad = typed_column([12, "x", None], "string")
    assert values.to_pylist() == ["12", "x", None] and not any(bad.to_pylist())


# ---------------------------------------------------------------- drift and configuration


def _fields(names):
    types = {
        "OBJECTID": "esriFieldTypeOID",
        "OPENEDDATETIME": "esriFieldTypeDate",
        "CLOSEDDATETIME": "esriFieldTypeDate",
        "LastUpdateDate": "esriFieldTypeDate",
        "CASEID": "esriFieldTypeDouble",
        "CASESTATUS": "esriFieldTypeInteger",
        "XCOORD": "esriFieldTypeDouble",
        "YCOORD": "esriFieldTypeDouble",
    }
    return [{"name": n, "type": types.get(n, "esriFieldTypeString")} for n in names]


def test_drift_reports_new_missing_and_changed_fields_and_fails_on_a_required_one(source):
    wires = [f.source for f in source.fields]
    drift = source.drift(_fields([n for n in wires if n != "IsAccessibilityRelated"] + ["NEIGHBORHOOD"]))
    assert drift["new_fields"] == ["NEIGHBORHOOD"] and drift["missing_fields"] == ["IsAccessibilityRelated"]
    renamed = source.drift(_fields(["LASTUPDATEDATE" if n == "LastUpdateDate" else n for n in wires]))
    assert renamed["renamed_case"] == {"LastUpdateDate": "LASTUPDATEDATE"} and renamed["missing_fields"] == []
    assert renamed["wire_names"]["LastUpdateDate"] == "LASTUPDATEDATE"
    changed = source.drift(
        [{**f, "type": "esriFieldTypeString"} if f["name"] == "CASESTATUS" else f for f in _fields(wires)]
    )
    assert changed["changed_types"] == {"CASESTATUS": {"expected": "int32", "layer": "esriFieldTypeString"}}
    with pytest.raises(SchemaDriftError, match="OPENEDDATETIME"):
        source.drift(_fields([n for n in wires if n != "OPENEDDATETIME"]))


def test_probe_needs_the_month(mpls, source):
    with make_session() as session, pytest.raises(TypeError, match="month"):
        source.probe(session, connection())


def test_a_bad_dataset_file_names_the_problem(tmp_path):
    text = (ROOT / "include/civic_pipelines/datasets/minneapolis_311.toml").read_text()
    bad = tmp_path / "minneapolis_311.toml"
    bad.write_text(text.replace('type = "int32"', 'type = "integer"'))
    with pytest.raises(DatasetConfigError, match="CASESTATUS: type must be one of"):
        load_dataset(bad)
    bad.write_text(text.replace('date_field = "OPENEDDATETIME"', 'date_field = "OPENED"'))
    with pytest.raises(DatasetConfigError, match="date_field 'OPENED'"):
        load_dataset(bad)


def test_an_empty_month_lands_an_empty_block(mpls, lake):
    configure(mpls, SOURCE, {"rows_per_month": 0})
    manifest = run_block(SOURCE, MONTH, lake=lake)
    assert manifest["rows"] == 0 and manifest["pages"] == 1 and manifest["quarantined"] == 0
    assert landed(lake).num_rows == 0


# ---------------------------------------------------------------- year edges (issue 14)


@pytest.mark.parametrize(
    "zone, month, neighbour, other",
    [
        # west of UTC: the evening of 31 December local (1 January UTC) is in the previous year's layer
        ("America/Chicago", "2024-01", 2023, "2023-12"),
        # east of UTC: the morning of 1 January local (31 December UTC) is in the next year's layer
        ("Pacific/Auckland", "2023-12", 2024, "2024-01"),
    ],
)
def test_a_month_at_a_year_edge_reads_the_neighbouring_years_layer(
    mpls, lake, reliability, zone, month, neighbour, other
):
    from fault_checks import assert_exactly

    reliability.row(
        fault=f"year layers split by the publisher's local year ({zone})",
        source=SOURCE,
        expected=f"the UTC month {month} spans two layers: the block also reads the {neighbour} layer "
        "with the same UTC-month where, so every request of the month lands once, in this "
        f"block only (the {other} block on the other side of the edge lands exactly its own)",
    )
    server = mpls
    configure(server, SOURCE, {"layer_time_zone": zone, "rows_per_month": 2237, "max_record_count": 1000})
    dataset = server.minneapolis
    rows = dataset.rows_for_month(month)
    own = int(month[:4])
    filed = {own: 0, neighbour: 0}
    for row in rows:
        filed[dataset.layer_of(row["OPENEDDATETIME"])] += 1
    assert 0 < filed[neighbour] < 100 and filed[own] + filed[neighbour] == len(rows) == 2237

    manifest = run_block(SOURCE, month, lake=lake)
    landed_rows = assert_exactly(lake, SOURCE, month, [r["OBJECTID"] for r in rows])
    assert manifest["layer_rows"] == {str(own): filed[own], str(neighbour): filed[neighbour]}
    assert manifest["quarantined"] == 0 and manifest["duplicates_collapsed"] == 0
    assert manifest["watermark"] == (
        f"{dataset.layer_last_edit_date(own)}|{neighbour}={dataset.layer_last_edit_date(neighbour)}"
    )
    table = landed(lake, month)
    layer_of = dict(zip(table["object_id"].to_pylist(), table["layer_year"].to_pylist()))
    assert all(layer_of[r["OBJECTID"]] == dataset.layer_of(r["OPENEDDATETIME"]) for r in rows)
    # Only the month's rows were asked of the neighbour: the same UTC-month where on both layers.
    sent = query_requests(server)
    assert {p["where"] for p in sent} == {sources.get(SOURCE).where_clause(month)}

    # The month on the other side of the edge: exactly its own rows, none of this month's.
    before = run_block(SOURCE, other, lake=lake)
    other_rows = assert_exactly(lake, SOURCE, other, [r["OBJECTID"] for r in dataset.rows_for_month(other)])
    assert before["rows"] == other_rows
    reliability.observed(
        f"{month}: {landed_rows:,} of {len(rows):,} requests landed ({filed[neighbour]} from the "
        f"{neighbour} layer, layer_rows={manifest['layer_rows']}); {other}: {other_rows:,} of "
        f"{other_rows:,}, no key in both blocks"
    )


def test_a_neighbour_layer_that_does_not_exist_adds_nothing(mpls, lake):
    configure(
        mpls,
        SOURCE,
        {"layer_time_zone": "America/Chicago", "rows_per_month": 300, "first_year": 2020, "last_year": 2024},
    )
    dataset = mpls.minneapolis
    january = run_block(SOURCE, "2020-01", lake=lake)  # no 2019 layer
    assert january["rows"] == len(dataset.rows_for_month("2020-01")) == 300
    assert january["layer_rows"] == {"2020": 300, "2019": None}
    assert january["watermark"] == f"{dataset.layer_last_edit_date(2020)}|2019=absent"
    december = run_block(SOURCE, "2024-12", lake=lake)  # no 2025 layer yet
    assert december["rows"] == 300 and december["layer_rows"] == {"2024": 300, "2025": None}
    # The next year's layer appears: the December block is checked again (its watermark moved).
    configure(mpls, SOURCE, {"last_year": 2025})
    again = run_block(SOURCE, "2024-12", lake=lake)
    assert again["watermark"].endswith(f"|2025={dataset.layer_last_edit_date(2025)}")
    assert again["skipped"] is True and "same sha256" in again["reason"]


def test_a_broken_neighbour_layer_fails_the_block(mpls, lake, monkeypatch):
    """Only a layer the service does not have is skipped; any other error fails the block."""
    configure(mpls, SOURCE, {"rows_per_month": 300})
    # an unknown service path is "Invalid URL": absent, as for a year not yet published
    monkeypatch.setenv(VARIABLE, json.dumps({"2023": "/no/such/path"}))
    assert run_block(SOURCE, "2024-01", lake=lake)["layer_rows"] == {"2024": 300, "2023": None}
    # a layer URL that answers another ArcGIS error (here a query without where) fails the block
    monkeypatch.setenv(VARIABLE, json.dumps({"2023": MINNEAPOLIS_PATH.format(year=2024) + "/query"}))
    with pytest.raises(ArcGisServiceError, match="Invalid query parameters"):
        run_block(SOURCE, "2024-01", lake=lake, force=True)
    assert landed(lake, "2024-01").num_rows == 300  # the previous landing stays
