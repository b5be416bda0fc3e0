"""Airflow Variables read while a DAG file is parsed, with a default when Airflow has none."""

from __future__ import annotations

import os


def get_variable(key: str, default: str) -> str:
    # Environment first (Airflow's own AIRFLOW_VAR_* form): no metadata-DB round trip at parse time.
    value = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
    if value is not None:
        return value
    try:
        from airflow.sdk import Variable

        return Variable.get(key, default=default)
    except Exception:  # noqa: BLE001 - no metadata DB or API while parsing in a test or a container
        return default
