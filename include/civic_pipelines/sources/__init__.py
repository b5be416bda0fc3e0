"""The source registry: hand-written source modules plus the dataset files of the generic adapters.

Both kinds follow the core contract (:class:`civic_pipelines.core.Source`): ``SPEC``, with its
declared capabilities, ``auth_headers``, ``probe`` and ``extract_block`` (or ``stream_block``).
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from civic_pipelines.sources.base import SourceSpec

# name -> module, for a source no generic adapter can describe (every other source is a dataset
# file under civic_pipelines/datasets/).
_MODULES: dict[str, str] = {
    "mds": "civic_pipelines.sources.mds",  # MDS provider APIs: one part per provider, hourly walk, several tables
    "srwr": "civic_pipelines.sources.srwr",  # SRWR: one download decodes into several tables
    "street_manager": "civic_pipelines.sources.street_manager",  # zips of JSON events, three parts
}


def _dataset_files() -> dict:
    from civic_pipelines.adapters import dataset_files

    return {name: path for name, path in dataset_files().items() if name not in _MODULES}


def names() -> list[str]:
    return list(_MODULES) + list(_dataset_files())


@cache
def get(name: str):
    """The source (a module or an adapter instance with ``SPEC`` and ``extract_block``)."""
    if name in _MODULES:
        return import_module(_MODULES[name])
    files = _dataset_files()
    if name in files:
        from civic_pipelines.adapters import load_dataset

        source = load_dataset(files[name])
        if source.SPEC.name != name:
            raise ValueError(f"{files[name].name}: [source] name {source.SPEC.name!r} must match the file name")
        return source
    raise KeyError(f"unknown source {name!r}; known sources: {', '.join(names())}")


@cache
def _declared_spec(name: str) -> SourceSpec | None:
    if name in _MODULES:
        from civic_pipelines.sources.declared import SPECS

        return SPECS[name]
    files = _dataset_files()
    if name in files:
        from civic_pipelines.adapters import dataset_spec

        declared = dataset_spec(files[name])
        if declared.name != name:
            raise ValueError(f"{files[name].name}: [source] name {declared.name!r} must match the file name")
        return declared
    return None


def spec(name: str) -> SourceSpec:
    """The source's spec, read from its declaration (``sources/declared.py`` or the dataset file's
    ``[source]`` table) without importing its extractor: the DAG files call this while they parse,
    and a source module or adapter imports pyarrow and requests. Equal to ``get(name).SPEC``."""
    return _declared_spec(name) or get(name).SPEC


def declares_postgres_tables(name: str) -> bool:
    """Whether the source mirrors its blocks into PostgreSQL (a module-level ``POSTGRES_TABLES``), known
    without importing the source module for the registry's own sources (dataset-file adapters declare none)."""
    if name in _MODULES:
        from civic_pipelines.sources.declared import POSTGRES_TABLES

        return bool(POSTGRES_TABLES.get(name))
    if name in _dataset_files():
        return False
    return bool(getattr(get(name), "POSTGRES_TABLES", None))


def specs() -> list[SourceSpec]:
    return [spec(name) for name in names()]


def parts(name: str) -> list[str]:
    """The parts a source has now: ``parts()`` of the source when it declares them configuration
    (``configured_parts``: MDS providers come from a deployment variable), else ``SPEC.parts``."""
    source = get(name)
    if source.SPEC.capabilities.configured_parts:
        return list(source.parts())
    return list(source.SPEC.parts)
