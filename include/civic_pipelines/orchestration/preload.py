"""Import the heavy libraries of our tasks, and pay the DAG file's parse, once in the long-lived
process that forks the tasks.

A Cosmos dbt task spends about 3 s importing dbt (and its adapter) before it runs one model for
about 1 s. Airflow's LocalExecutor (and Celery's prefork workers) fork each task from a parent
process, so whatever that parent imported is already loaded in the task. Call :func:`preload`
from ``airflow_local_settings.py`` (``$AIRFLOW_HOME/config/``), which every Airflow process
imports at start; ``make demo`` and ``bench/scale.py`` write that file. The price is about 100 MB
of memory in each Airflow process.

Every task process also parses its DAG file before it runs (Airflow 3's task runner), and most of
that parse is a first-time cost: importing Cosmos and our orchestration modules, and Cosmos's first
read of the dbt manifest (2-3 s quiet, 6 s median under load in ``bench/scale.py``; 0.1 s for
every further DAG in the same process). In the processes that fork tasks (``airflow scheduler``,
whose LocalExecutor workers fork the tasks, and ``airflow celery worker``), :func:`preload`
builds every source's DAG once, just before the process's first fork, so a forked task inherits
all of that and its own parse is the 0.1 s part. Just before the first fork, not here: this
module runs while ``import airflow`` is still initialising (logging, ORM), too early to build a
DAG; by the first fork Airflow is up. The same hook parses the dbt project once
(``dbt_preparsed.py``: each dbt task's dbt then runs its node without parsing) and freezes the
garbage collector's view of everything inherited (:func:`before_fork`).

The trade-off: a task runs the ``civic_pipelines`` code that was loaded when its scheduler (or
Celery worker) started, as it already runs the dbt and DuckDB loaded then. A deploy restarts
them (Astro does); while developing, restart the scheduler after editing ``include/``, or set
``CIVIC_PRELOAD_DAGS=0`` to keep every task reading the code afresh. The DAG processor is left
alone, so the DAGs it shows always follow the files.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

# argv after the `airflow` executable, for the processes that fork task processes.
TASK_FORKING_COMMANDS = (("scheduler",), ("celery", "worker"))
_warmed = False


def preload(warm_dag_parse: bool | None = None) -> None:
    """Import dbt, DuckDB and pyarrow now; in a task-forking process (or when ``warm_dag_parse``),
    also build every source's DAG before the first fork (:func:`warm_dag_parse_once`)."""
    try:
        import dbt.adapters.duckdb  # noqa: F401
        import dbt.cli.main  # noqa: F401
        import dbt.task.build  # noqa: F401 - what the dbt tasks run, imported by dbt per command
        import dbt.task.freshness  # noqa: F401
        import duckdb  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:  # a process without dbt (e.g. the extractor image): nothing to warm
        log.debug("preload skipped: %s", error)
        return
    try:  # Cosmos's lineage pass after every dbt task imports it when installed (0.1-0.3 s a task)
        import openlineage.common.provider.dbt.local  # noqa: F401
    except ImportError:
        pass
    if warm_dag_parse is None:
        warm_dag_parse = forks_tasks()
    if warm_dag_parse:
        os.register_at_fork(before=before_fork, after_in_parent=gc.unfreeze)


def before_fork() -> None:
    """Before each fork: the one-time warm-up (the DAGs, dbt's parsed project), then ``gc.freeze``,
    so the child's collections skip every object inherited from here. Cosmos collects garbage after
    each dbt invocation (``gc.collect`` in its adapter cleanup): over everything a preloaded task
    inherits (Airflow, dbt, the DAGs, the manifest) that is 0.1-0.4 s per task, and it touches every
    inherited page, copying them. The parent unfreezes right after the fork, so its own garbage
    is still collected."""
    warm_dag_parse_once()
    gc.freeze()


def forks_tasks(argv: list[str] | None = None, environ: dict | None = None) -> bool:
    """Whether this process forks task processes (scheduler, Celery worker), unless
    ``CIVIC_PRELOAD_DAGS`` says otherwise (``0``/``false`` off, ``1``/``true`` on everywhere)."""
    environ = os.environ if environ is None else environ
    setting = environ.get("CIVIC_PRELOAD_DAGS", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    argv = sys.argv if argv is None else argv
    if not argv or os.path.basename(argv[0]) != "airflow":
        return False
    args = [a for a in argv[1:] if not a.startswith("-")]
    return any(tuple(args[: len(command)]) == command for command in TASK_FORKING_COMMANDS)


def warm_dag_parse_once() -> None:
    """Build every source's DAG once in this process (the DAGs are thrown away): Cosmos, our
    orchestration modules and Cosmos's parsed manifest are then loaded in every child forked
    after. Runs as a before-fork hook, so it must never raise."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    started = time.monotonic()
    try:
        from civic_pipelines import sources
        from civic_pipelines.orchestration.dag_factory import build_source_dag

        for name in sources.names():
            build_source_dag(name)
    except Exception as error:  # noqa: BLE001 - a task then parses from cold, as without the warm-up
        log.warning("preload: building the DAGs before forking tasks failed (%r); tasks parse from cold", error)
    else:
        log.info("preload: every source's DAG built in %.1f s before forking tasks", time.monotonic() - started)
    from civic_pipelines.orchestration.dbt_preparsed import parse_before_fork

    parse_before_fork()
