"""One contract per source: the Arrow schema the code lands a table with is the truth, and the two
other places that describe the table follow it, column by column and type by type.

* The dbt sources yml (``dbt/models/staging/<source>/_<source>__sources.yml``): a zero-row block is
  landed with the lake writer where the table's ``external_location`` reads, DuckDB describes that
  relation, and the yml's columns and ``data_type`` must be exactly what DuckDB read (names in order;
  no column DuckDB adds, such as a hive ``month`` from the ``month=`` folders).
* The lake contract doc (``docs/lake_contract_<source>.md``): the ``| column | arrow type |``
  tables under the table's headings list exactly the schema's columns, in order, with their types.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from civic_pipelines import sources
from civic_pipelines.core.schema_docs import arrow_columns, describe, doc_columns, duckdb_columns
from civic_pipelines.lake import BlockLocation, write_block
from civic_pipelines.sources.lake_tables import LakeTable, all_lake_tables

ROOT = Path(__file__).resolve().parents[1]
MONTH = "2024-03"
CONFIGURED_PART = "voi"  # any provider name will do where the parts are configuration (MDS)
_LAKE_PATH = re.compile(r"\{\{ *env_var\('CIVIC_LAKE'\) *\}\}/(?P<path>[^']+)")

# The doc headings a table's columns are listed under, where they are not the one "<file>.parquet":
# Street Manager lists the envelope and the bookkeeping columns once for its three parts.
DOC_HEADINGS = {
    f"street_manager/{part}/data": ["Envelope", part, "Derived and bookkeeping"]
    for part in ("permit", "activity", "section_58")
}


def sources_yml(source: str) -> dict:
    return yaml.safe_load((ROOT / f"dbt/models/staging/{source}/_{source}__sources.yml").read_text())


def dbt_source_tables() -> list[tuple[str, dict]]:
    return [
        (source["name"], table)
        for name in sources.names()
        for source in sources_yml(name)["sources"]
        for table in source["tables"]
    ]


def lake_path(table: dict) -> str:
    """``<source>[/<part>]/month=*/<file>.parquet``: where the dbt source table reads in the lake."""
    return _LAKE_PATH.search(table["config"]["meta"]["external_location"]).group("path")


def lake_table_read_by(source: str, table: dict) -> LakeTable:
    path = lake_path(table)
    for lake_table in all_lake_tables():
        part = lake_table.part or ("*" if sources.spec(source).capabilities.configured_parts else None)
        expected = "/".join(filter(None, [lake_table.source, part, "month=*", f"{lake_table.file}.parquet"]))
        if lake_table.source == source and path == expected:
            return lake_table
    raise AssertionError(f"{source}.{table['name']} reads {path}, which no source lands")


DBT_TABLES = dbt_source_tables()


def test_every_table_a_source_lands_is_a_dbt_source_except_the_quarantine():
    read = {lake_table_read_by(source, table).name for source, table in DBT_TABLES}
    landed = {table.name for table in all_lake_tables() if table.file != "quarantine"}
    assert read == landed
    assert len(read) == len(DBT_TABLES)  # no lake table is declared twice


def land_empty_block(lake: Path, lake_table: LakeTable) -> None:
    """A zero-row block of the table's source and part, written by the lake writer as a run writes one."""
    part = lake_table.part or (CONFIGURED_PART if sources.spec(lake_table.source).has_parts else None)
    siblings = [t for t in all_lake_tables() if t.source == lake_table.source and t.part == lake_table.part]
    schemas = {t.file: t.schema for t in siblings if t.file != "quarantine"}
    extra = {name: schema.empty_table() for name, schema in schemas.items() if name != "data"}
    write_block(
        BlockLocation(str(lake), lake_table.source, MONTH, part),
        schemas["data"].empty_table(),
        None,
        {"rows": 0},
        tables=extra or None,
    )


@pytest.mark.parametrize("source, table", DBT_TABLES, ids=[f"{s}.{t['name']}" for s, t in DBT_TABLES])
def test_the_dbt_source_declares_the_columns_and_duckdb_types_the_lake_holds(tmp_path, source, table):
    lake_table = lake_table_read_by(source, table)
    land_empty_block(tmp_path, lake_table)
    relation = _LAKE_PATH.sub(lambda m: f"{tmp_path}/{m.group('path')}", table["config"]["meta"]["external_location"])
    read = describe(relation)
    # DuckDB reads the landed block as the schema says: nothing added (a hive column), nothing retyped.
    assert read == duckdb_columns(lake_table.schema)
    declared = [(column["name"], column.get("data_type")) for column in table.get("columns", [])]
    assert declared == read


@pytest.mark.parametrize("lake_table", all_lake_tables(), ids=lambda t: t.name)
def test_the_lake_contract_doc_lists_the_columns_and_arrow_types(lake_table):
    doc = (ROOT / f"docs/lake_contract_{lake_table.source}.md").read_text()
    key = f"{lake_table.source}/{lake_table.part}/{lake_table.file}" if lake_table.part else lake_table.name
    headings = DOC_HEADINGS.get(key, [f"{lake_table.file}.parquet"])
    assert doc_columns(doc, headings) == arrow_columns(lake_table.schema)
