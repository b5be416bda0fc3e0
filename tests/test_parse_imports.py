"""What parsing ``dags/`` imports (issue 15, parsing): the module-level import set, not its timing
(bench/parse.py prints the figures).

Every task process parses the DAG file before it runs its task, and the DAG processor parses it
every few seconds; a library imported there and not used costs each of them its import time. The
DAG factory needs each source's spec and the dbt manifest, not the extractors' libraries (pyarrow,
requests), nor an object-storage filesystem (the Amazon provider's S3 hook, boto3) or the plugins
(Cosmos's, with FastAPI) for a manifest on local disk, nor dbt or DuckDB (the tasks import them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from civic_pipelines import sources

ROOT = Path(__file__).resolve().parents[1]

# Loaded by nothing a parse needs. Airflow's own start-up (``import airflow``, the DagBag) loads
# none of them, so finding one after the parse means the DAG files brought it.
NOT_IMPORTED_BY_PARSING = (
    "pyarrow",
    "numpy",
    "pandas",
    "requests",
    "boto3",
    "botocore",
    "s3transfer",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.fs.s3",
    "fastapi",
    "cosmos.plugin.airflow3",
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "duckdb",
    "shapely",
    "pyproj",
    # The extractors themselves: parsing reads the sources' declarations only.
    "civic_pipelines.sources.mds",
    "civic_pipelines.sources.srwr",
    "civic_pipelines.sources.street_manager",
    "civic_pipelines.adapters.socrata",
    "civic_pipelines.adapters.arcgis",
    "civic_pipelines.adapters.ckan",
    "civic_pipelines.http",
    "civic_pipelines.lake",
    "civic_pipelines.extract",
)

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

before = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dags": sorted(bag.dag_ids),
    "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
    "present_before": sorted(m for m in sys.argv[2:] if m in before),
    "present_after": sorted(m for m in sys.argv[2:] if m in sys.modules),
}))
"""


def parse_in_fresh_process(dag_id: str | None = None) -> dict:
    """DagBag of ``dags/`` in a new interpreter (imports are once per process), with Airflow's
    parsing context set to ``dag_id`` the way a task process sets it, when given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("_AIRFLOW_PARSING_CONTEXT")}
    # This checkout's package, whatever the venv's editable install points at.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), *filter(None, [env.get("PYTHONPATH")])])
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
        env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "extract_load"
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(ROOT / "dags"), *NOT_IMPORTED_BY_PARSING],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_parsing_every_dag_imports_nothing_heavy():
    parsed = parse_in_fresh_process()
    assert parsed["import_errors"] == {}
    assert parsed["dags"] == sorted([*sources.names(), "civic_marts"])  # dags/civic_marts.py beside the sources
    assert parsed["present_before"] == [], "Airflow itself loaded these: the check would prove nothing"
    assert parsed["present_after"] == [], f"parsing dags/ imported {parsed['present_after']}"


@pytest.mark.parametrize(
    "dag_id", ["seattle_crime", "mds"]
)  # a dataset-file source; a module source with a PostgreSQL sink
def test_a_task_process_parse_builds_its_dag_only_and_imports_nothing_heavy(dag_id):
    parsed = parse_in_fresh_process(dag_id)
    assert parsed["import_errors"] == {}
    assert parsed["dags"] == [dag_id]
    assert parsed["present_after"] == [], f"parsing {dag_id} imported {parsed['present_after']}"


@pytest.mark.parametrize("name", sources.names())
def test_declared_spec_is_the_loaded_sources_spec(name):
    """The registry's light path (declarations, dataset files' [source] tables) answers exactly
    what loading the source whole answers."""
    assert sources.spec(name) == sources.get(name).SPEC
    assert sources.declares_postgres_tables(name) == bool(getattr(sources.get(name), "POSTGRES_TABLES", None))


def test_mds_declares_its_postgres_mirror_without_being_imported():
    from civic_pipelines.sources import declared, mds

    assert sources.declares_postgres_tables("mds") is True
    assert mds.SPEC is declared.SPECS["mds"] and mds.POSTGRES_TABLES is declared.POSTGRES_TABLES["mds"]


def test_the_manifest_is_parsed_once_per_process_and_again_when_rewritten(tmp_path, monkeypatch):
    """Seven source DAGs each build a Cosmos group from the same manifest: one parse serves them
    all; a manifest rewritten on disk (new mtime) is parsed again."""
    import shutil

    from airflow.sdk import DAG
    from cosmos.dbt.graph import DbtGraph

    from civic_pipelines.orchestration import dbt_group

    project = tmp_path / "dbt"
    shutil.copytree(ROOT / "dbt", project, ignore=shutil.ignore_patterns("logs", "*.duckdb"))
    monkeypatch.setenv("CIVIC_DBT_DIR", str(project))
    monkeypatch.setattr(dbt_group, "_PARSED_MANIFEST", {})
    parsed_paths = []
    cosmos_loader = DbtGraph._load_manifest_from_file

    def counting_loader(graph, path):
        parsed_paths.append(str(path))
        return cosmos_loader(graph, path)

    monkeypatch.setattr(DbtGraph, "_load_manifest_from_file", counting_loader)

    def build(name: str) -> set[str]:
        with DAG(f"manifest_once_{name}_{len(parsed_paths)}", schedule=None) as dag:
            dbt_group.build_dbt_group(sources.spec(name))
        return {task.task_id for task in dag.tasks}

    seattle, toronto = build("seattle_crime"), build("toronto_311")
    assert parsed_paths == [str(project / "target" / "manifest.json")]
    assert "dbt.stg_seattle_crime__offenses_model_build" in seattle and seattle != toronto
    assert DbtGraph._load_manifest_from_file is counting_loader, "the memo must not outlive the group's build"

    manifest = project / "target" / "manifest.json"
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert build("seattle_crime") == seattle
    assert len(parsed_paths) == 2
