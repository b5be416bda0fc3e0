"""A lake table's Arrow schema as the two other places that describe it spell it.

* **DuckDB** (the dbt sources' ``data_type``): the type DuckDB gives a column when it reads the
  parquet, found by asking DuckDB, not by a hand-made table (:func:`duckdb_columns`,
  :func:`describe`), in the spelling the sources yml files use (:func:`duckdb_spelling`:
  lower case, ``timestamptz`` for DuckDB's ``TIMESTAMP WITH TIME ZONE``).
* **The lake contract docs** (``docs/lake_contract_<source>.md``): a markdown table whose header
  starts ``| column | arrow type |``, one row per column, the type as pyarrow prints it except that a
  list is ``list<string>`` (:func:`arrow_spelling`); :func:`doc_columns` reads the tables under the
  named headings.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# DuckDB's long names the sources yml files spell short; every other name is DuckDB's, lower case.
_SHORT_DUCKDB_NAMES = {"timestamp with time zone": "timestamptz"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_DOC_TABLE_HEADER = re.compile(r"^\|\s*column\s*\|\s*arrow type\s*\|", re.IGNORECASE)


# ---------------------------------------------------------------- DuckDB


def duckdb_spelling(type_name: str) -> str:
    """DuckDB's type name (``TIMESTAMP WITH TIME ZONE``) as the sources yml files write it (``timestamptz``)."""
    lowered = type_name.strip().lower()
    return _SHORT_DUCKDB_NAMES.get(lowered, lowered)


def describe(relation_sql: str) -> list[tuple[str, str]]:
    """``(column, type)`` of a DuckDB relation (``read_parquet(...)``, a table name), types spelled
    by :func:`duckdb_spelling`."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.sql(f"describe select * from {relation_sql}").fetchall()
    return [(name, duckdb_spelling(type_name)) for name, type_name, *_ in rows]


def duckdb_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """``(column, type)`` as DuckDB reads a parquet file written with ``schema`` (zero rows)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "schema.parquet"
        pq.write_table(schema.empty_table(), path)
        return describe(f"read_parquet('{path}')")


# ---------------------------------------------------------------- the lake contract docs


def arrow_spelling(data_type: pa.DataType) -> str:
    """An Arrow type as the docs write it: pyarrow's ``str()``, a list as ``list<string>``."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return f"list<{arrow_spelling(data_type.value_type)}>"
    return str(data_type)


def arrow_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(field.name, arrow_spelling(field.type)) for field in schema]


def _cell(text: str) -> str:
    """A markdown cell's text: trimmed, without code ticks or the backslashes that escape ``<>``."""
    return text.strip().replace("`", "").replace("\\", "")


def doc_tables(markdown: str) -> dict[str, list[tuple[str, str]]]:
    """Every ``| column | arrow type | ...`` table of a doc, ``(column, type)`` rows, by the text of
    the heading above it (the first table under a heading; a table before any heading is under ``""``)."""
    tables: dict[str, list[tuple[str, str]]] = {}
    heading, rows = "", None
    for line in markdown.splitlines():
        match = _HEADING.match(line)
        if match:
            heading, rows = match.group(2), None
            continue
        if _DOC_TABLE_HEADER.match(line) and heading not in tables:
            rows = tables[heading] = []
            continue
        if rows is None:
            continue
        if not line.startswith("|"):
            rows = None  # the table has ended
            continue
        cells = [_cell(cell) for cell in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-", ":", " "}:
            continue  # the header's separator row
        rows.append((cells[0], cells[1]))
    return tables


def doc_columns(markdown: str, headings: list[str]) -> list[tuple[str, str]]:
    """The ``(column, arrow type)`` rows of the tables under ``headings``, in that order: a heading
    matches its full text or the text before `` (`` (``data.parquet (trips)`` is ``data.parquet``)."""
    tables = doc_tables(markdown)
    by_short = {title.split(" (", 1)[0]: rows for title, rows in tables.items()}
    columns: list[tuple[str, str]] = []
    for heading in headings:
        rows = tables.get(heading, by_short.get(heading))
        if rows is None:
            raise KeyError(
                f"no '| column | arrow type |' table under a heading {heading!r}; tables are under {sorted(tables)}"
            )
        columns += rows
    return columns
