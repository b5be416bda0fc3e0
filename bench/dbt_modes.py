"""dbt execution side by side: today's one task per dbt node (``per_node``) against Cosmos's
``ExecutionMode.WATCHER`` (one ``dbt build`` per task group by a producer task, a deferrable sensor
per model and per model's tests), in one run, on the demo's data, through real Airflow.

What runs (everything on loopback; nothing asserted):

* the replay server in this process, and a few months of every source landed in a fresh lake with
  the project's own extractor (``run_block``, the blocks ``plan`` makes), as the demo does;
* Airflow as the demo starts it (``scripts/demo.py``: SQLite metadata, LocalExecutor with
  parallelism 4, the ``duckdb_writer`` pool, ``airflow_local_settings`` preloading dbt in the
  executor) with a **scheduler and a triggerer** (the watcher's sensors defer to the triggerer), a
  DAG processor and the API server (the tasks' Execution API), on a DAG folder of this bench's own:
  two DAGs, ``dbt_modes_per_node`` and ``dbt_modes_watcher``, each the project's
  ``build_dbt_group`` of every source (the source DAGs' dbt tasks, without their extracts: the lake
  is landed already), one group after the other;
  (and ``dbt_modes_per_node_json``: per-node tasks as they were before, dbt writing its JSON
  artifacts after every node);
* ``--rounds`` runs of each DAG, alternating, each waited for before the next is triggered.

Then, per mode: the wall of the dbt tasks (first task start to last task end), dbt's own time (the
``execution_time`` of every node in dbt's run_results, kept by the group's callback), and the
overhead per model = (wall - dbt's own time) / models; per task for ``per_node`` also each task's
wall - its node's dbt time. dbt runs with one thread (profiles.yml), so dbt's own time is its wall.

    .venv/bin/python bench/dbt_modes.py                       # every source, 2024-01..2024-02
    .venv/bin/python bench/dbt_modes.py --sources seattle_crime,toronto_311 --rounds 2

Options: ``--modes`` (default all three), ``--start``/``--end`` (months landed), ``--dir`` (work folder, default a temporary one,
removed unless ``--keep``), ``--timeout`` (per run, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "scripts"))

# per_node_json: per_node as it was before this bench (dbt writes manifest.json and run_results.json
# after every node), to show what --no-write-json saves.
MODES = ("per_node", "per_node_json", "watcher")

DAG_FILE = '''"""bench/dbt_modes.py: each source's dbt task group, per execution mode, one group after the other."""
import os

import pendulum
from airflow.sdk import DAG

from civic_pipelines import sources
from civic_pipelines.orchestration.dbt_group import build_dbt_group, cosmos_environment_defaults

cosmos_environment_defaults()
for _mode in ("per_node", "per_node_json", "watcher"):
    with DAG(f"dbt_modes_{_mode}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             catchup=False, max_active_runs=1) as _dag:
        _previous = None
        for _name in os.environ["CIVIC_BENCH_SOURCES"].split(","):
            _group = build_dbt_group(sources.spec(_name), group_id=f"dbt_{_name}",
                                     execution="per_node" if _mode == "per_node_json" else _mode)
            if _mode == "per_node_json":  # as before: dbt writes its JSON artifacts after every node
                for _task in _group.children.values():
                    _task.dbt_cmd_flags = [f for f in (_task.dbt_cmd_flags or []) if f != "--no-write-json"]
            if _previous is not None:
                _previous >> _group
            _previous = _group
    globals()[_dag.dag_id] = _dag
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def land(names: list[str], start: str, end: str) -> dict[str, int]:
    """Every block of ``names`` in ``start``..``end`` with the project's extractor; rows per source."""
    from civic_pipelines import sources
    from civic_pipelines.extract import run_block
    from civic_pipelines.planning import plan

    rows: dict[str, int] = {}
    for name in names:
        blocks, _ = plan(sources.spec(name), {"start_month": start, "end_month": end, "force": True})
        for block in blocks:
            manifest = run_block(name, block["month"], force=True, part=block.get("part"))
            rows[name] = rows.get(name, 0) + int(manifest.get("rows") or 0)
    return rows


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def dbt_nodes(results_dir: Path, names: list[str], run_id: str) -> list[dict]:
    """Every node the run's dbt invocations reported (the group callback's kept results)."""
    from civic_pipelines.dbt_results import read_results

    nodes = []
    for name in names:
        kept = read_results(results_dir, name) or {}
        for uid, entry in (kept.get("nodes") or {}).items():
            if entry.get("run_id") == run_id:
                nodes.append({**entry, "unique_id": uid, "source": name})
    return nodes


def measure(mode: str, tasks: list[dict], nodes: list[dict]) -> dict:
    done = [t for t in tasks if t.get("start_date") and t.get("end_date")]
    starts = [parse_time(t["start_date"]) for t in done]
    ends = [parse_time(t["end_date"]) for t in done]
    wall = max(ends) - min(starts) if done else 0.0
    dbt_seconds = sum(n.get("execution_time") or 0 for n in nodes)
    models = sum(1 for n in nodes if n["resource_type"] in ("model", "seed", "snapshot"))
    figures = {
        "mode": mode,
        "tasks": len(tasks),
        "models": models,
        "tests": sum(1 for n in nodes if n["resource_type"] == "test"),
        "states": {s: sum(1 for t in tasks if t["state"] == s) for s in sorted({t["state"] or "none" for t in tasks})},
        "wall": wall,
        "dbt_seconds": dbt_seconds,
        "overhead_per_model": (wall - dbt_seconds) / models if models else None,
        "dbt_per_model": dbt_seconds / models if models else None,
    }
    if mode.startswith("per_node"):
        per_task = []
        by_task: dict[str, float] = {}
        for node in nodes:
            by_task[node["task_id"]] = by_task.get(node["task_id"], 0) + (node.get("execution_time") or 0)
        for task in done:
            if task["task_id"] in by_task:
                per_task.append((task.get("duration") or 0) - by_task[task["task_id"]])
        figures["task_overhead_median"] = statistics.median(per_task) if per_task else None
        figures["task_overhead_mean"] = statistics.mean(per_task) if per_task else None
        gaps = []
        by_end = sorted(done, key=lambda t: parse_time(t["end_date"]))
        for before, after in zip(by_end, by_end[1:]):
            gaps.append(parse_time(after["start_date"]) - parse_time(before["end_date"]))
        figures["gap_between_tasks_median"] = statistics.median(gaps) if gaps else None
    else:
        producers = [t for t in done if t["task_id"].endswith("dbt_producer_watcher")]
        sensors = [t for t in done if t["task_id"].endswith((".run", ".test"))]
        figures["producer_wall"] = sum(t.get("duration") or 0 for t in producers)
        figures["sensor_task_median"] = (
            statistics.median([t.get("duration") or 0 for t in sensors]) if sensors else None
        )
        figures["sensor_tries_max"] = max((t.get("try_number") or 1 for t in sensors), default=None)
    return figures


def report(rounds: list[dict]) -> None:
    print()
    print("dbt execution, per round (a shared 2-core machine: figures 2-4x a quiet one's)")
    header = f"{'mode':<13} {'tasks':>5} {'models':>6} {'tests':>5} {'wall s':>8} {'dbt s':>7} {'dbt/model':>9} {'overhead/model':>14}  detail"
    print(header)
    for figures in rounds:
        detail = (
            f"task wall - its dbt time: median {figures['task_overhead_median']:.2f} s, mean "
            f"{figures['task_overhead_mean']:.2f} s; scheduling gap between tasks median "
            f"{figures['gap_between_tasks_median']:.2f} s"
            if figures["mode"].startswith("per_node") and figures.get("task_overhead_median") is not None
            else f"producer task {figures.get('producer_wall', 0):.1f} s; sensor task median "
            f"{figures.get('sensor_task_median') or 0:.1f} s"
            if figures["mode"] == "watcher"
            else ""
        )
        overhead = figures["overhead_per_model"]
        print(
            f"{figures['mode']:<13} {figures['tasks']:>5} {figures['models']:>6} {figures['tests']:>5} "
            f"{figures['wall']:>8.1f} {figures['dbt_seconds']:>7.1f} {figures['dbt_per_model'] or 0:>9.2f} "
            f"{overhead if overhead is not None else float('nan'):>14.2f}  {detail}  states {figures['states']}"
        )
    for mode in MODES:
        mine = [f["overhead_per_model"] for f in rounds if f["mode"] == mode and f["overhead_per_model"] is not None]
        if mine:
            print(f"{mode}: overhead per model, median of {len(mine)} round(s): {statistics.median(mine):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default="", help="comma-separated; default every registered source")
    parser.add_argument("--start", default="2024-01")
    parser.add_argument("--end", default="2024-02")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--dir", default="")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()

    import demo  # scripts/demo.py: the demo's Airflow environment and process handling

    work = Path(args.dir or tempfile.mkdtemp(prefix="dbt-modes-")).resolve()
    if args.dir:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)

    from civic_pipelines.replay.server import make_server

    server = make_server(host="127.0.0.1", port=0)
    server.start()
    replay_port = int(server.url.rsplit(":", 1)[1])
    api_port = free_port()
    env = demo.demo_environment(data, replay_port, api_port)
    names = [n for n in args.sources.split(",") if n] or demo.demo_sources()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    dags = work / "dags"
    dags.mkdir(exist_ok=True)
    (dags / "dbt_modes_dags.py").write_text(DAG_FILE)
    plugins = work / "plugins"
    plugins.mkdir(exist_ok=True)
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(dags)},
        }
    ]
    env.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),  # no dashboard: not what is measured
            "CIVIC_BENCH_SOURCES": ",".join(names),
            "CIVIC_DBT_RESULTS": str(data / "dbt_results"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")]),
        }
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith(("CIVIC_", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))})

    components: dict = {}
    rounds: list[dict] = []
    try:
        started = time.monotonic()
        rows = land(names, args.start, args.end)
        demo.log(
            f"landed {args.start}..{args.end}: "
            + ", ".join(f"{n} {r}" for n, r in rows.items())
            + f" rows in {time.monotonic() - started:.0f} s"
        )
        demo.airflow(env, "db", "migrate")
        (data / "pools.json").write_text(
            json.dumps({"duckdb_writer": {"slots": 1, "description": "one DuckDB writer"}})
        )
        demo.airflow(env, "pools", "import", str(data / "pools.json"))
        logs = data / "logs"
        logs.mkdir(exist_ok=True)
        components = demo.start_airflow(env, logs, api_port)
        demo.wait_for(lambda: demo.http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"), 300, "the API server")
        demo.wait_for(lambda: demo.components_healthy(api_port), 300, "scheduler, DAG processor, triggerer")
        api = demo.AirflowAPI(f"http://127.0.0.1:{api_port}")
        api.login()
        for mode in modes:
            dag_id = f"dbt_modes_{mode}"
            demo.wait_for(lambda: api.dag_registered(dag_id), 600, f"DAG {dag_id} to be parsed", interval=3)
            api.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        for number in range(args.rounds):
            for mode in modes:
                dag_id = f"dbt_modes_{mode}"
                run_id = f"bench_{mode}_{number}_{time.strftime('%H%M%S')}"
                api.send("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})
                state = demo.wait_for(
                    lambda: (s := api.run_state(dag_id, run_id)) in ("success", "failed") and s,
                    args.timeout,
                    f"run {run_id}",
                    interval=2,
                )
                tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]
                figures = measure(mode, tasks, dbt_nodes(data / "dbt_results", names, run_id))
                figures["run_state"] = state
                rounds.append(figures)
                demo.log(
                    f"{mode} round {number + 1}: {state}, wall {figures['wall']:.1f} s, dbt "
                    f"{figures['dbt_seconds']:.1f} s, {figures['models']} models, overhead/model "
                    f"{figures['overhead_per_model'] or 0:.2f} s"
                )
        (work / "dbt-modes-result.json").write_text(json.dumps(rounds, indent=1))
        report(rounds)
        return 0 if all(f["run_state"] == "success" for f in rounds) else 1
    finally:
        demo.stop_groups({f"Airflow {name}": process for name, process in reversed(list(components.items()))})
        server.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
