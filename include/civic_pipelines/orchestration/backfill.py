"""The Airflow settings for a catchup or a long backfill on one machine, in one place.

``make demo`` (``scripts/demo.py``) and ``bench/scale.py`` both start Airflow with these, and
docs/scaling.md ("Settings for a backfill") explains each for a user who sets them by hand. They
are environment variables (Airflow's ``AIRFLOW__SECTION__KEY`` form), so they go as well into a
deployment's environment as into ``airflow.cfg``.
"""

from __future__ import annotations

from pathlib import Path

# LocalExecutor workers, i.e. task processes at once. Once a forked task inherits the parsed DAGs
# (preload.py) a block costs about 1 CPU-s of Airflow's own work and mostly waits on the API and
# the Execution API: 4 keeps two cores busy without the tasks crowding the scheduler out.
BACKFILL_PARALLELISM = 4
# The DAG files do not change during a backfill: re-parsing them every 30 s (Airflow's default)
# only competes with the tasks for the CPU. New or edited DAG files are still seen at this interval.
BACKFILL_DAG_FILE_INTERVAL_SECONDS = 600
DAG_FILE_PARSE_TIMEOUT_SECONDS = 600
# [workers] min_heartbeat_interval (an integer: 1 is the least that is not a busy loop).
SUPERVISOR_WAIT_SECONDS = 1

# Imported by every Airflow process at start; only those that fork tasks preload (in the API
# server, the DAG processor and the triggerer it would only delay the start and take memory).
LOCAL_SETTINGS = '''"""Written by civic_pipelines.orchestration.backfill.write_local_settings."""
import sys

if sys.argv[1:2] == ["scheduler"] or sys.argv[1:3] == ["celery", "worker"]:
    from civic_pipelines.orchestration.preload import preload

    preload()
'''


def airflow_settings(
    parallelism: int = BACKFILL_PARALLELISM, dag_file_interval: int = BACKFILL_DAG_FILE_INTERVAL_SECONDS
) -> dict[str, str]:
    """The ``AIRFLOW__*`` variables of a backfill on one machine (see the module's docstring)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(dag_file_interval),
        # How often the DAG processor looks for new files (the default is 300 s).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # A saturated machine (a backfill is when it is) must not turn a slow parse into an import
        # error that hides every DAG of the file: Airflow's 30 s / 50 s are for a quiet one. The
        # project's DAG file parses in 3-4 s quiet; at a load average of 25 on two cores, over 60 s.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(DAG_FILE_PARSE_TIMEOUT_SECONDS),
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(DAG_FILE_PARSE_TIMEOUT_SECONDS),
        # The task supervisor's longest wait for its task process (a select() on the task's
        # sockets). When the task has closed them all before the kernel reports it exited (about a
        # third of short tasks here), nothing wakes the supervisor and it waits this long, holding
        # the executor slot: with Airflow's 5 s, a 0.5 s block held its slot 5.5 s. It is also the
        # heartbeat interval: 1 s means one heartbeat a second per running task, a cheap call.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(SUPERVISOR_WAIT_SECONDS),
    }


def offline_settings(cosmos_cache: Path) -> dict[str, str]:
    """What every Airflow stack the project starts on loopback sets (the demo, bench/scale.py, the
    Celery test): Cosmos's, dbt's and Scarf's telemetry off, Cosmos's cache in the stack's own
    folder, and no proxy for the replay server and the API server on 127.0.0.1."""
    return {
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(cosmos_cache),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


def write_local_settings(airflow_home: Path) -> Path:
    """``$AIRFLOW_HOME/config/airflow_local_settings.py`` calling :func:`preload.preload`: the
    executor then forks each task with dbt, DuckDB, pyarrow and the parsed DAGs already loaded."""
    path = Path(airflow_home) / "config" / "airflow_local_settings.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOCAL_SETTINGS)
    return path


def pools(names: list[str], parts: dict[str, int] | None = None) -> dict[str, dict]:
    """The pools to create (``airflow pools import``): the one DuckDB writer, and one pool per
    source API with the source's ``pool_slots``.

    A source whose parts are separate providers, each its own API and connection (MDS: a block is
    one provider's month), gets its spec's slots per provider: those bound the blocks against
    *one* API at a time, and the planner lays a month's providers side by side, so the scheduler
    hands each provider about that many blocks at a time instead of leaving some of the four
    idle (the tail of every MDS backfill in docs/scaling.md). ``parts`` (source -> number of
    enabled parts) overrides the count of the source's registry (the demo lands fewer providers).
    """
    from civic_pipelines import sources

    table = {"duckdb_writer": {"slots": 1, "description": "DuckDB allows one writer: every dbt task takes this slot"}}
    for name in names:
        spec = sources.spec(name)
        slots = spec.pool_slots
        if spec.parts_param == "providers":
            providers = (parts or {}).get(name, len(sources.parts(name)))
            slots = spec.pool_slots * max(1, providers)
        table[spec.pool] = {"slots": slots, "description": f"parallel blocks against the {name} API"}
    return table
