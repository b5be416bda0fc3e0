"""The Cosmos task group that builds a source's dbt models after its blocks land, and the task
that runs ``dbt source freshness`` for the source after them."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path, PosixPath, WindowsPath

from civic_pipelines import settings

DUCKDB_WRITER_POOL = "duckdb_writer"


def dbt_env() -> dict[str, str]:
    """What dbt needs, resolved to absolute paths at parse time (Cosmos may copy the project)."""
    return {
        "CIVIC_LAKE": settings.lake_url(),
        "CIVIC_WAREHOUSE": settings.warehouse_path(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def manifest_path() -> Path:
    return settings.dbt_project_dir() / "target" / "manifest.json"


# What a source's DAG builds: its own layers, each incremental per landed block or a view over the
# lake, so a monthly run costs its new blocks. The marts, rebuilt whole, are civic_marts' (marts_dag.py).
SOURCE_LAYERS = ("seeds", "staging", "intermediate", "facts")


def source_selection(dbt_tag: str) -> list[str]:
    """The source's seeds, staging, intermediate and fact models (``tag:<source>,tag:<layer>``, a dbt
    intersection), never a mart: a catchup of N months must not rebuild the marts N times."""
    return [f"tag:{dbt_tag},tag:{layer}" for layer in SOURCE_LAYERS]


# (path, mtime_ns, size) -> the parsed manifest: one entry, the manifest this process last read.
_PARSED_MANIFEST: dict[tuple, dict] = {}
_PATCH_LOCK = threading.RLock()


def parsed_manifest(path: Path | None = None, parse=None) -> dict:
    """The dbt manifest at ``path`` (default the project's), parsed once per process and version of
    the file (path, mtime, size): the Cosmos groups and the marts DAG's model list share one parse.
    ``parse`` parses it when the memo has no entry (default ``json``; the groups pass Cosmos's loader)."""
    path = path or manifest_path()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _PATCH_LOCK:
        if key not in _PARSED_MANIFEST:
            parsed = parse() if parse else json.loads(path.read_bytes())
            _PARSED_MANIFEST.clear()
            _PARSED_MANIFEST[key] = parsed
        return _PARSED_MANIFEST[key]


@contextmanager
def _manifest_parsed_once():
    """While a group is built, Cosmos's manifest loader parses each manifest file once per process
    (every source's group reads the same manifest, and Cosmos 1.15 reads and parses it per group:
    astronomer-cosmos issue 2294). Keyed on path, mtime and size, so a rewritten manifest is read
    again. The groups share the parsed dict: Cosmos only reads it (its DbtNodes keep references to
    nodes' ``depends_on``, ``tags`` and ``config`` and never change them), as within one group.
    Only a plain local path is memoised; any other goes to Cosmos's loader as before."""
    from cosmos.dbt.graph import DbtGraph

    def load_once(graph, path):
        if type(path) not in (PosixPath, WindowsPath):
            return cosmos_loader(graph, path)
        return parsed_manifest(path, lambda: cosmos_loader(graph, path))

    with _PATCH_LOCK:  # one group at a time, so a thread never restores another's loader
        cosmos_loader = DbtGraph._load_manifest_from_file
        DbtGraph._load_manifest_from_file = load_once
        try:
            yield
        finally:
            DbtGraph._load_manifest_from_file = cosmos_loader


def _with_local_manifest(project_config):
    """Cosmos wraps the manifest path in an ObjectStoragePath, whose first use discovers every
    provider's filesystem (importing the Amazon S3 hook and boto3) and records hook lineage (loading
    every plugin, Cosmos's own with FastAPI): seconds per parse, for a file on local disk (where
    `make manifest` writes it). A plain Path instead: the same file, the same str() for the
    operators' ``manifest_filepath``."""
    project_config.manifest_path = manifest_path()
    return project_config


# How a source's dbt nodes run (``CIVIC_DBT_EXECUTION``): "per_node", one task per model, each a
# ``dbt build`` of that node (model plus its tests); "watcher", Cosmos's ExecutionMode.WATCHER, one
# ``dbt build`` of the whole selection by a producer task and a deferrable sensor per model and per
# model's tests. bench/dbt_modes.py measures both.
#
# Why per_node stays the default (issue 15, item 2; figures in the branch's report and from
# `bench/dbt_modes.py`): the watcher did not meet 1 s of overhead per node here. The watcher saves each
# node's dbt start-up (one invocation for the group) but adds two Airflow tasks per model (a model
# sensor and a tests sensor), each a task process that parses the DAG file, in the models'
# dependency chain, plus the producer and its gate task: its overhead is bounded below by the
# chain's depth times an Airflow task's start-up, the same cost that dominates a per-node task. Its
# retries are Cosmos's fallbacks (`dbt run` / `dbt test --select <model>`), its producer cannot retry
# at all, and it needs the triggerer; Cosmos still calls it experimental (and a watcher round of
# bench/dbt_modes.py on 2026-12-07 hung: an SRWR sensor kept deferring after its producer ended).
# So per-node tasks stay, with their own overhead cut: no JSON artifacts written per node, the
# project parsed once in the scheduler and handed to each task's dbt (dbt_preparsed.py), the GC
# frozen over what a task inherits (preload.py), the venv's bytecode compiled by `make setup`. A
# per-node task's overhead (its duration minus dbt's own time for its node and tests) is now a median
# 0.51 s in the demo on a quiet machine (task 0.73 s); the watcher is one variable away.
DBT_EXECUTION_MODES = ("per_node", "watcher")
MARTS_RESULTS_SOURCE = "civic_marts"
DEFAULT_DBT_EXECUTION = "per_node"


def dbt_execution_mode() -> str:
    mode = os.environ.get("CIVIC_DBT_EXECUTION", DEFAULT_DBT_EXECUTION)
    if mode not in DBT_EXECUTION_MODES:
        raise ValueError(f"CIVIC_DBT_EXECUTION={mode!r}: one of {', '.join(DBT_EXECUTION_MODES)}")
    return mode


def dbt_selection(spec) -> list[str]:
    """The dbt nodes a source's DAG builds: its own layers (``source_selection``), no mart."""
    return source_selection(spec.dbt_tag or spec.name)


@_manifest_parsed_once()
def build_dbt_group(spec, group_id: str = "dbt", execution: str | None = None, select: list[str] | None = None):
    """The source's dbt nodes (``dbt_selection``), one Airflow task per model, after the blocks land.

    ``per_node`` (default): each model runs as ``dbt build`` of that node (model plus its tests)
    in-process (InvocationMode.DBT_RUNNER: no dbt subprocess), in the one-slot ``duckdb_writer``
    pool and under the warehouse's writer lock; a retry re-runs the node.

    ``watcher``: a producer task runs one ``dbt build`` of the selection (in the pool, under the
    lock, no retries: Cosmos's producer skips itself on a retry) and a deferrable sensor per model
    (and one per model's tests) takes that node's state from the producer's XComs. A sensor's retry
    runs its own node (Cosmos's fallback, ``dbt run``/``dbt test --select <model>``) under the writer
    lock (taken once the producer has ended); sensors are not in the pool, so they never wait for the
    producer's slot, and the producer never waits for a sensor: no deadlock.

    After every dbt invocation, its results (models and tests) are kept for the dashboard's
    health card (``civic_pipelines.dbt_results``).
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    execution = execution or dbt_execution_mode()
    project_dir = settings.dbt_project_dir()
    env = dbt_env()
    common = {
        # Blocks that were skipped (unchanged source) must not stop the rebuild of those that landed.
        "trigger_rule": "none_failed_min_one_success",
        "callback": keep_dbt_results,
        # The marts group (no spec) keeps its results under its DAG's name.
        "callback_args": {"source": spec.name if spec is not None else MARTS_RESULTS_SOURCE},
    }
    if execution == "watcher":
        execution_config = ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.DBT_RUNNER,
            setup_operator_args={"pool": DUCKDB_WRITER_POOL, "retries": 0, "pre_execute": hold_warehouse_lock},
        )
        test_behavior = TestBehavior.AFTER_EACH  # WATCHER has no per-node `dbt build` task
        operator_args = {
            **common,
            **release_lock_args(),
            "retries": 2,
            "pre_execute": hold_warehouse_lock_once_producer_ended,
            "poke_interval": WATCHER_POKE_SECONDS,
        }
    else:
        from civic_pipelines.dbt_results import collect_node_results

        execution_config = ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER)
        test_behavior = TestBehavior.BUILD
        operator_args = {
            **common,
            **release_lock_args(),
            "pool": DUCKDB_WRITER_POOL,
            "retries": 2,
            "pre_execute": hold_warehouse_lock,
            "dbt_cmd_flags": list(PER_NODE_DBT_FLAGS),
            "dbt_runner_callbacks": [collect_node_results],
        }
    return DbtTaskGroup(
        group_id=group_id,
        project_config=_with_local_manifest(
            ProjectConfig(
                dbt_project_path=project_dir,
                manifest_path=manifest_path(),
                env_vars=env,
                install_dbt_deps=False,  # no dbt packages: the hub is not reachable offline
            )
        ),
        profile_config=ProfileConfig(
            profile_name="civic", target_name="dev", profiles_yml_filepath=project_dir / "profiles.yml"
        ),
        execution_config=execution_config,
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=select if select is not None else dbt_selection(spec),
            test_behavior=test_behavior,
            enable_mock_profile=False,
            # The Assets that schedule civic_marts are the project's own (marts_dag.py); Cosmos's
            # per-node duckdb:// Assets (one per model, named by this machine's warehouse path, with
            # no consumer) would only crowd the Assets view and cost each node its lineage pass.
            emit_datasets=False,
        ),
        operator_args=operator_args,
    )


# No manifest.json / run_results.json written after each per-node task: serializing the 1.7 MB
# manifest costs about what a small node costs (bench figures in the report); the node results come
# from dbt's events instead (dbt_results.collect_node_results). Cosmos computes a task's Asset
# outlets from these artifacts, so per-node tasks then emit no Cosmos Assets: nothing here consumes
# them; a DAG that schedules on Cosmos's per-model Assets needs this list emptied.
PER_NODE_DBT_FLAGS = ["--no-write-json"]

# A watcher sensor's trigger reads the producer's XComs this often (Cosmos's default: 10 s).
WATCHER_POKE_SECONDS = 1


def keep_dbt_results(project_dir: str, context=None, source: str | None = None, **kwargs) -> None:
    """Cosmos's callback after each dbt invocation: the run's models and tests, kept per source."""
    from civic_pipelines.dbt_results import keep_cosmos_results

    keep_cosmos_results(project_dir, context=context, source=source, **kwargs)


_task_lock = threading.local()


def hold_warehouse_lock(context) -> None:
    """``pre_execute`` of a task that runs dbt on the warehouse: take the writer lock until the task
    ends (``release_warehouse_lock``: after it succeeds, fails or goes up for retry; a task process
    that dies releases it with the process)."""
    from civic_pipelines.dbt_results import warehouse_lock

    lock = warehouse_lock()
    if lock is None or getattr(_task_lock, "lock", None) is not None:
        return
    lock.acquire()
    _task_lock.lock = lock


def release_warehouse_lock(context, *_) -> None:
    lock = getattr(_task_lock, "lock", None)
    if lock is not None:
        _task_lock.lock = None
        lock.release()


# A watcher sensor runs dbt itself (Cosmos's fallback: its node alone) only once the producer has
# ended: on a retry, after a producer that failed or was skipped before reporting the node.
PRODUCER_ENDED = ("success", "failed", "skipped", "upstream_failed", "removed")


def hold_warehouse_lock_once_producer_ended(context) -> None:
    """``pre_execute`` of a watcher sensor: take the writer lock when the sensor may run dbt, i.e.
    when the producer has ended. While the producer runs, a sensor only reads XComs and defers: it
    must not queue behind the producer's lock (nor hold the lock the producer waits for)."""
    task = context.get("task") if hasattr(context, "get") else None
    try:
        state = task._get_producer_task_status(context)  # Cosmos's own lookup of the producer's state
    except Exception:  # noqa: BLE001 - unknown: take the lock, waiting is safe, two writers are not
        state = "unknown"
    if state is None or str(state) not in PRODUCER_ENDED + ("unknown",):
        return
    hold_warehouse_lock(context)


# What every task that takes the writer lock in pre_execute adds, so the lock goes with the task.
# The failure callback keeps the DAG's failure mail (an operator's own on_failure_callback replaces
# default_args' one): release the lock, then mail as every other task does.
def release_lock_args() -> dict:
    from civic_pipelines.orchestration.notify import FailureNotifier

    return {
        "post_execute": release_warehouse_lock,
        "on_retry_callback": release_warehouse_lock,
        "on_failure_callback": [release_warehouse_lock, FailureNotifier()],
    }


def build_marts_group(group_id: str, marts: list[str]):
    """The marts named, as one Cosmos group of the civic_marts DAG: the source groups' settings
    (one task per model, the DuckDB writer slot, in-process dbt), only the selection differs."""
    return build_dbt_group(None, group_id=group_id, select=sorted(marts))


@contextmanager
def scratch_project_args(prefix: str):
    """The arguments of an in-process dbt command on the project (``--project-dir``,
    ``--profiles-dir``, ``--target-path``, ``--log-path``, ``--quiet``) with target/ and logs/ in a
    scratch folder, removed afterwards: the project folder is shared with concurrent runs. target/ is
    seeded with the project's partial-parse state so dbt does not parse every file again."""
    import shutil
    import tempfile

    project_dir = settings.dbt_project_dir()
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        target = Path(scratch) / "target"
        target.mkdir()
        partial_parse = project_dir / "target" / "partial_parse.msgpack"
        if partial_parse.is_file():
            shutil.copy2(partial_parse, target / partial_parse.name)
        yield [
            "--project-dir",
            str(project_dir),
            "--profiles-dir",
            str(project_dir),
            "--target-path",
            str(target),
            "--log-path",
            f"{scratch}/logs",
            "--quiet",
        ]


def run_source_freshness(source: str, out: Path | None = None) -> dict:
    """``dbt source freshness --select source:<source>``, in-process as the Cosmos nodes run dbt.

    The result is kept at ``<freshness_dir>/<source>.json`` (replaced atomically) for the dashboard:
    one entry per table of the source with dbt's status (pass, warn, error, or runtime error when
    the table cannot be read, e.g. no block landed yet), the newest ``_landed_at``, its age and the
    criteria. Returns ``{table: status}``. A stale or unreadable table is a result to show, not a
    task failure; dbt failing as a whole (a project that does not parse) raises.
    """
    import json
    from datetime import datetime

    from dbt.cli.main import dbtRunner

    from civic_pipelines.orchestration.dbt_preparsed import current_manifest

    out = out or settings.freshness_dir() / f"{source}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(dbt_env())  # this task's own process: dbt reads the paths with env_var()
    with scratch_project_args(f"freshness-{source}-") as project_args:
        # no parse at all in a task forked after the preload (current_manifest)
        invoked = dbtRunner(manifest=current_manifest()).invoke(
            ["source", "freshness", "--select", f"source:{source}", *project_args]
        )
    results = getattr(invoked.result, "results", None)
    if invoked.exception is not None or results is None:
        raise RuntimeError(f"dbt source freshness for {source} failed: {invoked.exception or 'no result'}")
    tables = []
    for result in results:
        node = result.node
        criteria = getattr(node, "freshness", None)
        max_loaded_at = getattr(result, "max_loaded_at", None)
        snapshotted_at = getattr(result, "snapshotted_at", None)
        tables.append(
            {
                "unique_id": node.unique_id,
                "table": node.name,
                "status": tables_status(result),
                "max_loaded_at": max_loaded_at.isoformat() if max_loaded_at else None,
                "snapshotted_at": snapshotted_at.isoformat() if snapshotted_at else None,
                "age_seconds": getattr(result, "age", None),
                "warn_after": _period(getattr(criteria, "warn_after", None)),
                "error_after": _period(getattr(criteria, "error_after", None)),
                "message": _short_message(getattr(result, "message", None))
                if tables_status(result) == "runtime error"
                else None,
            }
        )
    payload = {
        "source": source,
        "generated_at": datetime.now(UTC).isoformat(),
        "results": sorted(tables, key=lambda t: t["table"]),
    }
    partial = out.with_name(f".{out.name}.tmp")
    partial.write_text(json.dumps(payload, indent=1))
    partial.replace(out)
    statuses = {t["table"]: t["status"] for t in payload["results"]}
    print(f"dbt source freshness {source}: " + ", ".join(f"{t} {s}" for t, s in sorted(statuses.items())))
    return statuses


def tables_status(result) -> str:
    return str(getattr(result.status, "value", result.status))


def _short_message(message: str | None) -> str | None:
    """dbt's runtime error, its last line (the cause), with the lake's path shortened to ``<lake>``.
    DuckDB's own pointer into the SQL (``LINE 3: ...`` and a line of carets) is not the cause."""
    if not message:
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith("LINE ") and line.strip("^ ")]
    last = (causes or lines)[-1]
    return last.replace(settings.lake_url(), "<lake>")[:300]


def _period(value) -> str | None:
    """``{count: 45, period: day}`` -> ``"45 days"``; None when not configured."""
    count, period = getattr(value, "count", None), getattr(value, "period", None)
    if not count or not period:
        return None
    period = str(getattr(period, "value", period))
    return f"{count} {period}{'s' if count != 1 else ''}"


def build_freshness_task(spec, task_id: str = "source_freshness"):
    """The task after the source's dbt models: ``dbt source freshness`` of the source, on the DuckDB
    writer slot (dbt opens the warehouse). Skipped on a dry run, which writes nothing.

    ``none_failed``: it also runs when every block was skipped (an unchanged source is exactly when
    staleness shows), but not after a failure: as the DAG's last task it decides the run's state,
    and a run whose blocks or models failed must stay failed (the failure has mailed already)."""
    from airflow.sdk import task

    # multiple_outputs=False: the report is one XCom, not one per key (``-> dict`` would make it so).
    @task(task_id=task_id, pool=DUCKDB_WRITER_POOL, trigger_rule="none_failed", multiple_outputs=False)
    def source_freshness(params: dict | None = None) -> dict:
        """dbt source freshness of the source's lake tables, kept for the dashboard's health card."""
        from airflow.sdk.exceptions import AirflowSkipException

        from civic_pipelines.dbt_results import warehouse_writer

        if (params or {}).get("dry_run"):
            raise AirflowSkipException("dry run: nothing to check")
        with warehouse_writer():  # dbt opens the warehouse: one writing process at a time
            return run_source_freshness(spec.name)

    return source_freshness()


def cosmos_environment_defaults() -> None:
    """Cosmos and dbt telemetry off, Cosmos's cache inside the project's data folder."""
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    os.environ.setdefault("AIRFLOW__COSMOS__CACHE_DIR", str(settings.data_dir() / "cosmos_cache"))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("SCARF_ANALYTICS", "false")
