"""How many times a catchup builds the marts: one source's scheduled catchup under the real scheduler.

Starts what the demo starts (replay server, Airflow's scheduler, DAG processor, triggerer and API
server on loopback, SQLite metadata, LocalExecutor; ``scripts/demo.py``), with only
``seattle_crime`` starting ``--months`` months back (its catchup: one scheduled run per month,
two at a time) and every other source starting this month (no run). It waits until every catchup
run has finished and ``civic_marts`` has nothing left to do, then prints from the metadata
database: the source runs, the ``civic_marts`` runs and how each was made, and how many mart
builds (dbt tasks of a mart that ran) the catchup cost, beside what the per-source selection of
before (``tag:seattle_crime+``: its two marts in every run) cost for the same runs.

    .venv/bin/python bench/marts_catchup.py --months 12

Nothing here asserts a figure; the machine's load shows in the wall time, not in the counts.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "scripts"))

import demo  # noqa: E402

SOURCE = "seattle_crime"
SEATTLE_MARTS = 2  # mart_crime_by_area, mart_crime_monthly: what `tag:seattle_crime+` added to each run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def counts(db_path: Path) -> dict:
    with sqlite3.connect(db_path) as db:
        source_runs = db.execute(
            "select state, count(*) from dag_run where dag_id = ? group by 1", (SOURCE,)
        ).fetchall()
        marts_runs = db.execute(
            "select run_type, state, start_date, end_date from dag_run where dag_id = 'civic_marts' order by start_date"
        ).fetchall()
        mart_builds = db.execute(
            "select count(*) from task_instance where dag_id = 'civic_marts' "
            "and task_id like 'marts.%' and state = 'success'"
        ).fetchone()[0]
        source_mart_tasks = db.execute(
            "select count(*) from task_instance where dag_id = ? and task_id like '%mart_%'", (SOURCE,)
        ).fetchone()[0]
    return {
        "source_runs": dict(source_runs),
        "marts_runs": marts_runs,
        "mart_builds": mart_builds,
        "source_mart_tasks": source_mart_tasks,
    }


def main(argv: list[str] | None = None) -> int:
    from civic_pipelines.months import current_month, format_month, parse_month, previous_month

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--dir", default=str(ROOT / "data" / "marts_catchup"))
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)

    data = Path(args.dir).resolve()
    if data.exists():
        import shutil

        shutil.rmtree(data)
    data.mkdir(parents=True)
    replay_port, api_port = free_port(), free_port()
    env = demo.demo_environment(data, replay_port, api_port)
    month = parse_month(current_month())
    for _ in range(args.months):
        month = previous_month(month)
    first = format_month(month)
    for name in demo.demo_sources():
        env[f"AIRFLOW_VAR_CIVIC_{name.upper()}_START_MONTH"] = first if name == SOURCE else current_month()
    # A count, not a speed: on a shared machine the source DAGs' file can take longer than Airflow's
    # 30 s import timeout to parse, and a DAG whose file failed to import gets no run.
    env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "180"
    logs = data / "logs"
    logs.mkdir()
    replay = None
    components: dict = {}
    started = time.monotonic()
    try:
        replay = demo.start_group(
            [str(demo.VENV_BIN / "civic"), "replay", "--port", str(replay_port)], env, logs / "replay.log"
        )
        demo.wait_for(
            lambda: demo.http_ok(f"http://127.0.0.1:{replay_port}/api/views/tazs-3rd5.json"), 30, "the replay server"
        )
        demo.airflow(env, "db", "migrate")
        import json

        from civic_pipelines import sources

        pools = {"duckdb_writer": {"slots": 1, "description": "DuckDB allows one writer"}}
        pools.update(
            {
                sources.spec(name).pool: {"slots": sources.spec(name).pool_slots, "description": f"{name} API"}
                for name in demo.demo_sources()
            }
        )
        (data / "pools.json").write_text(json.dumps(pools))
        demo.airflow(env, "pools", "import", str(data / "pools.json"))
        components = demo.start_airflow(env, logs, api_port)
        demo.wait_for(lambda: demo.http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"), 900, "the API server")
        api = demo.AirflowAPI(f"http://127.0.0.1:{api_port}")
        api.login()
        demo.log(f"{SOURCE} catches up from {first}: {args.months} monthly runs")

        def caught_up():
            runs = api.get(f"/dags/{SOURCE}/dagRuns?limit=1000")
            done = [r for r in runs["dag_runs"] if r["state"] in ("success", "failed")]
            return len(done) >= args.months and len(done) == runs["total_entries"] and api.marts_settled()

        demo.wait_for(caught_up, args.timeout, "the catchup and civic_marts", interval=5)
        seconds = time.monotonic() - started
    finally:
        demo.stop_groups(
            {**{f"Airflow {name}": process for name, process in reversed(components.items())}, "replay server": replay}
        )
    got = counts(data / "airflow" / "airflow.db")
    runs = sum(got["source_runs"].values())
    print(
        f"{SOURCE} catchup of {args.months} months from {first}: runs {got['source_runs']} in {seconds:.0f} s (shared machine)"
    )
    print(f"mart tasks in the source runs: {got['source_mart_tasks']}")
    print(f"civic_marts runs: {len(got['marts_runs'])} " + ", ".join(f"{t} {s}" for t, s, *_ in got["marts_runs"]))
    print(
        f"mart builds: {got['mart_builds']} now; {runs * SEATTLE_MARTS} with `tag:{SOURCE}+` in every run "
        f"({runs} runs x {SEATTLE_MARTS} marts)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
