"""Chicago 311, the city added by its dataset file alone: the generic Socrata adapter lands it, the
replay server generates its rows, and the dbt files generated from the same file put it in
fct_service_requests. End to end: two months from the replay server through the real adapter,
then `dbt build` of the city's selection, and the city's fact rows are the replay's rows."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml
from dbt_helpers import dbt_build, query

from civic_pipelines import sources
from civic_pipelines.adapters import DATASETS_DIR
from civic_pipelines.devtools import dbt_311
from civic_pipelines.extract import run_block

ROOT = Path(__file__).resolve().parents[1]
MONTHS = ["2024-02", "2024-03"]
EDITED_MONTH = MONTHS[1]
CONFIG = tomllib.loads((DATASETS_DIR / "chicago_311.toml").read_text())


def test_the_city_is_configuration_only():
    source = sources.get("chicago_311")
    assert type(source).__name__ == "SocrataDatasetSource"
    assert source.dataset_id == "v6vf-nfxy" and source.SPEC.default_base_url == "https://data.cityofchicago.org"
    # No hand-written Python or SQL names the city: the pipeline's code, the DAG files and the dbt
    # project hold it only in the files generated from its dataset file.
    generated = set(dbt_311.generated_files())
    package = ROOT / "include" / "civic_pipelines"
    code = [p for p in package.rglob("*.py")] + list((ROOT / "dags").glob("*.py"))
    dbt = [
        p
        for p in (ROOT / "dbt").rglob("*")
        if p.suffix in (".sql", ".yml", ".md") and "target" not in p.parts and "logs" not in p.parts
    ]
    naming = [p for p in code + dbt if p not in generated and "chicago_311" in p.read_text().lower()]
    assert naming == []
    staging = ROOT / "dbt" / "models" / "staging" / "chicago_311"
    assert {p for p in staging.iterdir()} <= generated and len(list(staging.iterdir())) == 3
    # the source yml's types are the lake's, from the dataset file's field types
    sources_yml = yaml.safe_load((staging / "_chicago_311__sources.yml").read_text())
    declared = {c["name"]: c["data_type"] for c in sources_yml["sources"][0]["tables"][0]["columns"]}
    for name, kind in [
        ("sr_number", "varchar"),
        ("created_date", "timestamp"),
        ("community_area", "integer"),
        ("latitude", "double"),
        ("_landed_at", "timestamptz"),
    ]:
        assert declared[name] == kind, name


def expected_rows(dataset, months) -> dict[str, tuple]:
    """The fact's row for each replayed request, computed from the wire rows as published."""

    def wall(text):
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S") if text else None

    def number(text):
        return float(text) if text is not None else None

    want = {}
    for month in months:
        for row in dataset.rows_for_month(month):
            opened, closed = wall(row["created_date"]), wall(row.get("closed_date"))
            hours = (closed - opened).total_seconds() / 3600 if closed and closed >= opened else None
            area = row.get("community_area")
            want[row["sr_number"]] = (
                opened,
                closed,
                row["status"],
                row["sr_type"],
                area,
                "community area" if area else None,
                hours,
                number(row.get("longitude")),
                number(row.get("latitude")),
                month,
            )
    return want


def fact_rows(warehouse) -> dict[str, tuple]:
    rows = query(
        warehouse,
        """
        select request_id, opened_at, closed_at, status, request_type, area, area_system, hours_to_close,
               longitude, latitude, _block_month
        from fct_service_requests where city = 'chicago'""",
    )
    return {r[0]: r[1:] for r in rows}


def same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key][:6] == row[:6], key
        for a, b in zip(got[key][6:9], row[6:9]):
            assert (a is None and b is None) or a == pytest.approx(b, abs=1e-6), key
        assert got[key][9] == row[9], key


def test_two_replayed_months_reach_the_fact_as_published(replay, tmp_path, monkeypatch):
    host, port = replay.url.split("://", 1)[1].split(":")
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CIVIC_CHICAGO_311",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"}),
    )
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.setenv("CIVIC_LAKE", str(lake))
    monkeypatch.setenv("CIVIC_WAREHOUSE", str(warehouse))
    requests.post(f"{replay.url}/_replay/reset", json={}, timeout=10).raise_for_status()
    dataset = replay.generated["chicago_311"]

    manifests = [run_block("chicago_311", month) for month in MONTHS]
    assert [m["rows"] for m in manifests] == [len(dataset.rows_for_month(m)) for m in MONTHS]
    assert all(m["rows"] > 2000 for m in manifests)

    # The city's DAG selection, on a warehouse no other city has built.
    nodes = dbt_build(tmp_path, ["tag:chicago_311+"])
    assert nodes["fct_service_requests"][0] == "success"
    assert nodes["unique_stg_chicago_311__requests_request_id"] == ("pass", 0)
    assert nodes["unique_combination_of_columns_fct_service_requests_city__request_id"] == ("pass", 0)
    assert nodes["assert_service_request_types_mapped"] == ("pass", 0)
    assert "stg_nyc_311__requests" not in nodes
    assert dict(query(warehouse, "select city, count(*) from fct_service_requests group by city")) == {
        "chicago": sum(m["rows"] for m in manifests)
    }
    same(fact_rows(warehouse), expected_rows(dataset, MONTHS))
    # every replayed request type is on a shared category (the seed holds the whole vocabulary)
    assert query(
        warehouse, "select count(*) from fct_service_requests where city = 'chicago' and major_category is null"
    ) == [(0,)]
    types = CONFIG["replay"]["tables"]["types"]
    vocabulary = {row[types["columns"].index("sr_type")] for row in types["rows"]}
    assert {
        r[0] for r in query(warehouse, "select request_type from service_category_map where city = 'chicago'")
    } >= vocabulary

    # A late edit re-lands one month; its rows are replaced, the other month's kept.
    before = dict(query(warehouse, "select _block_month, max(_landed_at) from fct_service_requests group by 1"))
    edited = dataset.apply_late_edits(EDITED_MONTH, 5)
    assert [run_block("chicago_311", month)["skipped"] for month in MONTHS] == [True, False]
    dbt_build(tmp_path, ["tag:chicago_311+"])
    after = dict(query(warehouse, "select _block_month, max(_landed_at) from fct_service_requests group by 1"))
    assert after[MONTHS[0]] == before[MONTHS[0]] and after[EDITED_MONTH] > before[EDITED_MONTH]
    got = fact_rows(warehouse)
    same(got, expected_rows(dataset, MONTHS))
    assert all(got[key][2] == "Completed" for key in edited)
