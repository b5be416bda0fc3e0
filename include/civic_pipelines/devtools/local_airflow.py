"""Airflow's components started on this machine, as the demo, the benchmarks and the end-to-end
tests run them: the environment they share, the ``airflow`` command, process sessions (start,
members, stop), waiting, the listening sockets check, and a client for the REST API (v2).

Every server listens on loopback; every process is started in a session of its own, so that
stopping a component stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the project checkout (include/civic_pipelines/devtools/)
VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
MARTS_DAG = "civic_marts"  # builds the marts when the source runs' Assets change


def log(message: str) -> None:
    """A timestamped line under the running program's name (``[demo 12:00:00] ...``)."""
    print(f"[{Path(sys.argv[0]).stem} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def airflow_environment(base: Mapping[str, str], data: Path, api_port: int) -> dict:
    """What every local Airflow stack here sets: the project's data folder (lake, warehouse,
    ``AIRFLOW_HOME`` under ``data``), no examples, DAGs unpaused, every user an admin (safe only
    because the servers listen on loopback) and the API server's port with the execution API that
    task processes report to. The callers add the orchestration layer's own settings
    (``backfill.airflow_settings``, ``backfill.offline_settings``): devtools import no orchestration."""
    return {
        **base,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "CIVIC_DATA_DIR": str(data),
        "CIVIC_LAKE": str(data / "lake"),
        "CIVIC_WAREHOUSE": str(data / "warehouse.duckdb"),
        "AIRFLOW_HOME": str(data / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        # Task processes report to the API server's execution API: it must follow the port.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # A catchup on a laptop keeps the API server busy: past the default 5 s a task's "run" call
        # is retried after it already took effect, and the retry's 409 fails the task unstarted.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def airflow(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(VENV_BIN / "airflow"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


def start_group(command: list[str], env: dict, logfile: Path) -> subprocess.Popen:
    handle = open(logfile, "ab")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def session_members(session_id: int) -> list[int]:
    """Every process still in the session the child was started in (it is its own leader)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen | None, name: str) -> None:
    """Stop a child and everything it started: Airflow's scheduler, workers and servers outlive
    a signal to the parent alone, so the whole session gets SIGTERM, then SIGKILL if it lingers."""
    stop_groups({name: process})


def stop_groups(processes: dict[str, subprocess.Popen | None]) -> None:
    """``stop_group`` for several children at once: every session gets SIGTERM together and they
    share one grace period (one after the other, each component's own shutdown wait added up:
    a Celery cluster's six took 32 s)."""
    running = {name: process for name, process in processes.items() if process is not None}
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        for process in running.values():
            for pid in session_members(process.pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while running and time.monotonic() < deadline:
            for name, process in list(running.items()):
                process.poll()
                if not session_members(process.pid):
                    log(f"stopped {name}")
                    del running[name]
            if running:
                time.sleep(0.5)
        if not running:
            return
    for name, process in running.items():
        log(f"could not stop every process of {name}: {session_members(process.pid)}")


def listening_sockets(processes: dict[str, subprocess.Popen]) -> list[tuple[str, str, int]]:
    """(component, address, port) of every listening TCP socket held by any process of the
    components' sessions (their workers and subprocesses included), as the kernel reports them."""
    import psutil

    found = set()
    for name, process in processes.items():
        for pid in session_members(process.pid):
            try:
                connections = psutil.Process(pid).net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for connection in connections:
                if connection.status == psutil.CONN_LISTEN:
                    found.add((name, connection.laddr.ip, connection.laddr.port))
    return sorted(found)


def loopback_only(sockets: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The sockets not bound to a loopback address (empty when the demo is safe to run as admin)."""
    import ipaddress

    return [s for s in sockets if not ipaddress.ip_address(s[1].split("%")[0]).is_loopback]


def components_healthy(api_port: int) -> bool:
    """The scheduler and the triggerer heartbeat (their log servers, if any, start before that)."""
    import requests

    try:
        health = requests.get(f"http://{LOOPBACK}:{api_port}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    return all((health.get(part) or {}).get("status") == "healthy" for part in ("scheduler", "triggerer"))


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str, timeout: float = 2, expect: int | None = None) -> bool:
    """The URL answers (below 500, or exactly ``expect``)."""
    import requests

    try:
        status = requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return False
    return status == expect if expect else status < 500


class AirflowAPI:
    """The Airflow REST API (v2). The demo's auth manager makes every user admin, so a token
    from /auth/token needs no password; a real deployment would log in."""

    def __init__(self, base_url: str):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base_url = base_url
        self.session = requests.Session()
        # SQLite metadata allows one writer: the API answers 500 ("database is locked") while the
        # scheduler writes. Every call here is safe to repeat (PATCH is idempotent and the
        # trigger names its run id, so a repeat answers 409).
        retry = Retry(
            total=8, backoff_factor=0.5, status_forcelist=(500, 502, 503), allowed_methods=None, raise_on_status=False
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))

    def login(self) -> None:
        token = self.session.get(f"{self.base_url}/auth/token", timeout=10).json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> dict:
        response = self.session.get(f"{self.base_url}/api/v2{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", json=body, timeout=30)
        if response.status_code == 409 and method == "POST":
            return {}  # a retried trigger whose first attempt went through
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def dag_registered(self, dag_id: str) -> bool:
        try:
            self.get(f"/dags/{dag_id}")
            return True
        except Exception:  # noqa: BLE001 - 404 until the DAG processor has parsed the file
            return False

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}").get("state")

    def marts_settled(self) -> str | None:
        """The state of civic_marts' last run once it has run and nothing is left for it (no run queued or
        running, no Asset event waiting to make one); None before."""
        runs = self.get(f"/dags/{MARTS_DAG}/dagRuns?order_by=-run_after&limit=100")["dag_runs"]
        waiting = self.get(f"/dags/{MARTS_DAG}/assets/queuedEvents")["total_entries"]
        if not runs or waiting or any(run["state"] in ("queued", "running") for run in runs):
            return None
        return runs[0]["state"]

    def task_summary(self, dag_id: str, run_id: str) -> list[tuple[str, str]]:
        instances = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]
        return [(ti.get("rendered_map_index") or ti["task_id"], ti["state"]) for ti in instances]

    def _pages(self, path: str, key: str, body: dict) -> list[dict]:
        """Every item of a batch ("/list") endpoint: the API caps a page at [api] maximum_page_limit."""
        items: list[dict] = []
        while True:
            page = self.send("POST", path, {**body, "page_offset": len(items), "page_limit": 100})
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def dag_runs(self, runs: dict[str, str]) -> dict[str, dict]:
        """{dag_id: that DAG's run} for ``runs`` ({dag_id: run_id}), in one request (plus paging)."""
        found = self._pages("/dags/~/dagRuns/list", "dag_runs", {"dag_ids": sorted(runs)})
        return {run["dag_id"]: run for run in found if runs.get(run["dag_id"]) == run["dag_run_id"]}

    def task_instances(self, runs: dict[str, str]) -> dict[str, list[dict]]:
        """{dag_id: the task instances of its run in ``runs``}, mapped ones one per map index."""
        found = self._pages(
            "/dags/~/dagRuns/~/taskInstances/list",
            "task_instances",
            {"dag_ids": sorted(runs), "dag_run_ids": sorted(set(runs.values()))},
        )
        by_dag: dict[str, list[dict]] = {dag_id: [] for dag_id in runs}
        for ti in found:
            if runs.get(ti["dag_id"]) == ti["dag_run_id"]:
                by_dag[ti["dag_id"]].append(ti)
        return by_dag
