"""The main job, offline: replay server + real Airflow (scheduler, DAG processor, API server) + dbt + DuckDB.

Starts the replay server on loopback and `airflow standalone` (SQLite metadata, LocalExecutor),
creates the pools, triggers each source's DAG for a three-month range, waits for the runs under
the real scheduler and prints where everything is. Keeps serving until Ctrl-C; with
CIVIC_DEMO_EXIT=1 it stops by itself after the runs. Every process it starts runs in its own
process group and is stopped on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEMO_RANGE = {"start_month": os.environ.get("CIVIC_DEMO_START", "2024-01"), "end_month": os.environ.get("CIVIC_DEMO_END", "2024-03")}
SOURCES = ["seattle_crime"]
RUN_TIMEOUT = int(os.environ.get("CIVIC_DEMO_TIMEOUT", "900"))


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def demo_environment(data: Path, replay_port: int, api_port: int) -> dict:
    from civic_pipelines.months import current_month, format_month, parse_month, previous_month

    airflow_home = data / "airflow"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "CIVIC_DATA_DIR": str(data),
        "CIVIC_LAKE": str(data / "lake"),
        "CIVIC_WAREHOUSE": str(data / "warehouse.duckdb"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(data / "cosmos_cache"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    replay = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": replay_port, "schema": "http"})
    previous = format_month(previous_month(parse_month(current_month())))
    for source in SOURCES:
        env[f"AIRFLOW_CONN_CIVIC_{source.upper()}"] = replay
        # Catchup from last month only: the demo shows one scheduled block, not 18 years of them.
        env[f"AIRFLOW_VAR_CIVIC_{source.upper()}_START_MONTH"] = previous
    return env


def airflow(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(VENV_BIN / "airflow"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


def start_group(command: list[str], env: dict, logfile: Path) -> subprocess.Popen:
    handle = open(logfile, "ab")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    log(f"stopped {name}")


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def dag_registered(env: dict, dag_id: str) -> bool:
    result = airflow(env, "dags", "list", "-o", "json", check=False)
    try:
        return any(item.get("dag_id") == dag_id for item in json.loads(result.stdout or "[]"))
    except json.JSONDecodeError:
        return False


def run_state(env: dict, dag_id: str, run_id: str) -> str | None:
    result = airflow(env, "dags", "list-runs", dag_id, "-o", "json", check=False)
    try:
        runs = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return None
    for run in runs:
        if run.get("run_id") == run_id:
            return run.get("state")
    return None


def print_results(data: Path) -> None:
    import duckdb

    warehouse = data / "warehouse.duckdb"
    for attempt in range(30):
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                facts = con.sql("select count(*), min(_block_month), max(_block_month) from fct_crime_offenses").fetchone()
                log(f"fct_crime_offenses: {facts[0]} offenses, months {facts[1]}..{facts[2]}")
                rows = con.sql(
                    "select strftime(report_month, '%Y-%m') as month, crime_against_category, offenses "
                    "from mart_crime_monthly order by month, offenses desc limit 12"
                ).fetchall()
            print(f"\n{'month':<8} {'crime_against_category':<24} offenses")
            for month, category, offenses in rows:
                print(f"{month:<8} {category or '-':<24} {offenses}")
            print()
            return
        except duckdb.IOException:
            time.sleep(2)  # a dbt run of the catchup block holds the write lock for a moment
    log("the warehouse is busy (a dbt run holds its lock); query it later")


def main() -> int:
    sys.path.insert(0, str(ROOT / "include"))
    data = Path(os.environ.get("CIVIC_DATA_DIR", ROOT / "data")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    replay_port = int(os.environ.get("CIVIC_REPLAY_PORT", "8765"))
    api_port = int(os.environ.get("CIVIC_AIRFLOW_PORT", "8080"))
    env = demo_environment(data, replay_port, api_port)
    logs = data / "demo-logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    replay = standalone = None
    exit_code = 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        replay = start_group([str(VENV_BIN / "civic"), "replay", "--port", str(replay_port)], env, logs / "replay.log")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{replay_port}/api/views/tazs-3rd5.json"), 30, "the replay server")
        log(f"replay server on http://127.0.0.1:{replay_port}")

        airflow(env, "db", "migrate")
        airflow(env, "pools", "set", "duckdb_writer", "1", "DuckDB allows one writer: every dbt task takes this slot")
        from civic_pipelines import sources

        for source in SOURCES:
            spec = sources.spec(source)
            airflow(env, "pools", "set", spec.pool, str(spec.pool_slots), f"parallel blocks against the {source} API")
        log("metadata database migrated, pools created")

        standalone = start_group([str(VENV_BIN / "airflow"), "standalone"], env, logs / "airflow.log")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"), 180, "the Airflow API server")
        log(f"Airflow UI on http://127.0.0.1:{api_port} (logs in {logs})")

        run_ids = {}
        for source in SOURCES:
            wait_for(lambda: dag_registered(env, source), 180, f"DAG {source} to be parsed", interval=3)
            airflow(env, "dags", "unpause", source)
            run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
            airflow(env, "dags", "trigger", source, "--run-id", run_id, "--conf", json.dumps({**DEMO_RANGE, "force": True}))
            run_ids[source] = run_id
            log(f"triggered {source} for {DEMO_RANGE['start_month']}..{DEMO_RANGE['end_month']} (run {run_id})")

        outcomes = {}
        for source, run_id in run_ids.items():
            state = wait_for(
                lambda: (s := run_state(env, source, run_id)) in ("success", "failed") and s, RUN_TIMEOUT, f"run {run_id}", interval=5
            )
            outcomes[source] = state
            log(f"{source} run {run_id}: {state}")
        seconds = time.monotonic() - started
        log(f"all runs finished in {seconds:.0f} s")
        print_results(data)
        print(f"Airflow UI : http://127.0.0.1:{api_port}")
        print(f"Lake       : {data / 'lake'}")
        print(f"Warehouse  : {data / 'warehouse.duckdb'}")
        print(f"Outcome    : {', '.join(f'{s}={o}' for s, o in outcomes.items())} in {seconds:.0f} s", flush=True)
        exit_code = 0 if all(state == "success" for state in outcomes.values()) else 1
        if os.environ.get("CIVIC_DEMO_EXIT") != "1":
            log("serving; press Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        log("stopping")
    except Exception as error:  # noqa: BLE001 - say what failed in one line, then clean up
        log(f"demo failed: {error}")
    finally:
        stop_group(standalone, "Airflow")
        stop_group(replay, "replay server")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
