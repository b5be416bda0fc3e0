"""Shared fixtures: an isolated data folder per session, Airflow home, and the replay server."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest
from reliability_plugin import pytest_configure, pytest_runtest_makereport, reliability  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

# Isolate everything a test run writes, before Airflow or the package read their settings.
_RUN_DIR = Path(os.environ.get("CIVIC_TEST_DIR", ROOT / "test-output")).resolve()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One folder per pytest-xdist lane: its own Airflow metadata DB (two `airflow db migrate` on one
    # SQLite file race), lake and warehouse (DuckDB allows one writing process per file).
    _RUN_DIR = _RUN_DIR / os.environ["PYTEST_XDIST_WORKER"]
_RUN_DIR.mkdir(parents=True, exist_ok=True)
# Set, not defaulted: pytest-xdist's workers inherit the controller's environment, which already
# holds the controller's paths.
os.environ["CIVIC_DATA_DIR"] = str(_RUN_DIR / "data")
os.environ["CIVIC_LAKE"] = str(_RUN_DIR / "data" / "lake")
os.environ["CIVIC_WAREHOUSE"] = str(_RUN_DIR / "data" / "warehouse.duckdb")
os.environ["AIRFLOW_HOME"] = str(_RUN_DIR / "airflow")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
# One JWT key for the session's processes (an empty [api_auth] jwt_secret makes each process draw
# its own): a token this process signs opens the API server and `civic dashboard` the tests start.
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("CIVIC_HTTP_BACKOFF", "0.05")
os.environ.setdefault("NO_PROXY", "*")


@pytest.fixture(scope="session")
def run_dir() -> Path:
    return _RUN_DIR


def _running_replay():
    from civic_pipelines.replay.server import make_server

    server = make_server(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def replay():
    """A fresh replay server on a free loopback port, stopped after the test."""
    yield from _running_replay()


@pytest.fixture(scope="module")
def module_replay():
    """One replay server for a module (building one costs a second or two); its tests reset it."""
    yield from _running_replay()


@pytest.fixture
def point_at_replay(monkeypatch):
    """``point_at_replay(server, *conn_ids, offline=False, **fields)``: each connection's
    ``AIRFLOW_CONN_<ID>`` at ``server`` for the test (``fields``: extra, password, ...); ``offline``:
    connections and Variables from the environment only, never the metadata DB. Returns the server."""
    from replay_env import connection_env

    def point(server, *conn_ids: str, offline: bool = False, **fields):
        for key, value in connection_env(server, *conn_ids, **fields).items():
            monkeypatch.setenv(key, value)
        if offline:
            monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
        return server

    return point


@pytest.fixture
def seattle_conn(replay, point_at_replay):
    """Point the seattle_crime connection at the replay server, as tests and the demo do."""
    return point_at_replay(replay, "civic_seattle_crime")


@pytest.fixture
def lake(tmp_path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the test folder), migrated once per session."""
    import subprocess

    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "airflow"), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


# --- a throwaway PostgreSQL server ------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of its own (initdb + pg_ctl) on a free loopback port, with password
    (SCRAM) auth and pg_stat_statements; yields its details and the superuser's connection JSON
    for ``AIRFLOW_CONN_CIVIC_POSTGRES``; stopped and deleted at the end of the session
    (``civic_pipelines.devtools.postgres_cluster``, which bench/scale.py uses too)."""
    from civic_pipelines.devtools.postgres_cluster import postgres_cluster

    with postgres_cluster() as server:
        yield server


@pytest.fixture
def postgres(postgres_server, monkeypatch):
    """A fresh database on the session's server for one test, set as ``civic_postgres``."""
    import json
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = dict(
        host=postgres_server["host"],
        port=postgres_server["port"],
        user=postgres_server["user"],
        password=postgres_server["password"],
        autocommit=True,
    )
    with psycopg.connect(dbname="postgres", **admin) as conn:
        conn.execute(f'create database "{name}"')
    conn_json = json.dumps({**json.loads(postgres_server["conn_json"]), "schema": name})
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_POSTGRES", conn_json)
    try:
        yield {
            **postgres_server,
            "dbname": name,
            "conn_json": conn_json,
            "connect": lambda: psycopg.connect(dbname=name, **admin),
        }
    finally:
        with psycopg.connect(dbname="postgres", **admin) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Each test module runs whole, in order, in one pytest-xdist lane: several modules build on
    the module-scoped landing of their first tests (the end-to-end DAG runs). Under
    ``--dist loadgroup`` a test without a group is sent alone to any lane, so a test without one
    gets its module's; the named groups (demo, containers) stay as they are."""
    for item in items:
        if not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(
                pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid.split("::")[0])
            )
    longest_groups_first(items)


# --- lane balance under `--dist loadgroup` ----------------------------------------------------------

# The groups that take the longest, longest first (lane-minutes on a loaded 2-core machine): the
# astro-local stack, the docker-mode tests and the demo under a real scheduler each hold a lane for
# minutes, so they start first, and the short modules fill in behind whichever finishes first. Left to
# xdist's default (groups with the most tests first) the few-test long groups start last and run
# in the suite's tail, one lane idle. Unlisted groups keep their collection order after these.
LONGEST_GROUPS_FIRST = (
    "astro_local",
    "containers",
    "demo",
    # then the modules that run whole DAGs (dag.test(), Airflow task processes, a PostgreSQL sink,
    # a browser): started early so none of them is the last unit left in one lane.
    "test_concurrent_blocks",
    "test_311_dags_e2e",
    "test_seattle_dag_e2e",
    "test_street_works_dags_e2e",
    "test_mds_dag_e2e",
    "test_sink_postgres",
    "test_failure_notify",
    "test_trigger_params",
    "test_secrets",
    "test_dashboard_browser",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own, which builds the scheduler
def pytest_xdist_make_scheduler(config, log):
    """Keep the order the collection hook gives the groups: xdist otherwise reorders the
    work queue by tests per group (``--loadscope-reorder``, its default). Returns nothing so
    xdist still builds its own LoadGroupScheduling."""
    if config.getvalue("dist") == "loadgroup":
        config.option.loadscopereorder = False


def longest_groups_first(items) -> None:
    """The longest groups first (a stable sort: each group's tests keep their order); called by
    the collection hook above once every test has its group."""
    rank = {name: position for position, name in enumerate(LONGEST_GROUPS_FIRST)}

    def group(item) -> str:
        mark = next(item.iter_markers("xdist_group"), None)
        return str(mark.args[0] if mark and mark.args else mark.kwargs.get("name", "default") if mark else "")

    items.sort(key=lambda item: rank.get(group(item), len(rank)))
