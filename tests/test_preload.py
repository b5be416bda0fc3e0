"""The executor's preload: which processes build the DAGs before forking, and that a process forked
after the warm-up has the DAG file's imports already loaded and parses the one DAG it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from civic_pipelines.orchestration import backfill
from civic_pipelines.orchestration.preload import forks_tasks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/airflow", "scheduler"], True),
        (["/venv/bin/airflow", "scheduler", "--skip-serve-logs"], True),
        (["airflow", "celery", "worker", "--concurrency", "2"], True),
        (["/venv/bin/airflow", "dag-processor"], False),  # the DAGs it shows must follow the files
        (["/venv/bin/airflow", "api-server", "--port", "8080"], False),
        (["/venv/bin/airflow", "db", "migrate"], False),
        (["/venv/bin/python", "-m", "pytest"], False),
    ],
)
def test_only_the_processes_that_fork_tasks_warm_the_dag_parse(argv, expected):
    assert forks_tasks(argv, environ={}) is expected


def test_civic_preload_dags_overrides_the_process_kind():
    assert forks_tasks(["airflow", "scheduler"], environ={"CIVIC_PRELOAD_DAGS": "0"}) is False
    assert forks_tasks(["python", "worker.py"], environ={"CIVIC_PRELOAD_DAGS": "1"}) is True


CHILD = r"""
import json, os, sys
from civic_pipelines.orchestration.preload import preload

preload(warm_dag_parse=True)
assert "cosmos" not in sys.modules  # nothing built yet: the warm-up waits for the first fork
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    inherited = {name: name in sys.modules for name in
                 ("cosmos", "civic_pipelines.orchestration.dag_factory", "civic_pipelines.orchestration.dbt_group")}
    import gc
    import cosmos.dbt.runner
    from civic_pipelines.orchestration import dbt_preparsed

    manifest = dbt_preparsed.current_manifest()
    dbt = {"manifest_nodes": len(manifest.nodes) if manifest is not None else 0,
           "runner_has_it": cosmos.dbt.runner.get_runner([print]).manifest is manifest,
           "frozen_objects": gc.get_freeze_count()}
    os.environ["CIVIC_WAREHOUSE"] = os.environ["CIVIC_DATA_DIR"] + "/other.duckdb"  # other paths: dbt parses itself
    dbt["manifest_for_other_paths"] = dbt_preparsed.current_manifest() is not None
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = "seattle_crime"
    os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "extract_load"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1], safe_mode=False, load_op_links=False)
    result = {"inherited": inherited, "dags": sorted(bag.dags), "errors": {k: str(v) for k, v in bag.import_errors.items()},
              "tasks": len(bag.dags["seattle_crime"].task_dict) if "seattle_crime" in bag.dags else 0, "dbt": dbt}
    os.write(write, json.dumps(result).encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
result = json.loads(os.read(read, 1 << 20).decode())
import gc
result["parent_frozen_objects"] = gc.get_freeze_count()  # unfrozen after the fork: its garbage is still collected
print(json.dumps(result))
"""


def test_a_task_forked_after_the_warm_up_inherits_the_dag_files_imports(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "CIVIC_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "CIVIC_DATA_DIR": str(tmp_path / "data"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "dags" / "civic_sources.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["inherited"] == {
        "cosmos": True,
        "civic_pipelines.orchestration.dag_factory": True,
        "civic_pipelines.orchestration.dbt_group": True,
    }
    assert result["errors"] == {}
    assert result["dags"] == ["seattle_crime"]  # the task's own DAG, built from the file, not the warm-up's
    assert result["tasks"] > 3  # plan_blocks, extract_load, the dbt nodes, source_freshness
    # dbt's project, parsed once before the fork, is what Cosmos's runner hands dbt in the child
    # (while the project's files and paths are those it was parsed with), and the inherited objects
    # are frozen out of the child's garbage collections
    assert result["dbt"]["manifest_nodes"] > 100
    assert result["dbt"]["runner_has_it"] is True
    assert result["dbt"]["manifest_for_other_paths"] is False
    assert result["dbt"]["frozen_objects"] > 100_000
    assert result["parent_frozen_objects"] == 0


def test_the_local_settings_file_calls_the_preload(tmp_path):
    path = backfill.write_local_settings(tmp_path / "airflow")
    assert path == tmp_path / "airflow" / "config" / "airflow_local_settings.py"
    assert "preload()" in path.read_text()
    compile(path.read_text(), str(path), "exec")
    settings = backfill.airflow_settings()
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert settings["AIRFLOW__CORE__PARALLELISM"] == str(backfill.BACKFILL_PARALLELISM)
    # the supervisor's longest wait on a task that has closed its sockets before it exits: a
    # setting Airflow reads, at the least it accepts (an integer, 0 would busy-loop the supervisor)
    from airflow.configuration import conf

    assert conf.has_option("workers", "min_heartbeat_interval")
    assert settings["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] == "1"


def test_the_backfill_pools_give_each_mds_provider_its_slots_and_keep_one_duckdb_writer():
    from civic_pipelines import sources

    table = backfill.pools(sources.names())
    assert table["duckdb_writer"]["slots"] == 1
    # each provider is an API of its own: the spec's slots (2 blocks against one API) per provider
    assert len(sources.parts("mds")) == 4
    assert table["civic_mds_api"]["slots"] == sources.spec("mds").pool_slots * 4 == 8
    for name in sources.names():
        if name != "mds":
            assert table[sources.spec(name).pool]["slots"] == sources.spec(name).pool_slots
    assert backfill.pools(["mds"], parts={"mds": 1})["civic_mds_api"]["slots"] == sources.spec("mds").pool_slots
    assert set(backfill.pools(["seattle_crime"])) == {"duckdb_writer", "civic_seattle_crime_api"}
