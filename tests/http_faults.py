"""The HTTP / paged sources' fault matrix cases: the replay driven over HTTP, one ``Case`` per
source (how to run its block on the replay and which keys it must hold), and the checks the rows
end with. ``test_fault_matrix_http.py`` and ``test_fault_matrix_connect.py`` hold the rows; the
``case`` fixture (indirect: the parameter is the source) is imported into both."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
import requests
from fault_checks import assert_exactly, assert_no_partial, landed_keys
from fault_rows import Row
from replay_env import connection_env, control, requests_seen

from civic_pipelines import sources
from civic_pipelines.extract import run_block
from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.sources import mds

HTTP_SOURCES = ["seattle_crime", "nyc_311", "minneapolis_311", "toronto_311", "mds"]
SODA = ["seattle_crime", "nyc_311"]
MDS_NOW = "2023-03-01T00:00:00Z"  # the replay's clock: every hour of 2023-02 has ended
MDS_CLOCK = datetime(2023, 2, 1, 12, tzinfo=UTC)  # the client's: twelve hours are walked
FAKE_TOKEN = "fake-token-for-tests-0000"


# ---------------------------------------------------------------- the replay, driven over HTTP


def set_faults(server, **body) -> None:
    control(server, "faults", body)


def fired(server) -> dict:
    return requests.get(f"{server.url}/_replay/faults", timeout=30).json()["fired"]


def log(server) -> list[dict]:
    return requests_seen(server, detail=True)


def set_connection(monkeypatch, conn_id: str, server, password: str | None = None) -> None:
    for key, value in connection_env(server, conn_id, **({"password": password} if password else {})).items():
        monkeypatch.setenv(key, value)


# ---------------------------------------------------------------- one case per source


@dataclass
class Case:
    """One source's block on the replay: how to run it and what it must hold."""

    source: str
    month: str
    lake: str
    server: object
    data_path: str  # path prefix (or suffix for ArcGIS) of the data requests, to read the log
    keys: Callable[[], list]
    part: str | None = None
    notes: dict = field(default_factory=dict)

    def run(self, force: bool = False) -> dict:
        return run_block(self.source, self.month, lake=self.lake, force=force, part=self.part)

    def location(self) -> BlockLocation:
        return BlockLocation(lake=self.lake, source=self.source, month=self.month, part=self.part)

    def manifest(self) -> dict | None:
        return read_manifest(self.location())

    def table(self, name: str = "data.parquet"):
        return pq.read_table(f"{self.location().folder}/{name}")

    def is_data(self, entry: dict) -> bool:
        path = entry["path"]
        return path.endswith(self.data_path) if self.data_path == "/query" else path.startswith(self.data_path)

    def data_log(self) -> list[dict]:
        return [e for e in log(self.server) if self.is_data(e)]

    def exactly(self) -> int:
        """The follow-up check: exactly the source's keys, once each, nothing partial."""
        return assert_exactly(self.lake, self.source, self.month, self.keys(), part=self.part)


def _seattle(server, monkeypatch, lake, tmp_path) -> Case:
    set_connection(monkeypatch, "civic_seattle_crime", server)
    control(server, "config", {"seattle_crime": {"rows_per_month": 1200}})
    monkeypatch.setattr(sources.get("seattle_crime"), "page_size", 500)  # three pages a month
    month = "2024-02"
    return Case(
        "seattle_crime",
        month,
        lake,
        server,
        "/resource/",
        lambda: [int(r["offense_id"]) for r in server.dataset.rows_for_month(month)],
        notes={"key": "offense_id", "conn_id": "civic_seattle_crime"},
    )


def _nyc(server, monkeypatch, lake, tmp_path) -> Case:
    set_connection(monkeypatch, "civic_nyc_311", server)
    control(server, "config", {"nyc_311": {"rows_per_month": 1200}})
    monkeypatch.setattr(sources.get("nyc_311"), "page_size", 500)
    month = "2024-03"
    dataset = server.generated["nyc_311"]
    return Case(
        "nyc_311",
        month,
        lake,
        server,
        "/resource/",
        lambda: [int(r["unique_key"]) for r in dataset.rows_for_month(month)],
        notes={"key": "unique_key", "conn_id": "civic_nyc_311"},
    )


def _minneapolis(server, monkeypatch, lake, tmp_path) -> Case:
    set_connection(monkeypatch, "civic_minneapolis_311", server)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.delenv("AIRFLOW_VAR_CIVIC_MINNEAPOLIS_311_LAYERS", raising=False)
    control(server, "config", {"minneapolis_311": {"rows_per_month": 1200, "max_record_count": 500}})
    month = "2024-02"
    return Case(
        "minneapolis_311",
        month,
        lake,
        server,
        "/query",
        lambda: [a["OBJECTID"] for a in server.minneapolis.rows_for_month(month)],
        notes={"key": "OBJECTID", "conn_id": "civic_minneapolis_311"},
    )


def _toronto(server, monkeypatch, lake, tmp_path) -> Case:
    set_connection(monkeypatch, "civic_toronto_311", server)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    # lazy sizes: package_show must not build all seventeen year files to fill their sizes
    control(server, "config", {"toronto_311": {"rows_per_year": 6000, "size_policy": "lazy"}})
    month = "2024-02"
    # The files carry no id: the key is derived (a hash of the row's identity fields), so the
    # expected key set is a clean run's, and its count must be the replay's own count of the
    # month's rows (from its view of the file, not from the adapter).
    baseline = str(tmp_path / "baseline-lake")
    run_block("toronto_311", month, lake=baseline)
    clean = landed_keys(baseline, "toronto_311", month)
    assert len(clean) == len(server.toronto.rows_for_month(month)) > 300
    quarantined = read_manifest(BlockLocation(baseline, "toronto_311", month))["quarantined"]
    control(server, "reset", {})  # the baseline's requests out of the log
    return Case(
        "toronto_311",
        month,
        lake,
        server,
        "/dataset/",
        lambda: clean,
        notes={"key": "request_id (derived)", "conn_id": "civic_toronto_311", "quarantined": quarantined},
    )


def _mds(provider: str):
    def setup(server, monkeypatch, lake, tmp_path) -> Case:
        monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["voi", "lyft", "bolt", "dott"]')
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", "")
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "")
        mds.clear_token_cache()
        control(server, "config", {"mds": {"now": MDS_NOW, "trips_per_hour": 3, "events_per_hour": 2, "page_size": 2}})
        for name in server.mds.providers:
            monkeypatch.setenv(f"AIRFLOW_CONN_CIVIC_MDS_{name.upper()}", json.dumps(server.mds.connection(name)))
        monkeypatch.setattr(mds.fetch, "_now", lambda: MDS_CLOCK)  # hours after it are not asked: a twelve-hour walk
        hours = [h for h in mds.month_hours("2023-02") if h < MDS_CLOCK]

        def keys() -> list:
            return [t["trip_id"] for h in hours for t in server.mds.records(provider, mds.hour_text(h))["trips"]]

        return Case(
            "mds",
            "2023-02",
            lake,
            server,
            f"/mds/{provider}/",
            keys,
            part=provider,
            notes={"key": "trip_id", "conn_id": f"civic_mds_{provider}", "provider": provider},
        )

    return setup


SETUPS = {
    "seattle_crime": _seattle,
    "nyc_311": _nyc,
    "minneapolis_311": _minneapolis,
    "toronto_311": _toronto,
    "mds": _mds("lyft"),
    "mds:lyft": _mds("lyft"),
    "mds:voi": _mds("voi"),
    "mds:bolt": _mds("bolt"),
}


@pytest.fixture
def case(request, replay, monkeypatch, lake, tmp_path) -> Case:
    built = SETUPS[request.param](replay, monkeypatch, lake, tmp_path)
    yield built
    mds.clear_token_cache()


def fails_keeping_the_landing(case: Case, faults: dict, error_type, match: str) -> str:
    """Land the block cleanly, run it again (forced) under ``faults``: it must fail with ``match``
    and leave the landing exactly as it was. Returns the error's text."""
    first = case.run()
    assert not first["skipped"]
    set_faults(case.server, **faults)
    with pytest.raises(error_type, match=match) as error:
        case.run(force=True)
    after = case.manifest()
    assert after["sha256"] == first["sha256"] and after["landed_at"] == first["landed_at"], "the landing changed"
    assert_no_partial(case.lake, case.source, case.month, case.part)
    case.exactly()
    return str(error.value)


def follow_up(case: Case, force: bool = False) -> tuple[dict, int]:
    """The normal run after the fault: what it did and the exact row count it leaves."""
    manifest = case.run(force=force)
    return manifest, case.exactly()


def gap_after(entries: list[dict], index: int) -> float:
    """Seconds from entry ``index`` to the next request for the same URL (its repeat)."""
    first = entries[index]
    again = next(e for e in entries[index + 1 :] if e["path"] == first["path"] and e["query"] == first["query"])
    return again["at"] - first["at"]


# ---------------------------------------------------------------- the rows' table and runner


def per_source(check, fault, expected, sources=HTTP_SOURCES, name: str = "") -> list[Row]:
    """``check``'s row for each of ``sources``; ``fault`` and ``expected`` may be functions of the
    source (the case parameter) where the row's words name a source's own field or answer."""

    def text(value, source: str) -> str:
        return value(source) if callable(value) else value

    return [Row(source, text(fault, source), text(expected, source), check, name) for source in sources]


def run_row(row: Row, case: Case, monkeypatch, reliability) -> None:
    """The one runner of the HTTP rows: publish the row, run its check on the case (the block on
    the replay), publish what the check observed."""
    reliability.row(fault=row.fault, source=case.source, expected=row.expected)
    reliability.observed(row.check(case, monkeypatch))
