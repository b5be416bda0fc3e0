"""Generic source adapters, one per API family, configured by a declarative file per dataset.

A dataset file (``civic_pipelines/datasets/<name>.toml``) has a ``[source]`` table (the fields of
:class:`~civic_pipelines.sources.base.SourceSpec`, plus ``adapter``) and an ``[adapter]`` table
read by the adapter named there. An adapter instance follows the core contract
(:class:`civic_pipelines.core.BlockSource`) as a source module does, so the extractor, the CLI and
the DAG factory treat both alike. Adding a city on a known API is adding a file.
"""

from __future__ import annotations

import tomllib
from importlib import import_module
from pathlib import Path

from civic_pipelines.core import Capabilities, SourceSpec

DATASETS_DIR = Path(__file__).resolve().parent.parent / "datasets"

# adapter name -> "module:class"
ADAPTERS = {
    "arcgis": "civic_pipelines.adapters.arcgis:ArcGisFeatureLayerSource",
    "ckan": "civic_pipelines.adapters.ckan:CkanResourceSource",
    "socrata": "civic_pipelines.adapters.socrata:SocrataDatasetSource",
}


class DatasetConfigError(ValueError):
    """A dataset file that cannot describe a source; the message names the file and the key."""


def adapter_config_error(path: Path, message: str) -> DatasetConfigError:
    """What every adapter raises for a bad ``[adapter]`` table: the file, the table, the reason."""
    return DatasetConfigError(f"{path.name}: [adapter] {message}")


def spec_from_config(config: dict, path: Path) -> SourceSpec:
    table = dict(config.get("source") or {})
    table.pop("adapter", None)
    for name in ("tags", "parts", "variables"):
        if name in table:
            table[name] = tuple(table[name])
    try:
        if "capabilities" in table:
            table["capabilities"] = Capabilities(**table["capabilities"])
        return SourceSpec(**table)
    except TypeError as error:
        raise DatasetConfigError(f"{path.name}: [source] {error}") from None


def load_dataset(path: Path):
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    adapter = (config.get("source") or {}).get("adapter")
    if adapter not in ADAPTERS:
        raise DatasetConfigError(f"{path.name}: [source] adapter must be one of {sorted(ADAPTERS)}, not {adapter!r}")
    module_name, class_name = ADAPTERS[adapter].split(":")
    adapter_class = getattr(import_module(module_name), class_name)
    return adapter_class(spec_from_config(config, path), config.get("adapter") or {}, path)


def dataset_files() -> dict[str, Path]:
    """Dataset name (the file's stem) -> path, for every dataset file shipped with the package."""
    return {path.stem: path for path in sorted(DATASETS_DIR.glob("*.toml"))}
