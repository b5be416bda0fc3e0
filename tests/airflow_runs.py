"""Real Airflow DAG runs of a few sources, fast: a DAG folder of the test's own that builds only the
DAGs under test with the project's factory (``dag.test()`` re-parses the whole DAG bundle on every
call; the project's folder builds every source's DAG and its Cosmos group, several seconds each
time), and helpers to read what a run left in the metadata database."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

# The warehouse tables whose Cosmos tasks emit an Asset event the civic_marts DAG is scheduled on
# (with every source's lake Asset), written out here rather than read from the project's code.
MARTS_INPUT_TABLES = (
    "fct_crime_offenses",
    "fct_service_requests",
    "fct_mobility_trips",
    "int_permit_months",
    "int_permits_latest",
)

ONE_DAG = '''"""The Airflow DAGs named in $CIVIC_TEST_DAGS, built by the project's factory (a test's DAG folder)."""
import os

from civic_pipelines.orchestration.dag_factory import build_source_dag

for _name in os.environ["CIVIC_TEST_DAGS"].split(","):
    globals()[_name] = build_source_dag(_name, extract_mode="local")
'''


def small_dags_folder(folder: Path, names: list[str], with_marts: bool = False) -> dict:
    """Write the folder and return the environment that makes it the ``dags-folder`` bundle;
    ``with_marts`` adds the project's ``civic_marts`` DAG file, which the sources' Assets trigger."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "civic_test_dags.py").write_text(ONE_DAG)
    if with_marts:
        (folder / "civic_marts.py").write_text(
            (Path(__file__).resolve().parents[1] / "dags" / "civic_marts.py").read_text()
        )
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        }
    ]
    return {
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "CIVIC_TEST_DAGS": ",".join(names),
    }


def task_states(run) -> dict:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def states_of(run, task_id: str) -> list[str]:
    """The states of one task's instances (each mapped one) in ``run``, sorted."""
    return sorted(ti.state for ti in run.get_task_instances() if ti.task_id == task_id)


def run_rows(run_id: str, dag_id: str) -> dict:
    """Every XCom value and rendered template field the run stored, as JSON text per task instance."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id
            )
        ).all()
        rendered = session.execute(
            select(RTIF.task_id, RTIF.map_index, RTIF.rendered_fields).where(
                RTIF.dag_id == dag_id, RTIF.run_id == run_id
            )
        ).all()
    return {
        "xcom": {f"{t}[{m}].{k}": json.dumps(v, default=str) for t, m, k, v in xcoms},
        "rendered": {f"{t}[{m}]": json.dumps(v, default=str) for t, m, v in rendered},
    }


@contextmanager
def execution_api():
    """Airflow's Execution API (what every task process reports to) on a free loopback port, served
    from this process, so ``dag.test(use_executor=True)`` runs each task the way the LocalExecutor
    does under the scheduler: a forked supervisor and task process that write the task's log file
    under ``$AIRFLOW_HOME/logs``. Yields the URL to set as ``[core] execution_api_server_url``."""
    import multiprocessing
    import socket
    import threading

    import pytest
    import uvicorn
    from airflow.api_fastapi.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app("execution"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="execution-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the execution API did not start"
        time.sleep(0.05)
    # The LocalExecutor's workers start as fresh interpreters, not forks of this test process: a
    # fork inherits the DuckDB instances earlier tests left here (dbt-duckdb keeps its connection),
    # and a forked task process then hangs at exit joining DuckDB threads it does not have.
    start_method = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    # This API answers from a thread of the busy test process, on a machine the other lane loads
    # too. At the worker's default 5 s timeout, a slow answer to the task's "run" call is retried
    # after the first call has already marked the task running; the retry gets a 409 and the worker
    # fails the task before it starts (the likeliest cause of dag.test's "Callback sink is not
    # ready", seen once in CI). Airflow's advice for that is a longer timeout, not more retries.
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "60")
            yield f"http://127.0.0.1:{port}/execution/"
    finally:
        multiprocessing.set_start_method(start_method, force=True)
        server.should_exit = True
        thread.join(timeout=30)


def task_log_files(dag_id: str, run_id: str) -> list[Path]:
    """The task log files of one run, as Airflow's default log template lays them out."""
    import os

    folder = Path(os.environ["AIRFLOW_HOME"]) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    return sorted(p for p in folder.rglob("*") if p.is_file())


def sync_dags() -> None:
    """What ``dag.test()`` does first (write the bundle's DAGs to the metadata DB), done once up front
    so runs started together do not race to write the same new DAG version."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        sync_bag_to_db(
            BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
            bundle.name,
            bundle.version,
        )


def parse_dag_bundle_once(monkeypatch) -> None:
    """For ``dag.test()`` calls in several threads of this process: the DAG bundle is parsed once,
    in the calling thread (``sync_dags()`` after this does it), and every later ``dag.test()``
    gets that parse instead of parsing again in its own thread; writing it to the database
    (``sync_bag_to_db``, a no-op for an unchanged DAG) takes turns.

    Why: every ``dag.test()`` call re-parses its DAG bundle in-process (``BundleDagBag``) and
    serializes what it found (``sync_bag_to_db``). Airflow's DAG parsing keeps its state
    process-wide, not per thread: the ``with DAG(...)`` stack (``DagContext``, a class-level deque)
    that decides which DAG a new task joins, the set of auto-registered DAGs and the module being
    imported. Two threads parsing at once therefore build each other's DAGs: thread B pushes its
    DAG on top of thread A's, A's next tasks join B's DAG, A's ``with`` exit pops B's DAG off the
    stack, B's remaining tasks join A's DAG, and A then serializes its DAG while B is still adding
    tasks to it: ``SerializationError: Failed to serialize DAG 'seattle_crime': dictionary changed
    size during iteration`` (or, when the interleaving differs, an import error: "Tried to set
    relationships between tasks in more than one Dag", "group_id 'dbt' has already been added to
    the DAG"). Airflow's own DAG processor parses one file per process, so it never meets this.
    Parsing once (rather than one thread after the other) also keeps several seconds of parsing
    out of this process while the runs' task processes call the Execution API it serves. The runs
    themselves (the scheduling loops and the executor's task processes) share nothing and still
    overlap; their task processes parse the DAG file themselves, as under a scheduler."""
    import threading

    from airflow.dag_processing import dagbag

    lock = threading.Lock()
    parse, sync = dagbag.BundleDagBag, dagbag.sync_bag_to_db
    parsed: dict[str, object] = {}

    def parse_once(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        with lock:
            if key not in parsed:
                parsed[key] = parse(*args, **kwargs)
            return parsed[key]

    def sync_alone(*args, **kwargs):
        with lock:
            return sync(*args, **kwargs)

    # dag.test() and sync_dags() import both names from the module at call time, so they get these.
    monkeypatch.setattr(dagbag, "BundleDagBag", parse_once)
    monkeypatch.setattr(dagbag, "sync_bag_to_db", sync_alone)


def extract_side(dag_id: str, dags_file: Path):
    """The source's DAG cut to ``plan_blocks`` and ``extract_load`` (the tasks that fetch and land),
    built fresh (a DAG object run in-process keeps the last run's param values), with the file the
    task processes parse (the same factory builds the same DAG there)."""
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    dag = build_source_dag(dag_id, extract_mode="local").partial_subset(["extract_load"], include_upstream=True)
    dag.fileloc = str(dags_file)
    return dag


def asset_events(run) -> dict[str, int]:
    """``{asset URI: events}`` that one DAG run's tasks emitted (the metadata DB's asset_event rows)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, func.count())
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
            .group_by(AssetModel.uri)
        ).all()
    return dict(rows)


def run_marts(*source_names: str):
    """The civic_marts DAG run by hand for the marts of these sources, as after their Assets changed;
    returns the run and ``{mart: state}`` of its dbt tasks."""
    from civic_pipelines.orchestration.marts_dag import build_marts_dag

    run = build_marts_dag().test(run_conf={"sources": list(source_names)})
    marts = {
        ti.task_id.removeprefix("marts.").removesuffix("_model_build"): ti.state
        for ti in run.get_task_instances()
        if ti.task_id.startswith("marts.")
    }
    return run, marts
