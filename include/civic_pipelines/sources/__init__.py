"""The source registry: hand-written source modules plus the dataset files of the generic adapters.

Both kinds follow the core contract (:class:`civic_pipelines.core.Source`): ``SPEC``, with its
declared capabilities, ``auth_headers``, ``probe`` and ``extract_block`` (or ``stream_block``).
"""

from __future__ import annotations

from functools import lru_cache
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


@lru_cache(maxsize=None)
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


def spec(name: str) -> SourceSpec:
    return get(name).SPEC


def specs() -> list[SourceSpec]:
    return [spec(name) for name in names()]


def parts(name: str) -> list[str]:
    """The parts a source has now: ``parts()`` of the source when it declares them configuration
    (``configured_parts``: MDS providers come from a deployment variable), else ``SPEC.parts``."""
    source = get(name)
    if source.SPEC.capabilities.configured_parts:
        return list(source.parts())
    return list(source.SPEC.parts)
