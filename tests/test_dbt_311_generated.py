"""The dbt files of the 311 cities are generated from their dataset files
(civic_pipelines.devtools.dbt_311) and committed: they must be what the generator writes now."""

from __future__ import annotations

import tomllib

import duckdb
import pyarrow.parquet as pq

from civic_pipelines.adapters import dataset_files, load_dataset
from civic_pipelines.core.schema_docs import duckdb_spelling
from civic_pipelines.devtools import dbt_311


def test_generated_dbt_files_are_current():
    stale = [
        str(path.relative_to(dbt_311.ROOT))
        for path, text in dbt_311.generated_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "run `python -m civic_pipelines.devtools.dbt_311` and commit: stale " + ", ".join(stale)


def test_every_311_dataset_has_a_dbt_table_and_a_branch():
    cities = {city.source: city for city in dbt_311.cities()}
    assert {name for name in dataset_files() if name.endswith("_311")} == set(cities)
    macro = (dbt_311.DBT_DIR / "macros" / "service_request_cities.sql").read_text()
    for source, city in cities.items():
        assert f"'source': '{source}', 'city': '{city.city}'" in macro
        assert city.city == source.removesuffix("_311")  # the dashboard's city id for the source


def test_source_types_are_what_duckdb_reads_from_a_landed_block(tmp_path):
    """data_type per column is DuckDB's own name for the parquet column the adapter writes, so the
    empty stand-in relation (lake_source()) and a landed block read alike."""
    import yaml

    for city in dbt_311.cities():
        source = load_dataset(city.path)
        schema = getattr(source, "data_schema", None) or source.DATA_SCHEMA
        path = tmp_path / f"{city.source}.parquet"
        pq.write_table(schema.empty_table(), path)
        with duckdb.connect() as con:
            read = [
                (r[0], duckdb_spelling(r[1]))
                for r in con.sql(f"describe select * from read_parquet('{path}')").fetchall()
            ]
        yml = yaml.safe_load(
            (dbt_311.DBT_DIR / "models" / "staging" / city.source / f"_{city.source}__sources.yml").read_text()
        )
        declared = [(c["name"], c["data_type"]) for c in yml["sources"][0]["tables"][0]["columns"]]
        assert declared == read, city.source
        with open(city.path, "rb") as handle:
            kinds = {
                f["name"]: f.get("type", "string")
                for f in (tomllib.load(handle)["adapter"].get("fields") or [])
                if isinstance(f, dict)
            }
        names = {"string": "varchar", "int64": "bigint", "int32": "integer", "float64": "double"}
        for name, kind in kinds.items():
            if kind in names:
                assert dict(declared)[name] == names[kind], (city.source, name)
