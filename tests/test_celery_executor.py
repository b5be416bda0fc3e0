"""A real distributed executor: Airflow's CeleryExecutor with two Celery workers (issue 15 item 5).

Everything a Celery deployment runs, on loopback, on free ports, started and stopped here:

* PostgreSQL (a throwaway cluster: ``civic_pipelines.devtools.postgres_cluster``) holds Airflow's
  metadata database and Celery's result backend (``db+postgresql``);
* Redis (Debian's ``redis-server``: ``civic_pipelines.devtools.redis_server``) is the broker;
* ``airflow scheduler`` (CeleryExecutor), ``dag-processor``, ``triggerer`` and ``api-server`` (every
  task reports to its Execution API in Airflow 3);
* two ``airflow celery worker`` processes, ``civic-worker-a`` and ``civic-worker-b``, each with two
  slots; each records its own name as the task instances' host (``[core] hostname_callable``:
  ``civic_pipelines.devtools.worker_hostname``);
* the replay server, in this process.

Two sources, seattle_crime and minneapolis_311, are triggered for three months each through the
REST API, with their whole DAGs (planner, mapped extract blocks, the Cosmos dbt nodes behind the
one-slot ``duckdb_writer`` pool, source freshness). The test shows from the metadata database
that the mapped blocks ran on both workers (and each worker's own log names exactly the task
instances attributed to it), that every run and task succeeded, and that the lake and the
DuckDB warehouse (one file on the workers' shared disk) hold exactly the replay's rows.

The whole module is one ``xdist_group``: it starts its own servers and must not be split.
docs/scaling.md maps this setup to Astro's executors and the official Helm chart.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

import duckdb
import pytest
from airflow_runs import small_dags_folder

from civic_pipelines.devtools.local_airflow import airflow_environment
from civic_pipelines.orchestration import backfill

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import AirflowAPI, http_ok, start_group, stop_groups, wait_for  # noqa: E402

pytestmark = [pytest.mark.xdist_group("celery_executor"), pytest.mark.timeout(1800)]

SOURCES = ["seattle_crime", "minneapolis_311"]
RANGE = {"start_month": "2024-01", "end_month": "2024-03"}
MONTHS = ["2024-01", "2024-02", "2024-03"]
WORKERS = ["civic-worker-a", "civic-worker-b"]
WORKER_SLOTS = 2  # `airflow celery worker --concurrency`: each worker runs at most two tasks at once
RUN_TIMEOUT_S = 1200  # two sources' whole DAGs on a shared two-core machine


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def celery_environment(work: Path, pg: dict, broker_url: str, replay_url: str, api_port: int) -> dict:
    from civic_pipelines.months import current_month

    airflow_home = work / "airflow"
    # As `make demo` does: each Celery worker's pool processes import dbt/duckdb/pyarrow once, and
    # every task they start begins with them loaded.
    (airflow_home / "config").mkdir(parents=True, exist_ok=True)
    (airflow_home / "config" / "airflow_local_settings.py").write_text(
        "from civic_pipelines.orchestration.preload import preload\n\npreload()\n"
    )
    (work / "plugins").mkdir(exist_ok=True)
    result_backend = "db+" + pg["url"]  # Celery's SQLAlchemy result backend, in Airflow's own database
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "CIVIC_"))}
    env = {
        # As the demo's stack: data folder (AIRFLOW_HOME = work/airflow), no examples, DAGs
        # unpaused, all-admins (every server here listens on loopback), the API port.
        **airflow_environment(base, work, api_port),
        **small_dags_folder(work / "dags", SOURCES, with_marts=True),
        "CIVIC_DBT_FRESHNESS": str(work / "dbt_freshness"),
        "CIVIC_HTTP_BACKOFF": "0.05",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(work / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg["url"],
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        # Sending a task to Redis may take more than the default second on a loaded machine.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "civic_pipelines.devtools.worker_hostname.hostname",
        "AIRFLOW__CORE__PARALLELISM": str(WORKER_SLOTS * len(WORKERS)),
        # One key for every process: the scheduler signs the task tokens the API server checks.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Parsed once: the file does not change during the test, and on a loaded machine one parse
        # (two DAGs, each rendering its Cosmos group) took a minute, past the 30 s import timeout
        # (which the task processes' parse obeys too).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "900",
        **backfill.offline_settings(work / "cosmos_cache"),
    }
    host, port = replay_url.split("://", 1)[1].split(":")
    connection = json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"})
    for name in SOURCES:
        env[f"AIRFLOW_CONN_CIVIC_{name.upper()}"] = connection
        # No catchup: the DAGs start this month, so the only runs are the ones triggered here.
        env[f"AIRFLOW_VAR_CIVIC_{name.upper()}_START_MONTH"] = current_month()
    return env


def airflow(env: dict, *args: str) -> None:
    import subprocess

    result = subprocess.run([str(VENV_BIN / "airflow"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def create_pools(env: dict, work: Path) -> None:
    from civic_pipelines import sources
    from civic_pipelines.orchestration.dbt_group import DUCKDB_WRITER_POOL

    pools = {DUCKDB_WRITER_POOL: {"slots": 1, "description": "DuckDB allows one writer"}}
    for name in SOURCES:
        spec = sources.spec(name)
        pools[spec.pool] = {"slots": spec.pool_slots, "description": f"parallel blocks against the {name} API"}
    (work / "pools.json").write_text(json.dumps(pools))
    airflow(env, "pools", "import", str(work / "pools.json"))


def celery_workers_answering(broker_url: str) -> set[str]:
    """The Celery node names that answer a broadcast ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.inspect(timeout=3).ping() or {}
    except Exception:  # noqa: BLE001 - the broker or a worker not up yet: ask again
        return set()
    finally:
        app.close()
    return {name.split("@", 1)[1] for name in replies}


@pytest.fixture(scope="module")
def celery_cluster(run_dir):
    from civic_pipelines.devtools.postgres_cluster import postgres_cluster
    from civic_pipelines.devtools.redis_server import redis_server
    from civic_pipelines.replay.server import make_server

    work = run_dir / "celery_executor"
    shutil.rmtree(work, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True)
    processes = {}
    with postgres_cluster(dbname="airflow", settings={"max_connections": "200"}) as pg, redis_server() as broker:
        replay = make_server(host="127.0.0.1", port=0).start()
        try:
            api_port = free_port()
            env = celery_environment(work, pg, broker["url"], replay.url, api_port)
            airflow(env, "db", "migrate")
            create_pools(env, work)
            components = {
                "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
                "scheduler": ["scheduler", "--skip-serve-logs"],
                "dag-processor": ["dag-processor"],
                "triggerer": ["triggerer", "--skip-serve-logs"],
            }
            for name, args in components.items():
                processes[name] = start_group([str(VENV_BIN / "airflow"), *args], env, logs / f"{name}.log")
            for worker in WORKERS:
                # --skip-serve-logs: both workers would bind the log server's one port (8793) on every
                # interface; the API server reads the task logs from the shared disk instead.
                processes[worker] = start_group(
                    [
                        str(VENV_BIN / "airflow"),
                        "celery",
                        "worker",
                        "--celery-hostname",
                        worker,
                        "--concurrency",
                        str(WORKER_SLOTS),
                        "--skip-serve-logs",
                    ],
                    {**env, "CIVIC_WORKER_HOSTNAME": worker},
                    logs / f"{worker}.log",
                )
            wait_for(lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"), 300, "the API server")
            wait_for(lambda: celery_workers_answering(broker["url"]) >= set(WORKERS), 300, "both Celery workers")
            api = AirflowAPI(f"http://127.0.0.1:{api_port}")
            api.login()
            for name in SOURCES:
                wait_for(lambda: api.dag_registered(name), 600, f"DAG {name} to be parsed")
            yield {
                "api": api,
                "pg": pg,
                "broker": broker,
                "replay": replay,
                "work": work,
                "logs": logs,
                "processes": processes,
            }
        finally:
            stop_groups(dict(reversed(list(processes.items()))))
            replay.stop()


def metadata(pg: dict, sql: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(
        host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"], dbname=pg["dbname"], autocommit=True
    ) as con:
        return con.execute(sql, params).fetchall()


def warehouse(work: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).fetchall()


def lake_rows(work: Path, source: str) -> dict[str, int]:
    """Rows per landed month of a source's ``data.parquet`` blocks."""
    folder = work / "lake" / source
    with duckdb.connect() as con:
        return {
            path.parent.name.removeprefix("month="): con.execute(
                f"select count(*) from read_parquet('{path}')"
            ).fetchall()[0][0]
            for path in sorted(folder.glob("month=*/data.parquet"))
        }


def test_two_sources_backfill_across_two_celery_workers_exactly(celery_cluster):
    api, pg, work, replay = (
        celery_cluster["api"],
        celery_cluster["pg"],
        celery_cluster["work"],
        celery_cluster["replay"],
    )
    started = time.monotonic()
    run_ids = {}
    for name in SOURCES:
        run_id = f"celery__{name}__{int(time.time())}"
        api.send("POST", f"/dags/{name}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": RANGE})
        run_ids[name] = run_id
    outcomes = {
        name: wait_for(
            lambda: (s := api.run_state(name, run_id)) in ("success", "failed") and s,
            RUN_TIMEOUT_S,
            f"run {run_id}",
            interval=3,
        )
        for name, run_id in run_ids.items()
    }
    # The source runs' Asset events queue civic_marts, which builds the marts (mart_crime_monthly below).
    outcomes["civic_marts"] = wait_for(api.marts_settled, RUN_TIMEOUT_S, "the civic_marts run", interval=3)
    elapsed = time.monotonic() - started

    tis = metadata(
        pg,
        "select id::text, dag_id, task_id, map_index, state, hostname, rendered_map_index "
        "from task_instance where run_id = any(%s) order by dag_id, task_id, map_index",
        [list(run_ids.values())],
    )
    placement = "\n".join(
        f"  {dag_id:<16} {task_id:<48} {rendered or map_index!s:<22} {state:<8} {host}"
        for _, dag_id, task_id, map_index, state, host, rendered in tis
    )
    report = f"two runs in {elapsed:.0f} s under the CeleryExecutor; task instances and their workers:\n{placement}"
    print(report)
    (work / "placement.txt").write_text(report + "\n")

    # Every run and every task instance succeeded.
    assert outcomes == {**{name: "success" for name in SOURCES}, "civic_marts": "success"}, report
    assert tis and {row[4] for row in tis} == {"success"}, report

    # Every task ran on one of the two workers, and the mapped blocks ran on both.
    assert {row[5] for row in tis} <= set(WORKERS), report
    blocks = [row for row in tis if row[2] == "extract_load" and row[3] >= 0]
    assert len(blocks) == len(SOURCES) * len(MONTHS), report
    assert {row[5] for row in blocks} == set(WORKERS), report
    # The host in the metadata database is the worker that ran the task: each worker's own log
    # names every task instance attributed to it, as received from the broker. (Not "only those":
    # a try that failed on one worker, e.g. an Execution API call timing out on a loaded machine,
    # is retried wherever the broker sends it, and the row keeps the last try's host.)
    for worker in WORKERS:
        received = set(
            re.findall(
                r"Executing workload in Celery: .*? ti=TaskInstanceDTO\(id=UUID\('([0-9a-f-]+)'\)",
                (celery_cluster["logs"] / f"{worker}.log").read_text(errors="replace"),
            )
        )
        attributed = {row[0] for row in tis if row[5] == worker}
        assert attributed and attributed <= received, (worker, attributed - received)

    # One writer on the DuckDB file, whichever worker ran the dbt node: every node took the one
    # slot of the duckdb_writer pool, and no two ran at once (the scheduler enforces the pool).
    dbt_nodes = metadata(
        pg,
        "select dag_id, task_id, pool, hostname, start_date, end_date from task_instance "
        "where run_id = any(%s) and task_id like 'dbt.%%' order by start_date",
        [list(run_ids.values())],
    )
    assert dbt_nodes and {row[2] for row in dbt_nodes} == {"duckdb_writer"}, dbt_nodes
    for before, after in zip(dbt_nodes, dbt_nodes[1:]):
        assert before[5] <= after[4], f"dbt nodes overlapped in the one-slot pool: {before[:4]} and {after[:4]}"
    print("dbt nodes per worker:", {w: sum(row[3] == w for row in dbt_nodes) for w in WORKERS})

    # Celery's results landed in PostgreSQL, the result backend.
    (succeeded,) = metadata(pg, "select count(*) from celery_taskmeta where status = 'SUCCESS'")[0]
    assert succeeded >= len(tis)

    # The lake holds exactly the replay's rows, one block per month.
    seattle = replay.dataset
    minneapolis = replay.minneapolis
    assert lake_rows(work, "seattle_crime") == {m: len(seattle.rows_for_month(m)) for m in MONTHS}
    assert lake_rows(work, "minneapolis_311") == {m: len(minneapolis.rows_for_month(m)) for m in MONTHS}

    # The warehouse too: one row per offense and per request, no duplicates (the local e2e tests' checks).
    want_offenses = {int(row["offense_id"]) for m in MONTHS for row in seattle.rows_for_month(m)}
    offenses = [r[0] for r in warehouse(work, "select offense_id from fct_crime_offenses")]
    assert len(want_offenses) > 5000 and len(offenses) == len(want_offenses) and set(offenses) == want_offenses
    (mart_total,) = warehouse(work, "select sum(offenses) from mart_crime_monthly")[0]
    assert mart_total == len(want_offenses)
    want_requests = {f"{m[:4]}-{row['OBJECTID']}" for m in MONTHS for row in minneapolis.rows_for_month(m)}
    requests = [r[0] for r in warehouse(work, "select request_id from stg_minneapolis_311__requests")]
    assert len(want_requests) > 5000 and len(requests) == len(want_requests) and set(requests) == want_requests
    (facts,) = warehouse(work, "select count(*) from fct_service_requests where city = 'minneapolis'")[0]
    assert facts == len(want_requests)
