"""MDS end to end with dag.test(): two providers of different versions and auth modes for one month,
replay -> lake -> PostgreSQL mirror and dbt; a month with hours not yet published lands incomplete
and a later run completes it; no credential appears in any log line of the runs. Runs in both extract
modes: in-process (``local``) and with each provider's block in an extractor container
(``docker``, ``tests/docker_mode.py``), where each container must get its own provider's
connection ``civic_mds_<provider>``."""

from __future__ import annotations

import json
import logging
import os
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest
import requests
from docker_mode import MODES, assert_extract_mode, container_engine, record_engine_calls, use_mode  # noqa: F401

MONTH = "2024-02"
PROVIDERS = ["voi", "dott"]  # MDS 2.0 with OAuth2, MDS 0.4 with OAuth2
LATE = ["2024-02-20T05", "2024-02-20T06"]


@pytest.fixture
def environment(airflow_db, run_dir, postgres, monkeypatch, mode, request):
    from civic_pipelines.replay.mds import connections_for
    from civic_pipelines.replay.server import make_server

    use_mode(request, monkeypatch, mode)
    calls = record_engine_calls(monkeypatch) if mode == "docker" else None
    data = run_dir / f"e2e_mds_{mode}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    server = make_server(host="127.0.0.1", port=0)
    server.start()
    connections = {p: c for p, c in connections_for(server.url).items() if p in PROVIDERS}
    monkeypatch.setenv("CIVIC_LAKE", str(data / "lake"))
    monkeypatch.setenv("CIVIC_WAREHOUSE", str(data / "warehouse.duckdb"))
    for provider, connection in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}", json.dumps(connection))
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", json.dumps(PROVIDERS))
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", "")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "")
    requests.post(f"{server.url}/_replay/config", json={"mds": {"late_hours": LATE}}, timeout=10).raise_for_status()
    secrets = {c.get("password") for c in connections.values()} | {postgres["password"]}
    try:
        yield {
            "server": server,
            "data": data,
            "postgres": postgres,
            "secrets": {s for s in secrets if s},
            "connections": connections,
            "mode": mode,
            "engine_calls": calls,
        }
    finally:
        server.stop()


def extract_states(run):
    return sorted(ti.state for ti in run.get_task_instances() if ti.task_id == "extract_load")


def task_state(run, task_id):
    return next(ti.state for ti in run.get_task_instances() if ti.task_id == task_id)


def lake_trips(data, provider):
    return pq.read_table(data / "lake" / "mds" / provider / f"month={MONTH}" / "data.parquet")


@pytest.mark.parametrize("mode", MODES)
def test_two_providers_land_sync_to_postgres_and_complete_late_hours(environment, caplog):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    server, data, postgres = environment["server"], environment["data"], environment["postgres"]
    conf = {"start_month": MONTH, "end_month": MONTH}
    caplog.set_level(logging.DEBUG)

    mode = environment["mode"]
    dag = build_source_dag("mds", extract_mode=mode)
    assert_extract_mode(dag, mode)
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    assert extract_states(run) == ["success", "success"]
    manifests = {
        p: json.loads((data / "lake" / "mds" / p / f"month={MONTH}" / "_manifest.json").read_text()) for p in PROVIDERS
    }
    for provider, manifest in manifests.items():
        assert manifest["complete"] is False and manifest["missing_hours"], provider
    # Postgres mirrors the lake exactly, provider by provider.
    with postgres["connect"]() as conn:
        pg = dict(conn.execute("select provider, count(*) from mds_trips group by provider").fetchall())
    assert pg == {p: lake_trips(data, p).num_rows for p in PROVIDERS}
    # dbt built the fact from the same rows.
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        fact = dict(con.execute("select provider, count(*) from fct_mobility_trips group by provider").fetchall())
    assert fact == pg

    # The late hours appear: an incomplete-only run plans the two incomplete blocks,
    # fetches only the missing hours, and the blocks end complete.
    requests.post(f"{server.url}/_replay/config", json={"mds": {"late_hours": []}}, timeout=10).raise_for_status()
    run = build_source_dag("mds", extract_mode=mode).test(
        run_conf={"start_month": MONTH, "end_month": MONTH, "incomplete_only": True}
    )
    assert run.state == "success" and extract_states(run) == ["success", "success"]
    for provider in PROVIDERS:
        manifest = json.loads((data / "lake" / "mds" / provider / f"month={MONTH}" / "_manifest.json").read_text())
        assert manifest["complete"] is True and not manifest["missing_hours"], provider
    trips = {p: lake_trips(data, p) for p in PROVIDERS}
    for table in trips.values():
        assert table.num_rows == len(set(table["trip_id"].to_pylist())), "one row per trip after completion"
    with postgres["connect"]() as conn:
        rows = conn.execute("select provider, trip_id from mds_trips").fetchall()
    assert sorted(rows) == sorted((p, t) for p, table in trips.items() for t in table["trip_id"].to_pylist())

    # Complete now: the third run skips every block, and Postgres is unchanged.
    run = build_source_dag("mds", extract_mode=mode).test(run_conf=conf)
    assert extract_states(run) == ["skipped", "skipped"]
    with postgres["connect"]() as conn:
        (count,) = conn.execute("select count(*) from mds_trips").fetchone()
    assert count == len(rows)

    # No credential (client secrets, bearer tokens, the Postgres password) in any log line.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    logs_dir = os.environ.get("AIRFLOW_HOME")
    if logs_dir and os.path.isdir(os.path.join(logs_dir, "logs")):
        for root, _dirs, files in os.walk(os.path.join(logs_dir, "logs", "dag_id=mds")):
            for name in files:
                with open(os.path.join(root, name), errors="replace") as handle:
                    logged += handle.read()
    tokens = set(server.mds.issued_tokens())
    assert logged and environment["secrets"] and tokens
    for secret in environment["secrets"] | tokens:
        assert secret not in logged

    if mode == "docker":
        check_each_container_got_its_provider(environment)


def check_each_container_got_its_provider(environment):
    """Docker mode: every container (2 providers x 3 runs) got its own provider's connection
    ``civic_mds_<provider>`` (with its client secret) as AIRFLOW_CONN_*, no other provider's, and
    the provider list; the third run's containers exited with the skip code."""
    from civic_pipelines.cli import SKIPPED_EXIT_CODE

    calls = environment["engine_calls"]
    assert len(calls) == 3 * len(PROVIDERS), [c["command"] for c in calls]
    for call in calls:
        provider = call["command"][call["command"].index("--part") + 1]
        assert provider in PROVIDERS
        variables = {key for key in call["environment"] if key.startswith("AIRFLOW_CONN_CIVIC_MDS_")}
        assert variables == {f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"}, variables
        handed = json.loads(call["environment"][f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"])
        assert handed["password"] == environment["connections"][provider]["password"]
        assert json.loads(call["environment"]["AIRFLOW_VAR_CIVIC_MDS_PROVIDERS"]) == PROVIDERS
    assert [c["exit_code"] for c in calls[-len(PROVIDERS) :]] == [SKIPPED_EXIT_CODE] * len(PROVIDERS)
