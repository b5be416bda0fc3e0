"""The main job, offline: replay server + real Airflow (scheduler, DAG processor, API server) + dbt + DuckDB.

Starts the replay server and Airflow's components (API server, scheduler, DAG processor, triggerer;
SQLite metadata, LocalExecutor) on loopback, creates the pools, triggers each source's DAG for the
three most recent complete months (the dashboard's health cards then read current), waits for the
runs under the real scheduler, printing each run's blocks and dbt nodes done of planned every few
seconds, and prints where everything is, ending with the dashboard's address (the
plugin's page on the API server). Keeps serving until Ctrl-C; with
CIVIC_DEMO_EXIT=1 it stops by itself after the runs. Every process it starts runs in its own
process group and is stopped on the way out.

Every user is an admin here (SimpleAuthManager's all-admins mode: no login), which is safe only
because nobody else can reach the servers: the API server listens on 127.0.0.1, and the scheduler
and triggerer serve no logs (Airflow binds its log servers, 8793/8794, to every interface, with
no setting for the host; the API server reads the task logs from the local files instead). The
demo checks the listening sockets of everything it started and stops if one is not on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

# Starting, watching and stopping Airflow's components is shared with bench/scale.py and the tests.
from civic_pipelines.devtools.local_airflow import (  # noqa: E402,F401 (re-exported: tests use demo.<name>)
    LOOPBACK,
    MARTS_DAG,
    VENV_BIN,
    AirflowAPI,
    airflow,
    airflow_environment,
    components_healthy,
    http_ok,
    listening_sockets,
    loopback_only,
    session_members,
    start_group,
    stop_group,
    stop_groups,
    wait_for,
)

# A source whose DAG also catches up from last month (one scheduled run beside the triggered one), to
# show a scheduled block: CIVIC_DEMO_CATCHUP_SOURCE=seattle_crime. None by default: the triggered
# runs land last month already, and a second run's dbt nodes queued behind the one DuckDB writer
# slot (4 models and the freshness check: about a tenth of the demo's serial dbt tasks).
CATCHUP_SOURCE = os.environ.get("CIVIC_DEMO_CATCHUP_SOURCE") or None
DEMO_MDS_PROVIDERS = ["dott", "bolt", "voi"]  # MDS 0.4, 1.2 and 2.0: one provider per version family
# How many of the most recent complete months each source lands (CIVIC_DEMO_START/CIVIC_DEMO_END name others).
DEMO_MONTH_COUNT = int(os.environ.get("CIVIC_DEMO_MONTHS", "3"))
# A progress line per source at least this often while the demo waits (seconds).
PROGRESS_INTERVAL = float(os.environ.get("CIVIC_DEMO_PROGRESS_INTERVAL", "5"))
# How long each component may take to come up: minutes, not seconds, on a machine shared with other
# jobs (the API server took over 3 min there); a quiet machine takes well under one.
STARTUP_TIMEOUT = int(os.environ.get("CIVIC_DEMO_STARTUP_TIMEOUT", "600"))
RUN_TIMEOUT = int(os.environ.get("CIVIC_DEMO_TIMEOUT", "1800"))


def airflow_components(api_port: int) -> dict[str, list[str]]:
    """What `airflow standalone` runs, minus the log servers it cannot bind to loopback."""
    return {
        "api-server": ["api-server", "--host", LOOPBACK, "--port", str(api_port)],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def demo_sources() -> list[str]:
    """Every registered source: each has a DAG, so each must point at the replay server here
    (an unconfigured one would reach for its live endpoint)."""
    from civic_pipelines import sources

    return sources.names()


def demo_range(today: date | None = None) -> dict[str, str]:
    """The months every source lands: the DEMO_MONTH_COUNT most recent complete ones (so the
    dashboard's health cards read current), unless CIVIC_DEMO_START / CIVIC_DEMO_END name them."""
    from civic_pipelines.months import format_month, previous_month

    today = today or datetime.now(UTC).date()
    end = previous_month(today.replace(day=1))
    start = end
    for _ in range(DEMO_MONTH_COUNT - 1):
        start = previous_month(start)
    return {
        "start_month": os.environ.get("CIVIC_DEMO_START", format_month(start)),
        "end_month": os.environ.get("CIVIC_DEMO_END", format_month(end)),
    }


def demo_months(today: date | None = None) -> list[str]:
    from civic_pipelines.months import month_range

    window = demo_range(today)
    return month_range(window["start_month"], window["end_month"])


def replay_config(today: date | None = None) -> dict:
    """What the replay server is told before the runs, so that every source publishes the demo's
    months: Toronto's current-year file otherwise ends on a fixed day (its contract's snapshot).
    Street Manager, SRWR and MDS publish up to the replay's clock, which is the real date."""
    today = today or datetime.now(UTC).date()
    return {"toronto_311": {"current_through": (today - timedelta(days=1)).isoformat()}}


def start_dbt_parse(env: dict, data: Path, logs: Path) -> subprocess.Popen:
    """`dbt parse` with the demo's lake and warehouse paths, beside Airflow's start-up.

    dbt's partial-parse state (``dbt/target/partial_parse.msgpack``, from `make setup`) records the
    profile it was parsed with, and the profile names the warehouse path: under any other data
    folder (the tests' own) each DAG's first dbt task found it stale and parsed the whole project
    (minutes on a loaded machine), one DAG after another behind the one writer slot."""
    return start_group(
        [
            str(VENV_BIN / "dbt"),
            "parse",
            "--project-dir",
            str(ROOT / "dbt"),
            "--profiles-dir",
            str(ROOT / "dbt"),
            "--target-path",
            str(data / "dbt-parse" / "target"),
            "--log-path",
            str(data / "dbt-parse" / "logs"),
            "--quiet",
        ],
        env,
        logs / "dbt-parse.log",
    )


def seed_cosmos_partial_parse(parse: subprocess.Popen, data: Path, dag_ids: list[str]) -> bool:
    """Give each DAG's dbt task group the fresh partial-parse state in its Cosmos cache folder
    (``<cache_dir>/<dag_id>__<group_id>/target/``), which Cosmos prefers when it is the newest; the
    project's own target/ (shared with every other run of this checkout) is left alone."""
    import shutil

    if parse.wait() != 0:
        return False  # the tasks parse the project themselves, as before
    target = data / "dbt-parse" / "target"
    for dag_id in dag_ids:
        cache = data / "cosmos_cache" / f"{dag_id}__dbt" / "target"
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("manifest.json", "partial_parse.msgpack"):
            shutil.copy2(target / name, cache / f".{name}.tmp")
            os.replace(cache / f".{name}.tmp", cache / name)  # a reader sees the old file or the new, whole
    return True


def configure_replay(replay_port: int, config: dict) -> None:
    import requests

    response = requests.post(f"http://127.0.0.1:{replay_port}/_replay/config", json=config, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"the replay server refused its configuration: {response.status_code} {response.text[:500]}")


def demo_environment(data: Path, replay_port: int, api_port: int) -> dict:
    from civic_pipelines.months import current_month, format_month, parse_month, previous_month
    from civic_pipelines.orchestration import backfill

    # Every Airflow process imports airflow_local_settings; the executor then forks tasks with dbt
    # and the parsed DAGs already loaded (civic_pipelines/orchestration/preload.py). Only the
    # scheduler forks tasks: the API server, DAG processor and triggerer do not preload.
    backfill.write_local_settings(data / "airflow")
    env = {
        # all-admins only because every server below listens on loopback (checked: loopback_only)
        **airflow_environment(os.environ, data, api_port),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # its server binds 0.0.0.0 by default
        # Executor, parallelism, DAG file re-parse and parse timeouts as for any backfill on one
        # machine (orchestration/backfill.py); the demo's DAG files never change while it runs.
        **backfill.airflow_settings(dag_file_interval=3600),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",  # one DAG file
        # The dbt tasks run one after another (one DuckDB writer): the scheduler queues the next when
        # it loops after the last one's success, and an idle loop sleeps this long first (default 1 s).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        **backfill.offline_settings(data / "cosmos_cache"),
    }
    replay = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": replay_port, "schema": "http"})
    previous = format_month(previous_month(parse_month(current_month())))
    current = current_month()
    for source in demo_sources():
        env[f"AIRFLOW_CONN_CIVIC_{source.upper()}"] = replay
        # Catchup from last month for CATCHUP_SOURCE only (one scheduled block, not 18 years of them);
        # the others start this month (no complete interval yet), so their dbt tasks do not queue
        # twice behind the one DuckDB writer slot.
        start = previous if source == CATCHUP_SOURCE else current
        env[f"AIRFLOW_VAR_CIVIC_{source.upper()}_START_MONTH"] = start
    # MDS: one connection per provider (its version and auth), all pointing at the replay server.
    from civic_pipelines.replay.mds import connections_for

    # Three providers, one per MDS version family (dott: 0.4 + OAuth2; bolt: 1.2 + bearer; voi: 2.0 +
    # OAuth2), so each version's schema and normalisation runs (issue 14: no 1.2 provider ran, and
    # nothing showed that every 1.2 status change was quarantined); add lyft for 2.0 with a bearer.
    providers = connections_for(f"http://127.0.0.1:{replay_port}")
    for provider, connection in providers.items():
        env[f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"] = json.dumps(connection)
    env["AIRFLOW_VAR_CIVIC_MDS_PROVIDERS"] = json.dumps(DEMO_MDS_PROVIDERS)
    return env


def start_airflow(env: dict, logs: Path, api_port: int) -> dict[str, subprocess.Popen]:
    return {
        name: start_group([str(VENV_BIN / "airflow"), *args], env, logs / f"{name}.log")
        for name, args in airflow_components(api_port).items()
    }


FINISHED_TASK_STATES = {"success", "skipped", "failed", "upstream_failed", "removed"}
FINISHED_RUN_STATES = ("success", "failed")


class RunProgress(NamedTuple):
    """Where one DAG run is: its blocks (mapped ``extract_load``) and dbt nodes (``dbt.*`` tasks)
    done of planned. ``blocks_planned`` is None until ``plan_blocks`` has expanded the blocks."""

    dag_id: str
    state: str | None
    blocks_done: int
    blocks_planned: int | None
    dbt_done: int
    dbt_planned: int
    seconds: float | None = None  # the run's own start to end, once it has ended

    @classmethod
    def of(cls, dag_id: str, run: dict | None, instances: list[dict]) -> RunProgress:
        blocks = [ti for ti in instances if ti["task_id"] == "extract_load"]
        expanded = [ti for ti in blocks if ti.get("map_index", -1) >= 0]
        if expanded or any(ti["state"] in FINISHED_TASK_STATES for ti in blocks):
            blocks = expanded  # an unexpanded placeholder that finished (skipped) means no blocks
        dbt = [ti for ti in instances if ti["task_id"].startswith("dbt.")]
        seconds = None
        if run and run.get("start_date") and run.get("end_date"):
            seconds = (
                datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
            ).total_seconds()
        return cls(
            dag_id=dag_id,
            state=(run or {}).get("state"),
            blocks_done=sum(ti["state"] in FINISHED_TASK_STATES for ti in blocks),
            blocks_planned=len(blocks) if (expanded or blocks == []) and instances else None,
            dbt_done=sum(ti["state"] in FINISHED_TASK_STATES for ti in dbt),
            dbt_planned=len(dbt),
            seconds=seconds,
        )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES

    def line(self) -> str:
        planned = "?" if self.blocks_planned is None else self.blocks_planned
        status = f"{self.state} in {self.seconds:.0f} s" if self.finished and self.seconds is not None else self.state
        return (
            f"progress {self.dag_id}: blocks {self.blocks_done}/{planned}, "
            f"dbt nodes {self.dbt_done}/{self.dbt_planned} ({status})"
        )


def wait_with_progress(
    api: AirflowAPI, runs: dict[str, str], timeout: float, interval: float = PROGRESS_INTERVAL
) -> dict[str, RunProgress]:
    """Wait until every run in ``runs`` ({dag_id: run_id}) has finished, printing a progress line
    per unfinished run every ``interval`` seconds and a last one as each finishes. Two requests a
    round, whatever the number of runs: the API server shares the two cores with the tasks."""
    deadline = time.monotonic() + timeout
    progress: dict[str, RunProgress] = {}
    while True:
        pending = {
            dag_id: run_id for dag_id, run_id in runs.items() if not (dag_id in progress and progress[dag_id].finished)
        }
        if not pending:
            return progress
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {', '.join(pending)}")
        round_started = time.monotonic()
        dag_runs = api.dag_runs(pending)
        instances = api.task_instances(pending)
        for dag_id in pending:
            progress[dag_id] = RunProgress.of(dag_id, dag_runs.get(dag_id), instances[dag_id])
            log(progress[dag_id].line())
        time.sleep(max(0.0, interval - (time.monotonic() - round_started)))


def print_summary(progress: dict[str, RunProgress], seconds: float) -> None:
    print(f"\n{'DAG':<18} {'state':<8} {'blocks':>7} {'dbt nodes':>10} {'run time':>9}")
    for item in progress.values():
        run_time = f"{item.seconds:.0f} s" if item.seconds is not None else "-"
        print(
            f"{item.dag_id:<18} {item.state or '-':<8} {item.blocks_done:>3}/{item.blocks_planned or 0:<3} "
            f"{item.dbt_done:>5}/{item.dbt_planned:<4} {run_time:>9}"
        )
    print(f"first trigger to last run finished: {seconds:.0f} s\n", flush=True)


def print_results(data: Path) -> None:
    import duckdb

    warehouse = data / "warehouse.duckdb"
    for _attempt in range(30):
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                facts = con.execute(
                    "select count(*), min(_block_month), max(_block_month) from fct_crime_offenses"
                ).fetchone()
                log(f"fct_crime_offenses: {facts[0]} rows, months {facts[1]}..{facts[2]}")
                for city, count, first, last in con.execute(
                    "select city, count(*), min(_block_month), max(_block_month) from fct_service_requests group by city order by city"
                ).fetchall():
                    log(f"fct_service_requests {city}: {count} rows, months {first}..{last}")
                rows = con.execute(
                    "select strftime(report_month, '%Y-%m') as month, crime_against_category, offenses "
                    "from mart_crime_monthly order by month, offenses desc limit 12"
                ).fetchall()
                requests = con.execute(
                    "select city, major_category, n from ("
                    " select city, major_category, sum(requests) as n,"
                    " row_number() over (partition by city order by sum(requests) desc) as r"
                    " from mart_requests_by_category_month group by city, major_category)"
                    " where r <= 3 order by city, n desc"
                ).fetchall()
            print(f"\n{'month':<8} {'crime_against_category':<24} offenses")
            for month, category, offenses in rows:
                print(f"{month:<8} {category or '-':<24} {offenses}")
            print(f"\n{'city':<12} {'311 major category':<24} requests")
            for city, category, count in requests:
                print(f"{city:<12} {category or '-':<24} {count}")
            print()
            return
        except duckdb.IOException:
            time.sleep(2)  # a dbt run (of a catchup block, if any) holds the write lock for a moment
    log("the warehouse is busy (a dbt run holds its lock); query it later")


def wait_for_marts(api: AirflowAPI, timeout: float) -> str:
    """Wait until civic_marts has run on the source runs' Asset events, a progress line every
    PROGRESS_INTERVAL seconds; its final state."""
    started = time.monotonic()
    while (state := api.marts_settled()) is None:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for the {MARTS_DAG} run")
        log(f"progress {MARTS_DAG}: waiting for its asset-triggered run ({time.monotonic() - started:.0f} s)")
        time.sleep(PROGRESS_INTERVAL)
    log(f"progress {MARTS_DAG}: {state} in {time.monotonic() - started:.0f} s")
    return state


def check_loopback_only(processes: dict[str, subprocess.Popen], said: str) -> None:
    """Every socket the processes' sessions listen on is on 127.0.0.1 (every user is an admin
    here: refuse to serve that to the network), and none is an Airflow log server's (8793/8794)."""
    sockets = listening_sockets(processes)
    exposed = loopback_only(sockets) + [s for s in sockets if s[2] in AIRFLOW_LOG_SERVER_PORTS]
    if exposed:
        raise RuntimeError(f"listening beyond loopback, or an Airflow log server: {exposed}")
    log(f"{said}: " + ", ".join(f"{name} {ip}:{port}" for name, ip, port in sockets))


# The worker's and the triggerer's log servers (Airflow's defaults); the demo reads task logs from
# files, so none is started (--skip-serve-logs).
AIRFLOW_LOG_SERVER_PORTS = (8793, 8794)


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
    replay = dbt_parse = None
    components: dict[str, subprocess.Popen] = {}
    exit_code = 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        replay = start_group([str(VENV_BIN / "civic"), "replay", "--port", str(replay_port)], env, logs / "replay.log")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{replay_port}/api/views/tazs-3rd5.json"), 30, "the replay server")
        configure_replay(replay_port, replay_config())
        log(f"replay server on http://127.0.0.1:{replay_port}, publishing {', '.join(demo_months())}")

        airflow(env, "db", "migrate")
        from civic_pipelines.orchestration import backfill

        pools = backfill.pools(demo_sources(), parts={"mds": len(DEMO_MDS_PROVIDERS)})
        (data / "pools.json").write_text(json.dumps(pools))
        airflow(env, "pools", "import", str(data / "pools.json"))
        log(f"metadata database migrated, pools created: {', '.join(pools)}")

        dbt_parse = start_dbt_parse(env, data, logs)
        components = start_airflow(env, logs, api_port)
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"),
            STARTUP_TIMEOUT,
            "the Airflow API server",
        )
        log(f"Airflow UI on http://127.0.0.1:{api_port} (logs in {logs})")
        wait_for(lambda: components_healthy(api_port), STARTUP_TIMEOUT, "the scheduler, DAG processor and triggerer")
        check_loopback_only({"replay": replay, **components}, "listening on loopback only")
        seeded = seed_cosmos_partial_parse(dbt_parse, data, demo_sources())
        log(
            "dbt partial-parse state for the demo's paths "
            + ("seeded" if seeded else f"not made (see {logs / 'dbt-parse.log'})")
        )
        api = AirflowAPI(f"http://127.0.0.1:{api_port}")
        api.login()

        window = demo_range()
        run_ids = {}
        first_trigger = None
        for source in demo_sources():
            wait_for(lambda: api.dag_registered(source), STARTUP_TIMEOUT, f"DAG {source} to be parsed", interval=2)
            api.send("PATCH", f"/dags/{source}", {"is_paused": False})
            run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
            first_trigger = first_trigger or time.monotonic()
            api.send(
                "POST",
                f"/dags/{source}/dagRuns",
                {"dag_run_id": run_id, "logical_date": None, "conf": {**window, "force": True}},
            )
            run_ids[source] = run_id
            log(
                f"triggered {source} for {window['start_month']}..{window['end_month']} (run {run_id}) through the REST API"
            )

        # The runs the demo waits for, {dag_id: run_id}: one per source, triggered above.
        progress = wait_with_progress(api, run_ids, RUN_TIMEOUT)
        outcomes = {dag_id: item.state for dag_id, item in progress.items()}
        for dag_id, item in progress.items():
            if item.state != "success":  # say which tasks did not succeed; a success needs no list
                for label, task_state in api.task_summary(dag_id, run_ids[dag_id]):
                    if task_state not in ("success", "skipped"):
                        print(f"    {dag_id} {label:<48} {task_state}")
        # The source runs' Asset events queued civic_marts: its run waits for the source runs, then builds.
        outcomes[MARTS_DAG] = wait_for_marts(api, RUN_TIMEOUT)
        # Again once every component has run tasks: a log server (or anything else) a component
        # started since would be listening by now.
        check_loopback_only({"replay": replay, **components}, "after the runs, still listening on loopback only")
        seconds = time.monotonic() - first_trigger
        log(
            f"all runs finished {seconds:.0f} s after the first trigger ({time.monotonic() - started:.0f} s since the demo started)"
        )
        print_summary(progress, seconds)
        print_results(data)
        print(f"Airflow UI : http://127.0.0.1:{api_port}")
        dashboard = f"http://127.0.0.1:{api_port}/civic/"
        try:  # its first page opens a snapshot of the warehouse: seconds on a loaded machine
            # 200, not just an answer: the dashboard refuses (401) a request Airflow did not sign
            # in; in the demo's all-admins mode the API server signs in every caller
            wait_for(lambda: http_ok(dashboard, timeout=30, expect=200), 120, "the dashboard", interval=3)
        except TimeoutError:
            log(f"the dashboard did not answer at {dashboard} (see {logs / 'api-server.log'})")
        print(f"Lake       : {data / 'lake'}")
        print(f"Warehouse  : {data / 'warehouse.duckdb'}")
        print(f"Outcome    : {', '.join(f'{s}={o}' for s, o in outcomes.items())} in {seconds:.0f} s", flush=True)
        # last line of the run: the dashboard (the plugin's page; "Civic data" in the Airflow menu)
        print(f"Dashboard  : {dashboard}", flush=True)
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
        stop_groups(
            {
                **{f"Airflow {name}": process for name, process in reversed(components.items())},
                "replay server": replay,
                "dbt parse": dbt_parse if dbt_parse is not None and dbt_parse.poll() is None else None,
            }
        )
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
