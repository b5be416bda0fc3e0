"""Benchmark: what parsing ``dags/`` costs on top of Airflow itself (nothing here asserts a speed).

Two figures, each measured in a fresh interpreter per repetition (an import is paid once per
process, so a second parse in the same process would measure nothing):

* **dagbag**: ``DagBag(dag_folder="dags")``, every DAG, as the DAG processor and the tests see it;
* **task**: ``dags/civic_sources.py`` parsed the way a task process parses it before running one
  task (Airflow 3.3's ``task_runner.startup``: ``BundleDagBag`` of the one file inside
  ``_airflow_parsing_context_manager(dag_id, task_id)``, which sets
  ``_AIRFLOW_PARSING_CONTEXT_DAG_ID``/``_TASK_ID``, what ``get_parsing_context()`` reads).

Only our cost is timed. Before the clock starts, each child imports Airflow, builds the DagBag
machinery and parses a small DAG of its own that uses the same Airflow features ours do (DAG,
``@task``, ``expand``, ``Param``, a cron data-interval timetable, a task group), so Airflow's own
lazy imports are not counted. The dagbag child imports ``airflow.dag_processing.processor``, which
the DAG processor's parsing process runs from. The task child has what a task process has before it
parses: it is a fork of the supervisor (so ``supervisor`` and ``task_runner`` are loaded), and
``task_runner.startup`` builds the listener manager, which loads every entry-point plugin
(Cosmos's among them, with FastAPI); that is Airflow's cost in a task process, not the DAG file's.

Printed per figure: median and min of wall seconds and of the child's CPU seconds (CPU time moves
less than wall time when the machine is shared), the DAG count, how many ``Variable.get`` calls the
parse made (in a task process each is a round trip to the Execution API; here no API answers, so
their cost is not in the figure, only their number), and which heavy modules the parse left in
``sys.modules``. ``--importtime`` also prints the slowest top-level imports of one parse
(``python -X importtime``, the part after Airflow's warm-up).

Bytecode: children write and reuse ``.pyc`` files under ``data/bench/pycache``
(``PYTHONPYCACHEPREFIX``) even where ``PYTHONDONTWRITEBYTECODE`` is set, as any deployed image
has them; one unmeasured child fills that cache first.

    .venv/bin/python bench/parse.py [--repeat 5] [--dag-id seattle_crime] [--task-id extract_load] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
DAG_FILE = DAGS / "civic_sources.py"
MARKER = "== bench/parse.py: measured part starts =="

# Modules a parse should not need; the figure says which of them are loaded after it.
HEAVY = (
    "pyarrow",
    "numpy",
    "pandas",
    "boto3",
    "botocore",
    "airflow.providers.amazon.aws.hooks.s3",
    "fastapi",
    "starlette",
    "dbt",
    "duckdb",
    "requests",
    "shapely",
    "orjson",
    "cosmos.plugin.airflow3",
)

# Airflow's own share of parsing a DAG like ours, paid before the clock starts.
WARMUP_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, TaskGroup, task
from airflow.timetables.interval import CronDataIntervalTimetable

with DAG("bench_parse_warmup", schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
         start_date=datetime(2024, 1, 1), catchup=True, dagrun_timeout=timedelta(hours=1),
         params={"start_month": Param(None, type=["null", "string"], title="Start")}, tags=["bench"]):
    @task
    def plan() -> list[int]:
        return [1]

    @task(pool="default_pool", execution_timeout=timedelta(minutes=1))
    def work(block: int) -> int:
        return block

    with TaskGroup("group") as group:
        @task(trigger_rule="none_failed")
        def after() -> None:
            pass

        after()
    work.expand(block=plan()) >> group
"""


# ---------------------------------------------------------------- child: one measured parse


def child(mode: str, dag_id: str, task_id: str, warmup_folder: str) -> dict:
    import airflow  # noqa: F401
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import BundleDagBag, DagBag

    if mode == "task":
        from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager

        # A task process is a fork of its supervisor (supervisor._fork_main): both modules are loaded.
        from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager()  # task_runner.startup does this before it parses: it loads the plugins
    else:
        import airflow.dag_processing.processor  # noqa: F401 - the DAG processor's parsing child runs from it

    warm = DagBag(dag_folder=warmup_folder)
    if warm.import_errors or "bench_parse_warmup" not in warm.dags:
        raise SystemExit(f"warm-up DAG did not parse: {warm.import_errors}")

    from airflow.sdk import Variable

    variable_reads: list[str] = []
    original_get = Variable.get.__func__

    def counting_get(cls, key, *args, **kwargs):
        variable_reads.append(key)
        return original_get(cls, key, *args, **kwargs)

    Variable.get = classmethod(counting_get)
    before = set(sys.modules)
    print(MARKER, file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "dagbag":
        bag = DagBag(dag_folder=str(DAGS))
    else:
        with _airflow_parsing_context_manager(dag_id=dag_id, task_id=task_id):
            bag = BundleDagBag(
                dag_folder=str(DAG_FILE),
                safe_mode=False,
                load_op_links=False,
                bundle_path=DAGS,
                bundle_name="dags-folder",
            )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    loaded = set(sys.modules) - before
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    if mode == "task" and task_id not in bag.dags[dag_id].task_dict:
        raise SystemExit(f"{dag_id} has no task {task_id!r}")
    return {
        "wall": wall,
        "cpu": cpu,
        "dags": sorted(bag.dag_ids),
        "variable_reads": variable_reads,
        "modules_loaded": len(loaded),
        "heavy": sorted(m for m in HEAVY if m in sys.modules),
        "heavy_by_parse": sorted(m for m in HEAVY if m in loaded),
    }


# ---------------------------------------------------------------- parent


def child_env(work: Path) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_VAR_", "_AIRFLOW_PARSING_CONTEXT"))
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            # This checkout's package ahead of the editable install's (a worktree may share a venv).
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONPYCACHEPREFIX": str(ROOT / "data" / "bench" / "pycache"),
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # A loaded machine can take longer than Airflow's 30 s per file; the figure, not a timeout, is wanted.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "CIVIC_DATA_DIR": str(work / "data"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
        }
    )
    return env


def run_child(mode: str, args, work: Path, importtime: bool = False) -> tuple[dict, str]:
    command = [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        __file__,
        "--child",
        mode,
        "--dag-id",
        args.dag_id,
        "--task-id",
        args.task_id,
        "--warmup-folder",
        str(work / "warmup"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env(work), cwd=ROOT, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"bench/parse.py --child {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def slowest_imports(stderr: str, top: int = 15) -> list[tuple[float, str]]:
    """Top-level entries of ``-X importtime`` after the marker: (cumulative seconds, module)."""
    after = stderr.split(MARKER, 1)[-1]
    rows = []
    for line in after.splitlines():
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # depth 0 below the DAG file
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


def summary(label: str, runs: list[dict]) -> str:
    walls = [r["wall"] for r in runs]
    cpus = [r["cpu"] for r in runs]
    last = runs[-1]
    return (
        f"{label}: wall median {statistics.median(walls):.2f} s, min {min(walls):.2f} s; "
        f"CPU median {statistics.median(cpus):.2f} s, min {min(cpus):.2f} s ({len(runs)} runs)\n"
        f"  DAGs: {len(last['dags'])} ({', '.join(last['dags'])})\n"
        f"  Variable.get calls: {len(last['variable_reads'])}"
        f"{' (' + ', '.join(last['variable_reads']) + ')' if last['variable_reads'] else ''}\n"
        f"  modules imported by the parse: {last['modules_loaded']}; heavy ones loaded by it: "
        f"{', '.join(last['heavy_by_parse']) or 'none'}; heavy ones in the process after it: "
        f"{', '.join(last['heavy']) or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per figure (default 5)")
    parser.add_argument("--dag-id", default="seattle_crime", help="the DAG of the task figure")
    parser.add_argument("--task-id", default="extract_load", help="the task of the task figure")
    parser.add_argument("--importtime", action="store_true", help="also print the slowest imports of one parse")
    parser.add_argument("--child", choices=("dagbag", "task"), help=argparse.SUPPRESS)
    parser.add_argument("--warmup-folder", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.dag_id, args.task_id, args.warmup_folder)))
        return

    if not (ROOT / "dbt" / "target" / "manifest.json").is_file():
        raise SystemExit("dbt/target/manifest.json is missing: run `make manifest` first")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as scratch:
        work = Path(scratch)
        (work / "warmup").mkdir()
        (work / "warmup" / "bench_parse_warmup.py").write_text(WARMUP_DAG)
        print(
            f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
            f"({os.cpu_count()} CPUs); each figure from {args.repeat} fresh processes"
        )
        run_child("dagbag", args, work)  # unmeasured: fills the bytecode cache
        for mode, label in (
            ("dagbag", "DagBag of dags/"),
            ("task", f"one DAG in a task process ({args.dag_id}.{args.task_id})"),
        ):
            runs = [run_child(mode, args, work)[0] for _ in range(args.repeat)]
            print(summary(label, runs))
            if args.importtime:
                _, stderr = run_child(mode, args, work, importtime=True)
                print("  slowest imports of the parse (cumulative s, -X importtime, one run):")
                for seconds, name in slowest_imports(stderr):
                    print(f"    {seconds:6.3f}  {name}")
        print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
