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


def airflow_mask_secret(secret: str) -> None:
    """Airflow's log masker, imported only when a secret is registered (inside a task)."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def airflow_variable(key: str) -> str | None:
    """The Variable from Airflow itself (metadata DB, secrets backend), None when Airflow has none:
    the lookup this layer registers with :mod:`civic_pipelines.core.variables` for the layers below it."""
    try:
        from airflow.sdk import Variable

        return Variable.get(key, default=None)
    except Exception:  # noqa: BLE001 - no metadata DB or API outside a task (the CLI, a test)
        return None
