"""Generic source adapters, one per API family, configured by a declarative file per dataset.

A dataset file (``civic_pipelines/datasets/<name>.toml``) has a ``[source]`` table (the fields of
:class:`~civic_pipelines.sources.base.SourceSpec`, plus ``adapter``) and an ``[adapter]`` table
read by the adapter named there. An adapter instance offers what a source module offers:
``SPEC``, ``auth_headers(connection)``, ``probe(session, connection)`` and
``extract_block(session, connection, month, probed, landed_at)``, so the extractor, the CLI and
the DAG factory treat both alike. Adding a city on a known API is adding a file.
"""

from __future__ import annotations

import tomllib
from importlib import import_module
from pathlib import Path

from civic_pipelines.sources.base import SourceSpec

DATASETS_DIR = Path(__file__).resolve().parent.parent / "datasets"

# adapter name -> "module:class"
ADAPTERS = {
    "arcgis": "civic_pipelines.adapters.arcgis:ArcGisFeatureLayerSource",
    "ckan": "civic_pipelines.adapters.ckan:CkanResourceSource",
    "socrata": "civic_pipelines.adapters.socrata:SocrataDatasetSource",
}


class DatasetConfigError(ValueError):
    """A dataset file that cannot describe a source; the message names the file and the key."""


def spec_from_config(config: dict, path: Path) -> SourceSpec:
    table = dict(config.get("source") or {})
    table.pop("adapter", None)
    if "tags" in table:
        table["tags"] = tuple(table["tags"])
    try:
        return SourceSpec(**table)
    except TypeError as error:
        raise DatasetConfigError(f"{path.name}: [source] {error}") from None


def _read_config(path: Path) -> tuple[dict, str]:
    """The dataset file's tables and its adapter's name (checked against ``ADAPTERS``)."""
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    adapter = (config.get("source") or {}).get("adapter")
    if adapter not in ADAPTERS:
        raise DatasetConfigError(f"{path.name}: [source] adapter must be one of {sorted(ADAPTERS)}, not {adapter!r}")
    return config, adapter


def dataset_spec(path: Path) -> SourceSpec:
    """The ``[source]`` table of a dataset file as a spec, without importing its adapter (which brings
    pyarrow): what parsing the DAG files needs. The ``[adapter]`` table is checked by
    :func:`load_dataset` (``civic sources``, and every task that extracts)."""
    config, _ = _read_config(path)
    return spec_from_config(config, path)


def load_dataset(path: Path):
    config, adapter = _read_config(path)
    module_name, class_name = ADAPTERS[adapter].split(":")
    adapter_class = getattr(import_module(module_name), class_name)
    return adapter_class(spec_from_config(config, path), config.get("adapter") or {}, path)


def dataset_files() -> dict[str, Path]:
    """Dataset name (the file's stem) -> path, for every dataset file shipped with the package."""
    return {path.stem: path for path in sorted(DATASETS_DIR.glob("*.toml"))}
