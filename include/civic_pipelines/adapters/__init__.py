"""Generic source adapters, one per API family, configured by a declarative file per dataset.

A dataset file (``civic_pipelines/datasets/<name>.toml``) has a ``[source]`` table (the fields of
:class:`~civic_pipelines.sources.base.SourceSpec`, plus ``adapter``) and an ``[adapter]`` table
read by the adapter named there. An adapter instance follows the core contract
(:class:`civic_pipelines.core.BlockSource`) as a source module does, so the extractor, the CLI and
the DAG factory treat both alike. Adding a city on a known API is adding a file.
"""

from __future__ import annotations

import dataclasses
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


def configured_fields(tables: list | None, path: Path, make_field) -> tuple[list, dict]:
    """The ``fields`` tables made into fields, and those fields by published (``source``) name;
    an empty list, or a source or lake name used twice, is refused."""
    fields = [make_field(table) for table in tables or []]
    if not fields:
        raise adapter_config_error(path, "fields is empty")
    by_source = {field.source: field for field in fields}
    names = [field.name for field in fields]
    if len(set(names)) != len(names) or len(by_source) != len(fields):
        raise adapter_config_error(path, "field sources and names must be unique")
    return fields, by_source


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


def _read_config(path: Path) -> tuple[dict, str]:
    """The dataset file's tables and its adapter's name (checked against ``ADAPTERS``)."""
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    adapter = (config.get("source") or {}).get("adapter")
    if adapter not in ADAPTERS:
        raise DatasetConfigError(f"{path.name}: [source] adapter must be one of {sorted(ADAPTERS)}, not {adapter!r}")
    return config, adapter


def adapter_variables(adapter: str, spec: SourceSpec, adapter_config: dict) -> tuple[str, ...]:
    """The Variables an adapter reads beyond its spec's own, known from the dataset file alone: the
    ArcGIS adapter's year -> layer Variable. The adapter declares them from here too, so the spec
    parsing sees and the loaded source's spec agree (docker mode forwards them)."""
    if adapter == "arcgis":
        return (str(adapter_config.get("layers_variable") or f"civic_{spec.name}_layers"),)
    return ()


def with_variables(spec: SourceSpec, extra: tuple[str, ...]) -> SourceSpec:
    return dataclasses.replace(spec, variables=tuple(dict.fromkeys((*spec.variables, *extra)))) if extra else spec


def dataset_spec(path: Path) -> SourceSpec:
    """The ``[source]`` table of a dataset file as a spec, without importing its adapter (which brings
    pyarrow): what parsing the DAG files needs. The ``[adapter]`` table is checked by
    :func:`load_dataset` (``civic sources``, and every task that extracts)."""
    config, adapter = _read_config(path)
    spec = spec_from_config(config, path)
    return with_variables(spec, adapter_variables(adapter, spec, config.get("adapter") or {}))


def load_dataset(path: Path):
    config, adapter = _read_config(path)
    module_name, class_name = ADAPTERS[adapter].split(":")
    adapter_class = getattr(import_module(module_name), class_name)
    return adapter_class(spec_from_config(config, path), config.get("adapter") or {}, path)


def dataset_files() -> dict[str, Path]:
    """Dataset name (the file's stem) -> path, for every dataset file shipped with the package."""
    return {path.stem: path for path in sorted(DATASETS_DIR.glob("*.toml"))}
