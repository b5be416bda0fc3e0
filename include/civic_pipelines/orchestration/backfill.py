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

LOCAL_SETTINGS = '''"""Imported by every Airflow process at start (civic_pipelines.orchestration.backfill writes it)."""
from civic_pipelines.orchestration.preload import preload

preload()
'''


def airflow_settings(parallelism: int = BACKFILL_PARALLELISM,
                     dag_file_interval: int = BACKFILL_DAG_FILE_INTERVAL_SECONDS) -> dict[str, str]:
    """The ``AIRFLOW__*`` variables of a backfill on one machine (see the module's docstring)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(dag_file_interval),
        # How often the DAG processor looks for new files (the default is 300 s).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }


def write_local_settings(airflow_home: Path) -> Path:
    """``$AIRFLOW_HOME/config/airflow_local_settings.py`` calling :func:`preload.preload`: the
    executor then forks each task with dbt, DuckDB, pyarrow and the parsed DAGs already loaded."""
    path = Path(airflow_home) / "config" / "airflow_local_settings.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOCAL_SETTINGS)
    return path
