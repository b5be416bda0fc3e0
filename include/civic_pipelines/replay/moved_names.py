"""Names that moved out of a generic emulator to the dataset they belong to, by their old module.

The generic emulators (``arcgis.py``, ``ckan.py``) name no dataset; their module ``__getattr__``
looks a moved name up here, so the old import paths (``from civic_pipelines.replay.arcgis import
install_minneapolis``) keep working.
"""

from __future__ import annotations

import importlib

MOVED = {
    "civic_pipelines.replay.arcgis": {
        "MINNEAPOLIS_PATH": "civic_pipelines.replay.minneapolis_layers",
        "install_minneapolis": "civic_pipelines.replay.minneapolis_layers",
    },
    "civic_pipelines.replay.ckan": {
        name: "civic_pipelines.replay.toronto_ckan"
        for name in (
            "CKAN_BASE",
            "EXTERNAL_PREFIX",
            "EXTERNAL_YEARS",
            "KNOWN_RESOURCE_IDS",
            "NEW_COLUMN",
            "README_ID",
            "README_NAME",
            "TorontoCkanPackage",
            "install_toronto",
        )
    },
}


def moved_name(module: str, name: str):
    """The object ``name`` of ``module`` that now lives beside its dataset (AttributeError if none)."""
    target = MOVED.get(module, {}).get(name)
    if target is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return getattr(importlib.import_module(target), name)
