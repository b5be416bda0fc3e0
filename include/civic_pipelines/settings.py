"""Where things live: the project root, the lake and the warehouse.

Every path is absolute so dbt (which Cosmos may run from a copied project folder) and containers
agree on them. Environment variables override the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("CIVIC_PROJECT_ROOT", Path(__file__).resolve().parents[2]))


def data_dir() -> Path:
    return Path(os.environ.get("CIVIC_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def lake_url() -> str:
    """The lake root: a local folder (default ``./data/lake``) or an ``s3://`` URL."""
    value = os.environ.get("CIVIC_LAKE")
    if not value:
        return str(data_dir() / "lake")
    return value if "://" in value else str(Path(value).resolve())


def lake_conn_id() -> str:
    """The Airflow connection (type ``aws``) of an ``s3://`` lake: ``CIVIC_LAKE_CONN_ID``, default
    ``civic_lake_s3`` (``AIRFLOW_CONN_CIVIC_LAKE_S3`` in a container)."""
    return os.environ.get("CIVIC_LAKE_CONN_ID", "civic_lake_s3")


def warehouse_path() -> str:
    value = os.environ.get("CIVIC_WAREHOUSE")
    if not value:
        return str(data_dir() / "warehouse.duckdb")
    return value if value.startswith("md:") else str(Path(value).resolve())


def dbt_project_dir() -> Path:
    return Path(os.environ.get("CIVIC_DBT_DIR", PROJECT_ROOT / "dbt")).resolve()


def freshness_dir() -> Path:
    """Where each source's latest ``dbt source freshness`` result is kept (``<source>.json``, dbt's
    sources.json artifact): written by the DAG's ``source_freshness`` task, read by the dashboard's
    health cards. ``CIVIC_DBT_FRESHNESS``, default ``<data>/dbt_freshness`` (beside the warehouse,
    which both sides already share)."""
    return Path(os.environ.get("CIVIC_DBT_FRESHNESS", data_dir() / "dbt_freshness")).resolve()


def dbt_results_dir() -> Path:
    """Where each source's latest dbt results are kept (``<source>.json``: every model and test its
    DAG's dbt tasks ran, with status, failures and dbt's own time), written after each dbt invocation
    of the source's task group, read by the dashboard's health cards. ``CIVIC_DBT_RESULTS``, default
    ``<data>/dbt_results`` (beside the freshness results)."""
    return Path(os.environ.get("CIVIC_DBT_RESULTS", data_dir() / "dbt_results")).resolve()


def warehouse_lock_path() -> Path | None:
    """The file every dbt invocation that opens the warehouse locks first (DuckDB allows one
    writing process; a second fails at once instead of waiting). None for a warehouse that is not a
    local file (MotherDuck ``md:``), which has no such limit here."""
    warehouse = warehouse_path()
    if warehouse.startswith("md:"):
        return None
    return Path(f"{warehouse}.writer.lock")
