"""Stand-in sources: a spec and a module that exist only inside one test, so a test exercises the
extractor's framework (or the sink, or the runner's checks) without any real publisher's code."""

from __future__ import annotations

from civic_pipelines import sources
from civic_pipelines.core import SourceSpec


def stand_in_spec(name: str, **fields) -> SourceSpec:
    """A monthly source from 2020-01 keyed by ``id``, whose API address refuses connections (a
    stand-in module answers instead); ``fields`` override or add to the spec's fields."""
    return SourceSpec(
        **{
            "name": name,
            "title": "t",
            "publisher": "p",
            "first_month": "2020-01",
            "default_base_url": "http://127.0.0.1:9",
            "natural_key": "id",
            "description": "d",
            **fields,
        }
    )


def register(monkeypatch, module) -> None:
    """``sources.get(module.SPEC.name)`` gives ``module`` for the test (every other source is the
    real one), and connections come from the environment only: Airflow knows no stand-in."""
    real_get = sources.get
    monkeypatch.setattr(sources, "get", lambda name: module if name == module.SPEC.name else real_get(name))
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
