"""Every parquet table a source lands, with the Arrow schema its code lands it with.

Each source defines its schemas in its own place (a hand-written source's ``contract`` module, a
dataset file's adapter); this module only gathers them under one question, "what does source X
land, file by file", which the contract tests ask of the dbt sources yml files and the lake
contract docs (tests/test_source_contracts.py). It adds no schema of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from civic_pipelines import sources


@dataclass(frozen=True)
class LakeTable:
    """``<lake>/<source>[/<part>]/month=YYYY-MM/<file>.parquet``, written with ``schema``.
    ``part`` is None for a source without parts, or one whose parts are configuration (MDS providers)."""

    source: str
    file: str
    schema: pa.Schema
    part: str | None = None

    @property
    def name(self) -> str:
        return f"{self.source}/{self.part}/{self.file}" if self.part else f"{self.source}/{self.file}"


def _street_manager() -> list[LakeTable]:
    from civic_pipelines.sources import street_manager

    tables = []
    for part in street_manager.SPEC.parts:
        tables += [
            LakeTable("street_manager", "data", street_manager.data_schema(part), part),
            LakeTable("street_manager", "quarantine", street_manager.QUARANTINE_SCHEMA, part),
        ]
    return tables


def _srwr() -> list[LakeTable]:
    from civic_pipelines.sources.srwr import contract

    # The activity table is the block's data.parquet; every other table is <table>.parquet.
    files = {name: "data" if name == contract.ACTIVITY else name for name in contract.SCHEMAS}
    return [LakeTable("srwr", files[name], schema) for name, schema in contract.SCHEMAS.items()] + [
        LakeTable("srwr", "quarantine", contract.QUARANTINE_SCHEMA)
    ]


def _mds() -> list[LakeTable]:
    from civic_pipelines.sources.mds import contract

    # Trips are the block's data.parquet (civic_pipelines.sources.mds.fetch).
    return [
        LakeTable("mds", "data", contract.TRIPS_SCHEMA),
        LakeTable("mds", "events", contract.EVENTS_SCHEMA),
        LakeTable("mds", "hours", contract.HOURS_SCHEMA),
        LakeTable("mds", "quarantine", contract.QUARANTINE_SCHEMA),
    ]


_HAND_WRITTEN = {"street_manager": _street_manager, "srwr": _srwr, "mds": _mds}


def _dataset(name: str) -> list[LakeTable]:
    source = sources.get(name)
    # The Socrata adapter names its schemas in capitals, the ArcGIS and CKAN adapters in lower case.
    data = getattr(source, "data_schema", None) or source.DATA_SCHEMA
    quarantine = getattr(source, "quarantine_schema", None) or source.QUARANTINE_SCHEMA
    return [LakeTable(name, "data", data), LakeTable(name, "quarantine", quarantine)]


def lake_tables(name: str) -> list[LakeTable]:
    """The tables source ``name`` lands: data.parquet first, quarantine.parquet among them."""
    if name in _HAND_WRITTEN:
        return _HAND_WRITTEN[name]()
    return _dataset(name)


def all_lake_tables() -> list[LakeTable]:
    return [table for name in sources.names() for table in lake_tables(name)]
