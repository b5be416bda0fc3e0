"""Real Airflow DAG runs of a few sources, fast: a DAG folder of the test's own that builds only the
DAGs under test with the project's factory (``dag.test()`` re-parses the whole DAG bundle on every
call; the project's folder builds every source's DAG and its Cosmos group, several seconds each
time), and helpers to read what a run left in the metadata database."""

from __future__ import annotations

import json
from pathlib import Path

ONE_DAG = '''"""The Airflow DAGs named in $CIVIC_TEST_DAGS, built by the project's factory (a test's DAG folder)."""
import os

from civic_pipelines.orchestration.dag_factory import build_source_dag

for _name in os.environ["CIVIC_TEST_DAGS"].split(","):
    globals()[_name] = build_source_dag(_name, extract_mode="local")
'''


def small_dags_folder(folder: Path, names: list[str]) -> dict:
    """Write the folder and return the environment that makes it the ``dags-folder`` bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "civic_test_dags.py").write_text(ONE_DAG)
    bundles = [{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder)}}]
    return {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder), "CIVIC_TEST_DAGS": ",".join(names)}


def task_states(run) -> dict:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def run_rows(run_id: str, dag_id: str) -> dict:
    """Every XCom value and rendered template field the run stored, as JSON text per task instance."""
    from sqlalchemy import select

    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.execute(select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value)
                                .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)).all()
        rendered = session.execute(select(RTIF.task_id, RTIF.map_index, RTIF.rendered_fields)
                                   .where(RTIF.dag_id == dag_id, RTIF.run_id == run_id)).all()
    return {
        "xcom": {f"{t}[{m}].{k}": json.dumps(v, default=str) for t, m, k, v in xcoms},
        "rendered": {f"{t}[{m}]": json.dumps(v, default=str) for t, m, v in rendered},
    }
