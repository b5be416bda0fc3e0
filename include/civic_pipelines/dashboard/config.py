"""Where the dashboard reads from: every path from the project's settings or an environment variable.

| variable | default | what |
|---|---|---|
| `CIVIC_WAREHOUSE` | `<data>/warehouse.duckdb` | the DuckDB warehouse (read through snapshots, see warehouse.py) |
| `CIVIC_LAKE` | `<data>/lake` | the lake, for the block manifests on the overview |
| `CIVIC_DBT_MANIFEST` | `dbt/target/manifest.json` | model descriptions for the "which model feeds this chart" links, test-to-source mapping |
| `CIVIC_DBT_RUN_RESULTS` | `dbt/target/run_results.json` | a dbt `run_results.json`, or a folder searched for them (newest result per test wins) |
| `CIVIC_DBT_FRESHNESS` | `<data>/dbt_freshness` | each source's latest `dbt source freshness` result, `<source>.json` (written by the DAGs' `source_freshness` task) |
| `CIVIC_DBT_RESULTS` | `<data>/dbt_results` | each source's latest dbt model and test results, `<source>.json` (kept by the DAGs' dbt tasks); a source's card shows these tests rather than those of `CIVIC_DBT_RUN_RESULTS` |
| `CIVIC_BOUNDARIES` | `<data>/boundaries` | drop-in boundary GeoJSON files, `<city>.geojson` (see boundaries.py) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from civic_pipelines import settings


@dataclass(frozen=True)
class DashboardConfig:
    warehouse: str
    lake: str
    dbt_manifest: Path
    dbt_run_results: Path
    boundaries: Path
    dbt_freshness: Path | None = None
    dbt_results: Path | None = None

    @classmethod
    def from_env(cls) -> DashboardConfig:
        target = settings.dbt_project_dir() / "target"
        return cls(
            warehouse=settings.warehouse_path(),
            lake=settings.lake_url(),
            dbt_manifest=Path(os.environ.get("CIVIC_DBT_MANIFEST", target / "manifest.json")),
            dbt_run_results=Path(os.environ.get("CIVIC_DBT_RUN_RESULTS", target / "run_results.json")),
            boundaries=Path(os.environ.get("CIVIC_BOUNDARIES", settings.data_dir() / "boundaries")),
            dbt_freshness=settings.freshness_dir(),
            dbt_results=settings.dbt_results_dir(),
        )
