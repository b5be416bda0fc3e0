"""Import the heavy libraries of dbt tasks once, in the long-lived executor process, before it
forks a process per task.

A Cosmos dbt task spends about 3 s importing dbt (and its adapter) before it runs one model for
about 1 s. Airflow's LocalExecutor (and Celery's prefork workers) fork each task from a parent
process, so whatever that parent imported is already loaded in the task. Call :func:`preload`
from ``airflow_local_settings.py`` (``$AIRFLOW_HOME/config/``), which every Airflow process
imports at start; ``make demo`` writes that file. The price is about 100 MB of memory in each
Airflow process.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def preload() -> None:
    try:
        import dbt.adapters.duckdb  # noqa: F401
        import dbt.cli.main  # noqa: F401
        import duckdb  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:  # a process without dbt (e.g. the extractor image): nothing to warm
        log.debug("preload skipped: %s", error)
