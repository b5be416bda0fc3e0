"""The source registry: every source module registers its spec and extractor here."""

from __future__ import annotations

from importlib import import_module

from civic_pipelines.sources.base import SourceSpec

_MODULES = {
    "seattle_crime": "civic_pipelines.sources.seattle_crime",
}


def names() -> list[str]:
    return list(_MODULES)


def get(name: str):
    """The source module (it has ``SPEC`` and ``extract_block``)."""
    if name not in _MODULES:
        raise KeyError(f"unknown source {name!r}; known sources: {', '.join(_MODULES)}")
    return import_module(_MODULES[name])


def spec(name: str) -> SourceSpec:
    return get(name).SPEC


def specs() -> list[SourceSpec]:
    return [spec(name) for name in _MODULES]
