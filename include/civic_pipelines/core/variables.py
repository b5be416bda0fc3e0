"""Deployment variables a source or the planner reads (MDS providers, an ArcGIS year -> layer map,
the parts a run lands), with no Airflow in this layer.

A variable is ``AIRFLOW_VAR_<KEY>`` in the environment first (Airflow's own environment form, and
all the extractor container and the CLI have), then whatever the lookup registered by the
orchestration layer finds (inside Airflow: a Variable in the metadata DB or a secrets backend),
else the default. ``civic_pipelines.orchestration`` registers that lookup when it is imported, so
only it touches Airflow; ``CIVIC_NO_AIRFLOW_LOOKUP=1`` (the tests) keeps the environment the only place.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# key -> value, or None when the deployment has no such variable.
Lookup = Callable[[str], "str | None"]

_lookup: Lookup | None = None


def register_lookup(lookup: Lookup | None) -> None:
    """Where variables live beyond the environment (``None`` removes it)."""
    global _lookup
    _lookup = lookup


def get_variable(key: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
    if value is not None:
        return value
    if _lookup is not None and os.environ.get("CIVIC_NO_AIRFLOW_LOOKUP") != "1":
        found = _lookup(key)
        if found is not None:
            return found
    return default
