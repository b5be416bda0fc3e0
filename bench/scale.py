"""Scale simulation: a long backfill of every source through real Airflow, and where the time goes.

What runs (everything on loopback, nothing asserted about speed):

* a throwaway PostgreSQL cluster (``civic_pipelines.devtools.postgres_cluster``: initdb + pg_ctl,
  pg_stat_statements preloaded) as Airflow's metadata database, ``airflow db migrate`` against it;
* the replay server in this process, every API serving **small generated months** (50 rows a
  month for the SODA and ArcGIS sources, 600 rows a year for Toronto, 25 SRWR activities,
  30 Street Manager events over the three parts, one MDS trip and one event an hour: an MDS month
  is still ~1,500 hourly requests per provider, as the real API walks it);
* Airflow configured with the backfill settings ``make demo`` uses too
  (``civic_pipelines.orchestration.backfill``: LocalExecutor, the preload that builds the DAGs
  in the scheduler before it forks the tasks, the pools; docs/scaling.md, "Settings for a backfill");
* ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and ``airflow api-server`` as
  subprocesses (the API server is required: in Airflow 3 every task reports to its Execution
  API; its core API also takes the triggers), each in its own session, stopped on the way out;
* the project's DAGs, built by the same factory as ``dags/civic_sources.py`` (every source, and
  in a task process only the task's own DAG, as that file does; each Cosmos group still rendered,
  into a DAG that is never registered, so a task process parses what a production task parses)
  without their dbt tasks: **dbt is left out**, the subject is the
  planner and the mapped extracts (dbt's own cost per model is in the README: ~3 s import + ~1 s a
  model, one writer); MDS keeps its PostgreSQL sync task, which skips with no ``civic_postgres``;
* one triggered run per source and 120-month chunk (``start_month``/``end_month``/``force``: the
  trigger form the planner accepts; 120 is the planner's limit per run), by default the last ten
  complete years (a source that starts later starts at its first month), then waiting on the
  metadata database until every run has finished.

Then it reads the metadata database (task instances, XCom manifests, pg_stat_statements) and
/proc, and prints: blocks per minute (overall and per source), the scheduler's overhead per mapped
task (scheduled -> queued -> running, the task's own overhead around ``run_block``), total wall
against the sum of task durations, and CPU seconds per component, the rest of the machine included.

    .venv/bin/python bench/scale.py                                   # ten years, every source
    .venv/bin/python bench/scale.py --years 1 --sources seattle_crime # a quick run

Options: ``--parallelism`` (Airflow's [core] parallelism, default ``backfill.BACKFILL_PARALLELISM``, 4), ``--end-month`` (default the
last complete month), ``--dir`` (work folder, default ``data/scale``, wiped first), ``--timeout``,
``--parse-interval``, ``--dag-file-per-source`` (one DAG file per source instead of the project's
one file for all), ``--report DIR/scale-result.json`` (reprint a saved run; the raw figures are
saved there after every run). The figures of a full run are in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "bench"))

from process_cpu import group_cpu, machine_busy, postgres_cpu, self_cpu  # noqa: E402
from scale_report import load, report, save  # noqa: E402

from civic_pipelines.devtools.local_airflow import (  # noqa: E402
    VENV_BIN,
    AirflowAPI,
    airflow,
    airflow_environment,
    http_ok,
    start_group,
    stop_groups,
    wait_for,
)

# Small months: the subject is the orchestration around each block, not the extractor's speed.
REPLAY_CONFIG = {
    "seattle_crime": {"rows_per_month": 50},
    "nyc_311": {"rows_per_month": 50},
    "minneapolis_311": {"rows_per_month": 50},
    "toronto_311": {"rows_per_year": 600},
    "srwr": {"activities_per_month": 25},
    "street_manager": {"events_per_month": {"permit": 20, "activity": 5, "section_58": 5}},
    "mds": {"trips_per_hour": 1, "events_per_hour": 1},
}
DAG_FILE = '''"""bench/scale.py's DAG file: the project's DAGs as dags/civic_sources.py builds them (every
source, same factory), except that each source's Cosmos dbt group is rendered into a throwaway DAG
that is never registered: a task process still pays the parse cost of a production one, and the
runs are plan_blocks -> extract_load (-> the PostgreSQL sync where a source has one). dbt is left
out of the scale run."""

from airflow.sdk import DAG, get_parsing_context

from civic_pipelines.orchestration import dbt_group
from civic_pipelines.orchestration.dag_factory import build_source_dag

# As dags/civic_sources.py: a task process builds only its own DAG.
_only = get_parsing_context().dag_id

_render_dbt_group = dbt_group.build_dbt_group


class _NoDbtTasks(list):
    """What the source DAG wires in place of its dbt group: no task (chains as an empty list), and
    no node to make an Asset's producer (the group's ``tasks_map``)."""

    tasks_map = {}


def _rendered_not_scheduled(spec, *args, **kwargs):
    with DAG(dag_id=f"scale_unregistered_dbt_{spec.name}", schedule=None, auto_register=False):
        _render_dbt_group(spec, *args, **kwargs)
    return _NoDbtTasks()


dbt_group.build_dbt_group = _rendered_not_scheduled
for _name in __NAMES__:
    if _only is None or _only == _name:
        globals()[_name] = build_source_dag(_name)
dbt_group.build_dbt_group = _render_dbt_group
del _name
'''


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- months


def month_add(month: str, n: int) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + mon - 1 + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> int:
    return (int(last[:4]) * 12 + int(last[5:7])) - (int(first[:4]) * 12 + int(first[5:7])) + 1


def source_ranges(names: list[str], years: int, end_month: str) -> dict[str, list[tuple[str, str]]]:
    """Per source, the (start, end) month ranges of its triggered runs: ``years`` back from
    ``end_month``, from the source's first month at the earliest, cut at the planner's limit."""
    from civic_pipelines import sources

    wanted_start = month_add(end_month, -12 * years + 1)
    ranges = {}
    for name in names:
        spec = sources.spec(name)
        start = max(wanted_start, spec.first_month)
        chunks, current = [], start
        while current <= end_month:
            last = min(month_add(current, spec.max_blocks_per_run - 1), end_month)
            chunks.append((current, last))
            current = month_add(last, 1)
        ranges[name] = chunks
    return ranges


# ---------------------------------------------------------------- the replay server


class ReplayMeter:
    """Drains the replay server's request log now and then (it would grow by ~1,500 entries per
    MDS block) into totals: requests and the handlers' own milliseconds, per API prefix."""

    def __init__(self, server) -> None:
        self.server = server
        self.requests = 0
        self.ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="replay-meter")

    def start(self) -> ReplayMeter:
        self._thread.start()
        return self

    def drain(self) -> None:
        state = self.server.state
        with state._lock:  # the log is the server's; swapping the list keeps this O(1) under the lock
            entries, state._requests = state._requests, []
        for entry in entries:
            self.requests += 1
            self.ms += entry.get("ms") or 0.0

    def _loop(self) -> None:
        while not self._stop.wait(5):
            self.drain()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.drain()


def start_replay(end_month: str, today: str):
    from civic_pipelines.replay.server import make_server

    server = make_server(host="127.0.0.1", port=0).start()
    config = {name: dict(body) for name, body in REPLAY_CONFIG.items()}
    config["street_manager"]["latest_month"] = end_month
    config["srwr"]["today"] = today
    import requests

    response = requests.post(f"{server.url}/_replay/config", json=config, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"replay config: {response.status_code} {response.text[:500]}")
    return server


# ---------------------------------------------------------------- Airflow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_dag_files(folder: Path, split: bool) -> None:
    """One file with every source's DAG (as dags/civic_sources.py), or one file per source."""
    from civic_pipelines import sources

    folder.mkdir(parents=True, exist_ok=True)
    groups = {f"civic_{name}.py": [name] for name in sources.names()} if split else {"civic_scale.py": sources.names()}
    for filename, names in groups.items():
        (folder / filename).write_text(DAG_FILE.replace("__NAMES__", repr(names)))


def environment(
    work: Path,
    pg: dict,
    replay_url: str,
    api_port: int,
    parallelism: int,
    parse_interval: int,
    today: str,
    split_dag_files: bool = False,
) -> dict:
    from civic_pipelines import sources
    from civic_pipelines.months import current_month
    from civic_pipelines.orchestration import backfill
    from civic_pipelines.replay.mds import connections_for

    airflow_home = work / "airflow"
    # As `make demo` does: the executor forks tasks with pyarrow/duckdb/dbt and the DAGs already loaded.
    backfill.write_local_settings(airflow_home)
    write_dag_files(work / "dags", split_dag_files)
    env = {
        **airflow_environment(
            {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "CIVIC_"))},
            work,
            api_port,
        ),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg["url"],
        # The backfill settings `make demo` uses too (docs/scaling.md, "Settings for a backfill").
        **backfill.airflow_settings(parallelism=parallelism, dag_file_interval=parse_interval),
        "AIRFLOW__CORE__DAGS_FOLDER": str(work / "dags"),
        **backfill.offline_settings(work / "cosmos_cache"),
    }
    host, port = replay_url.split("://", 1)[1].split(":")
    connection = {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
    this_month = current_month()
    for name in sources.names():
        env[f"AIRFLOW_CONN_CIVIC_{name.upper()}"] = json.dumps(connection)
        # No catchup: the DAGs start this month (no complete interval yet), so the only runs are ours.
        env[f"AIRFLOW_VAR_CIVIC_{name.upper()}_START_MONTH"] = this_month
    env["AIRFLOW_CONN_CIVIC_SRWR"] = json.dumps({**connection, "extra": {"today": today}})
    for provider, conn in connections_for(replay_url).items():
        env[f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"] = json.dumps(conn)
    return env


def create_pools(env: dict, work: Path) -> None:
    from civic_pipelines import sources
    from civic_pipelines.orchestration import backfill

    (work / "pools.json").write_text(json.dumps(backfill.pools(sources.names())))
    airflow(env, "pools", "import", str(work / "pools.json"))


# ---------------------------------------------------------------- the metadata database


def connect(pg: dict):
    import psycopg

    return psycopg.connect(
        host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"], dbname=pg["dbname"], autocommit=True
    )


def progress(con, run_ids: list[str]) -> tuple[dict, dict]:
    runs = dict(
        con.execute("select state, count(*) from dag_run where run_id = any(%s) group by state", [run_ids]).fetchall()
    )
    tasks = dict(
        con.execute(
            "select coalesce(state, 'none'), count(*) from task_instance where run_id = any(%s) "
            "and task_id = 'extract_load' and map_index >= 0 group by 1",
            [run_ids],
        ).fetchall()
    )
    return runs, tasks


def manifest_of(value) -> dict:
    while isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def collect(con, run_ids: list[str]) -> dict:
    tis = con.execute(
        "select dag_id, run_id, task_id, map_index, state, try_number, scheduled_dttm, queued_dttm, start_date, "
        "end_date from task_instance where run_id = any(%s) order by start_date nulls last",
        [run_ids],
    ).fetchall()
    keys = ("dag_id", "run_id", "task_id", "map_index", "state", "try_number", "scheduled", "queued", "start", "end")
    tis = [dict(zip(keys, row)) for row in tis]
    manifests = {}
    for dag_id, run_id, map_index, value in con.execute(
        "select dag_id, run_id, map_index, value from xcom where run_id = any(%s) and task_id = 'extract_load' "
        "and key in ('return_value', 'manifest')",
        [run_ids],
    ).fetchall():
        manifests[(dag_id, run_id, map_index)] = manifest_of(value)
    for ti in tis:
        ti["manifest"] = manifests.get((ti["dag_id"], ti["run_id"], ti["map_index"]), {})
    runs = con.execute(
        "select dag_id, run_id, state, queued_at, start_date, end_date from dag_run where run_id = any(%s)", [run_ids]
    ).fetchall()
    retried = con.execute("select count(*) from task_instance_history where run_id = any(%s)", [run_ids]).fetchone()[0]
    statements = con.execute(
        "select calls, total_exec_time, query from pg_stat_statements s join pg_database d on d.oid = s.dbid "
        "where d.datname = current_database() order by total_exec_time desc"
    ).fetchall()
    return {
        "tis": tis,
        "runs": [dict(zip(("dag_id", "run_id", "state", "queued_at", "start", "end"), r)) for r in runs],
        "retried": retried,
        "statements": statements,
    }


def task_log_phases(airflow_home: Path, ti: dict) -> dict:
    """From a task's own log (JSON lines): the DAG file parse the task process did before running
    (``dag_file_parse_ms`` of "Worker startup parse complete") and the seconds from "Post Execute"
    to the log's last line (XCom push, state report)."""
    folder = airflow_home / "logs" / f"dag_id={ti['dag_id']}" / f"run_id={ti['run_id']}" / f"task_id={ti['task_id']}"
    if ti["map_index"] >= 0:  # an unmapped task's log has no map_index folder
        folder = folder / f"map_index={ti['map_index']}"
    path = folder / f"attempt={ti['try_number']}.log"
    found: dict = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    first = last = post = None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")) if "timestamp" in event else None
        if stamp is not None:
            first = first or stamp
            last = stamp
        if "dag_file_parse_ms" in event:
            found["parse"] = event["dag_file_parse_ms"] / 1000
        if str(event.get("event", "")).startswith("::group::Post Execute"):
            post = stamp
    if post is not None and last is not None:
        found["post"] = (last - post).total_seconds()
    if first is not None and ti["start"] is not None:
        found["to_first_line"] = (first - ti["start"]).total_seconds()
    return found


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    from civic_pipelines import sources
    from civic_pipelines.months import current_month, format_month, parse_month, previous_month
    from civic_pipelines.orchestration.backfill import BACKFILL_DAG_FILE_INTERVAL_SECONDS, BACKFILL_PARALLELISM

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--sources", default=",".join(sources.names()), help="comma-separated (default: every source)")
    parser.add_argument("--parallelism", type=int, default=BACKFILL_PARALLELISM)
    parser.add_argument("--end-month", default=format_month(previous_month(parse_month(current_month()))))
    parser.add_argument("--dir", default=str(ROOT / "data" / "scale"))
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for the runs")
    parser.add_argument(
        "--parse-interval",
        type=int,
        default=BACKFILL_DAG_FILE_INTERVAL_SECONDS,
        help="[dag_processor] min_file_process_interval",
    )
    parser.add_argument("--report", metavar="JSON", help="print the report of a saved run (scale-result.json) and exit")
    parser.add_argument(
        "--dag-file-per-source",
        action="store_true",
        help="one DAG file per source instead of the project's one file for every source",
    )
    args = parser.parse_args(argv)
    if args.report:
        data, meta = load(Path(args.report))
        airflow_home = Path(args.report).resolve().parent / "airflow"
        if (airflow_home / "logs").is_dir():  # the run's folder is still there: read the task logs again
            for ti in data["tis"]:
                ti["log"] = task_log_phases(airflow_home, ti)
        report(data, meta)
        return 0
    chosen = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in sources.names()]
    if unknown or not chosen:
        parser.error(f"unknown sources {unknown}; known: {', '.join(sources.names())}")

    work = Path(args.dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    logs = work / "logs"
    logs.mkdir()
    today = date.today().isoformat()
    ranges = source_ranges(chosen, args.years, args.end_month)
    planned = {}
    for name, chunks in ranges.items():
        months = sum(months_between(a, b) for a, b in chunks)
        planned[name] = months * max(1, len(sources.parts(name)))
    label = (
        f"{len(chosen)} source(s), {args.years} year(s) to {args.end_month}"
        + (", one DAG file per source" if args.dag_file_per_source else ", one DAG file for every source")
        + ": "
        + ", ".join(f"{n} {c[0][0]}..{c[-1][1]} ({planned[n]} blocks)" for n, c in ranges.items())
    )
    log(label)

    from civic_pipelines.devtools.postgres_cluster import postgres_cluster

    processes: dict[str, object] = {}
    replay = meter = None
    exit_code = 1
    with postgres_cluster(dbname="airflow", settings={"max_connections": "200"}) as pg:
        try:
            replay = start_replay(args.end_month, today)
            meter = ReplayMeter(replay).start()
            log(f"PostgreSQL on 127.0.0.1:{pg['port']}, replay server on {replay.url}")
            api_port = free_port()
            env = environment(
                work, pg, replay.url, api_port, args.parallelism, args.parse_interval, today, args.dag_file_per_source
            )
            started = time.monotonic()
            airflow(env, "db", "migrate")
            create_pools(env, work)
            log(f"airflow db migrate + pools: {time.monotonic() - started:.0f} s")
            for name, command in (
                ("scheduler", ["scheduler"]),
                ("dag-processor", ["dag-processor"]),
                ("api-server", ["api-server", "--port", str(api_port), "--workers", "1"]),
            ):
                processes[name] = start_group([str(VENV_BIN / "airflow"), *command], env, logs / f"{name}.log")
            wait_for(lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"), 300, "the API server")
            api = AirflowAPI(f"http://127.0.0.1:{api_port}")
            api.login()
            for name in chosen:
                wait_for(lambda: api.dag_registered(name), 600, f"DAG {name} to be parsed", interval=2)
            log(f"Airflow up, DAGs parsed: {time.monotonic() - started:.0f} s after migrate began")

            with connect(pg) as con:
                con.execute("select pg_stat_statements_reset()")
            cpu_before = {name: group_cpu(p.pid) for name, p in processes.items()}
            pg_before, self_before, busy_before = postgres_cpu(pg["pid"]), self_cpu(), machine_busy()
            t0 = time.monotonic()
            run_ids = []
            for name, chunks in ranges.items():
                for index, (first, last) in enumerate(chunks):
                    run_id = f"scale__{name}__{index}__{int(time.time())}"
                    api.send(
                        "POST",
                        f"/dags/{name}/dagRuns",
                        {
                            "dag_run_id": run_id,
                            "logical_date": None,
                            "conf": {"start_month": first, "end_month": last, "force": True},
                        },
                    )
                    run_ids.append(run_id)
            log(f"triggered {len(run_ids)} run(s), {sum(planned.values())} blocks planned")

            loads, last_print = [], 0.0
            total_blocks = sum(planned.values())
            with connect(pg) as con:
                while True:
                    runs, tasks = progress(con, run_ids)
                    loads.append(os.getloadavg()[0])
                    finished = sum(runs.get(s, 0) for s in ("success", "failed"))
                    now = time.monotonic() - t0
                    if now - last_print >= 30 or finished == len(run_ids):
                        done = sum(tasks.get(s, 0) for s in ("success", "skipped", "failed", "upstream_failed"))
                        log(
                            f"{now:6.0f} s: {done}/{total_blocks} blocks done ({', '.join(f'{k} {v}' for k, v in sorted(tasks.items()))}); "
                            f"runs {finished}/{len(run_ids)} finished; {done / now * 60 if now else 0:.1f} blocks/min; "
                            f"load {loads[-1]:.2f}"
                        )
                        last_print = now
                    if finished == len(run_ids):
                        break
                    if now > args.timeout:
                        log(f"timed out after {args.timeout:.0f} s; reporting what finished")
                        break
                    time.sleep(3)
                wall = time.monotonic() - t0
                cpu_after = {name: group_cpu(p.pid) for name, p in processes.items()}
                pg_after, self_after, busy_after = postgres_cpu(pg["pid"]), self_cpu(), machine_busy()
                meter.stop()
                data = collect(con, run_ids)
                for ti in data["tis"]:
                    ti["log"] = task_log_phases(work / "airflow", ti)
                pg_version = con.execute("show server_version").fetchone()[0]
            from airflow import __version__ as airflow_version

            cpu = {
                "scheduler (its own process)": cpu_after["scheduler"]["own"] - cpu_before["scheduler"]["own"],
                "executor workers + task processes": cpu_after["scheduler"]["rest"] - cpu_before["scheduler"]["rest"],
                "api-server (execution + core API)": sum(
                    cpu_after["api-server"][k] - cpu_before["api-server"][k] for k in ("own", "rest")
                ),
                "dag-processor (+ its parsing processes)": sum(
                    cpu_after["dag-processor"][k] - cpu_before["dag-processor"][k] for k in ("own", "rest")
                ),
                "PostgreSQL (metadata)": pg_after - pg_before,
                "this process (replay server + polling)": self_after - self_before,
            }
            lake_blocks = sum(1 for _ in (work / "lake").rglob("_manifest.json")) if (work / "lake").exists() else 0
            meta = {
                "label": label,
                "wall": wall,
                "parallelism": args.parallelism,
                "cpu": cpu,
                "machine_busy": busy_after - busy_before,
                "load_mean": statistics.fmean(loads) if loads else 0,
                "load_max": max(loads) if loads else 0,
                "replay_requests": meter.requests,
                "replay_ms": meter.ms,
                "pg_version": pg_version,
                "airflow_version": airflow_version,
                "lake_blocks": lake_blocks,
                "cpu_count": os.cpu_count(),
            }
            try:
                save(work / "scale-result.json", data, meta)
                log(f"raw figures in {work / 'scale-result.json'} (bench/scale.py --report FILE reprints them)")
            except (OSError, TypeError, ValueError) as error:
                log(f"could not save the raw figures: {error!r}")
            report(data, meta)
            failed = [r for r in data["runs"] if r["state"] != "success"]
            if failed:
                log(f"{len(failed)} run(s) did not succeed: {', '.join(r['run_id'] for r in failed)} (logs in {logs})")
            exit_code = 0 if not failed else 1
        except KeyboardInterrupt:
            log("interrupted")
        except Exception as error:  # noqa: BLE001 - one line, then clean up
            log(f"scale run failed: {error!r} (logs in {logs})")
        finally:
            stop_groups(dict(reversed(list(processes.items()))))
            if meter is not None:
                meter.stop()
            if replay is not None:
                replay.stop()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
