"""NYC 311, the city added by configuration alone: the generic Socrata adapter reads its dataset
file, and the replay server generates its rows from the same file."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest
import requests

from civic_pipelines import sources
from civic_pipelines.adapters import DATASETS_DIR, DatasetConfigError, load_dataset
from civic_pipelines.connections import resolve
from civic_pipelines.extract import run_block
from civic_pipelines.http import make_session

MONTHS = ["2024-02", "2024-03"]
PACKAGE = Path(sources.__file__).resolve().parent.parent


@pytest.fixture
def nyc(replay, point_at_replay):
    point_at_replay(replay, "civic_nyc_311")
    requests.post(f"{replay.url}/_replay/reset", json={}, timeout=10).raise_for_status()
    return replay


def configure(server, body):
    response = requests.post(f"{server.url}/_replay/config", json={"nyc_311": body}, timeout=30)
    response.raise_for_status()
    return response.json()["nyc_311"]


def resource_requests(server):
    entries = requests.get(f"{server.url}/_replay/requests", timeout=10).json()  # "path?query" strings
    return [urlsplit(e) for e in entries if e.startswith("/resource/erm2-nwe9")]


def landed(lake, month, name="data.parquet"):
    return pq.read_table(Path(lake) / "nyc_311" / f"month={month}" / name)


def test_the_city_is_configuration_only():
    source = sources.get("nyc_311")
    assert type(source).__name__ == "SocrataDatasetSource"
    assert source.dataset_id == "erm2-nwe9" and source.SPEC.default_base_url == "https://data.cityofnewyork.us"
    # No Python names the city: not a source module, not a replay module, not a DAG file.
    # (The pipeline's code: what turns a dataset file into blocks, DAGs and replayed rows.)
    pipeline = [PACKAGE / name for name in ("adapters", "sources", "replay", "orchestration")]
    python = [p for folder in pipeline for p in folder.rglob("*.py")] + list(PACKAGE.glob("*.py"))
    python += list((PACKAGE.parent.parent / "dags").glob("*.py"))
    assert [p for p in python if "nyc" in p.read_text().lower() or "nyc" in p.name] == []
    assert (DATASETS_DIR / "nyc_311.toml").exists()


def test_two_months_land_exactly_the_replay_rows_and_skip_when_unchanged(nyc, lake):
    dataset = nyc.generated["nyc_311"]
    for month in MONTHS:
        manifest = run_block("nyc_311", month, lake=lake)
        want = dataset.rows_for_month(month)
        table = landed(lake, month)
        assert manifest["rows"] == table.num_rows == len(want) > 2500
        assert table["unique_key"].to_pylist() == sorted(int(row["unique_key"]) for row in want)
        assert set(table["_block_month"].to_pylist()) == {month}
        created = table["created_date"].to_pylist()
        assert min(created).strftime("%Y-%m") == max(created).strftime("%Y-%m") == month
        by_key = {int(row["unique_key"]): row for row in want}
        for row in table.slice(0, 50).to_pylist():
            wire = by_key[row["unique_key"]]
            assert row["complaint_type"] == wire["complaint_type"] and row["status"] == wire["status"]
            assert row["created_date"].strftime("%Y-%m-%dT%H:%M:%S.000") == wire["created_date"]
            assert (row["latitude"] is None) == ("latitude" not in wire)
    again = run_block("nyc_311", MONTHS[0], lake=lake)
    assert again["skipped"] and "watermark" in again["reason"]


def test_paging_is_exact_and_ordered_by_row_id(nyc):
    source = sources.get("nyc_311")
    configure(nyc, {"rows_per_month": 2500})
    connection = resolve("civic_nyc_311", source.SPEC.default_base_url)
    with make_session() as session:
        pages = list(source.iter_pages(session, connection.base_url, "default", MONTHS[0], page_size=1000))
    assert [page.rows for page in pages] == [1000, 1000, 500]
    queries = [parse_qs(e.query) for e in resource_requests(nyc)]
    assert [q["$offset"][0] for q in queries] == ["0", "1000", "2000"]
    assert {q["$order"][0] for q in queries} == {":id"}
    assert queries[0]["$where"][0] == (
        "created_date >= '2024-02-01T00:00:00.000' AND created_date < '2024-03-01T00:00:00.000'"
    )


def test_malformed_and_duplicate_rows_are_quarantined_or_collapsed(nyc, lake):
    requests.post(
        f"{nyc.url}/_replay/faults", json={"malformed_row": 1, "duplicate_row": 1}, timeout=10
    ).raise_for_status()
    manifest = run_block("nyc_311", MONTHS[0], lake=lake)
    assert manifest["quarantine_reasons"] == {"missing unique_key": 1, "unparseable created_date": 1}
    assert manifest["duplicates_collapsed"] == 1
    table = landed(lake, MONTHS[0])
    assert (
        table.num_rows
        == len(set(table["unique_key"].to_pylist()))
        == len(nyc.generated["nyc_311"].rows_for_month(MONTHS[0]))
    )
    quarantine = landed(lake, MONTHS[0], "quarantine.parquet")
    assert sorted(quarantine["_reason"].to_pylist()) == ["missing unique_key", "unparseable created_date"]
    assert quarantine.schema.field("unique_key").type == "string"  # kept as published


def test_late_edits_reland_the_month_and_report_changed_rows(nyc, lake):
    run_block("nyc_311", MONTHS[1], lake=lake)
    before = {r["unique_key"]: r for r in landed(lake, MONTHS[1]).to_pylist()}
    edited = configure(nyc, {"late_edits": {"month": MONTHS[1], "n": 7}})["late_edits"][0]["keys"]
    manifest = run_block("nyc_311", MONTHS[1], lake=lake)
    assert not manifest["skipped"]
    assert manifest["rows_changed"] == {"added": 0, "removed": 0, "changed": 7}
    after = {r["unique_key"]: r for r in landed(lake, MONTHS[1]).to_pylist()}
    assert after.keys() == before.keys()
    for key in map(int, edited):
        assert after[key]["status"] == "Closed" and after[key]["closed_date"] is not None
    untouched = [k for k in before if str(k) not in edited][:100]
    assert all(before[k]["status"] == after[k]["status"] for k in untouched)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["adapter"].update(date_field="status"), "date_field 'status' must be a timestamp field"),
        (lambda c: c["adapter"].update(key="nope"), "key 'nope' is not among the fields"),
        (lambda c: c["adapter"].update(page_size=60000), "page_size must be 1..50000"),
        (lambda c: c["adapter"].update(colour="blue"), "unknown key(s) ['colour']"),
        (lambda c: c["adapter"]["fields"][2].update(type="date"), "type must be one of"),
        (lambda c: c["adapter"]["fields"][1].update(source={"A": "created_date"}), "unknown variant(s) ['A']"),
    ],
)
def test_a_bad_dataset_file_fails_with_the_file_and_key(tmp_path, change, message):
    import tomllib

    config = tomllib.loads((DATASETS_DIR / "nyc_311.toml").read_text())
    change(config)
    path = tmp_path / "nyc_311.toml"
    path.write_text(_to_toml(config))
    with pytest.raises(DatasetConfigError) as error:
        load_dataset(path)
    assert str(error.value).startswith("nyc_311.toml: [adapter]") and message in str(error.value)


def _to_toml(config: dict) -> str:
    """Just enough TOML for the tables of a dataset file (scalars, arrays, inline tables)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"

    return (
        "\n".join(
            f"[{table}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in config[table].items())
            for table in ("source", "adapter")
        )
        + "\n"
    )
