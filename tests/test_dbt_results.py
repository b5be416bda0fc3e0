"""The dbt test results of a source's DAG on its health card (issue 15, item 6), and a failed node's
retry re-running that node (item 2).

A real DAG run (``dag.test()``) of the Seattle source's dbt task group on a lake landed from the
replay server: every dbt invocation keeps its models' and tests' results in
``$CIVIC_DBT_RESULTS/seattle_crime.json``, and the dashboard's Seattle card shows the pass / fail /
warn counts with the tests' names. Then the lake is broken on purpose (one offense landed twice:
``unique`` fails; one unknown crime category: ``accepted_values``, severity warn, warns): the staging
node fails after its retries, each retry re-running the node, and the card names the failing test.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replay_env import connection_env, fresh_folder, module_environment

MONTH = "2024-01"
STAGING = "stg_seattle_crime__offenses"
UNIQUE = "unique_stg_seattle_crime__offenses_offense_id"
CATEGORY = "accepted_values_stg_seattle_crime__offenses_crime_against_category__PERSON__PROPERTY__SOCIETY__NOT_A_CRIME"


@pytest.fixture(scope="module")
def environment(airflow_db, run_dir):
    from civic_pipelines.extract import run_block

    data = fresh_folder(run_dir / "dbt_results_e2e")
    with module_environment(
        data,
        connections=lambda server: connection_env(server, "civic_seattle_crime"),
        CIVIC_DBT_RESULTS=str(data / "dbt_results"),
    ) as environment:
        manifest = run_block("seattle_crime", MONTH)
        assert manifest["rows"] > 1000, manifest
        yield {**environment, "rows": manifest["rows"]}


DAG_FILE = '''"""The Seattle DAG's dbt task group alone (the lake is landed already), retried at once."""
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from civic_pipelines import sources
from civic_pipelines.orchestration.dbt_group import build_dbt_group

for _dag_id in ("dbt_results_clean", "dbt_results_broken"):
    with DAG(_dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             default_args={"retry_delay": timedelta(seconds=0)}) as _dag:
        build_dbt_group(sources.spec("seattle_crime"), execution="per_node")
    globals()[_dag_id] = _dag
'''


@pytest.fixture(scope="module")
def dags(environment, run_dir):
    """The DAG file above as the ``dags-folder`` bundle (``dag.test()`` runs what the bundle holds)."""
    import importlib.util

    from airflow_runs import small_dags_folder

    folder = environment["data"] / "dags"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in small_dags_folder(folder, []).items():
            patch.setenv(key, value)
        (folder / "civic_test_dags.py").write_text(DAG_FILE)
        spec = importlib.util.spec_from_file_location("dbt_results_dags", folder / "civic_test_dags.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def card(environment) -> tuple[dict, str]:
    import dashboard_warehouse as dw

    data = environment["data"]
    with dw.client_without_build(
        data, dbt_freshness=data / "dbt_freshness", dbt_results=data / "dbt_results"
    ) as client:
        cards = dw.overview_cards(client)
        html = client.get("/civic/").text
    return cards["seattle_crime"], html


def kept(environment) -> dict:
    return json.loads((environment["data"] / "dbt_results" / "seattle_crime.json").read_text())["nodes"]


def states(run) -> dict:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


def test_a_run_keeps_its_tests_and_the_card_shows_them(environment, dags):
    run = dags.dbt_results_clean.test()
    assert run.state == "success", states(run)
    nodes = kept(environment)
    tests = {n["name"]: n for n in nodes.values() if n["resource_type"] == "test"}
    models = {n["name"]: n for n in nodes.values() if n["resource_type"] == "model"}
    # The source's own layers: its marts are civic_marts' (kept under that name).
    assert {STAGING, "fct_crime_offenses"} <= set(models) and not any(m.startswith("mart_") for m in models), sorted(
        models
    )
    assert all(m["status"] == "success" and m["run_id"] == run.run_id for m in models.values()), models
    assert tests[UNIQUE]["status"] == "pass" and tests[UNIQUE]["failures"] == 0
    assert tests[UNIQUE]["models"] == [STAGING]
    assert tests[UNIQUE]["task_id"] == f"dbt.{STAGING}_model_build"
    assert all(t["status"] == "pass" for t in tests.values()), {n: t["status"] for n, t in tests.items()}
    assert all(t["execution_time"] > 0 for t in nodes.values())

    seattle, html = card(environment)
    assert seattle["tests_from"] == "dag"
    assert seattle["tests_total"] == len(tests) > 5
    assert seattle["tests_passed"] == len(tests)
    assert seattle["tests_failed"] == [] and seattle["tests_warned"] == []
    assert f'data-tests-passed="{len(tests)}"' in html and 'data-tests-failed="0"' in html
    assert "no results for this source" in html  # the other sources' cards: their DAGs did not run


def test_a_failing_test_fails_its_node_each_retry_reruns_it_and_the_card_names_it(environment, dags):
    block = environment["data"] / "lake" / "seattle_crime" / f"month={MONTH}" / "data.parquet"
    table = pq.read_table(block)
    category = table.column("crime_against_category").to_pylist()
    category[1] = "ALIENS"  # not an accepted value: a warning, the node still passes on it
    table = table.set_column(
        table.schema.get_field_index("crime_against_category"),
        "crime_against_category",
        pa.array(category, table.schema.field("crime_against_category").type),
    )
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), block)  # one offense twice: unique fails

    run = dags.dbt_results_broken.test()
    assert run.state == "failed"
    got = states(run)
    # The staging node failed after its two retries, each a new `dbt build` of that node.
    assert got[f"dbt.{STAGING}_model_build"] == ("failed", 3), got
    assert got["dbt.fct_crime_offenses_model_build"][0] == "upstream_failed", got
    tests = {n["name"]: n for n in kept(environment).values() if n["resource_type"] == "test"}
    assert tests[UNIQUE]["status"] == "fail" and tests[UNIQUE]["failures"] == 1, tests[UNIQUE]
    assert tests[UNIQUE]["run_id"] == run.run_id
    assert tests[CATEGORY]["status"] == "warn" and tests[CATEGORY]["failures"] == 1, tests[CATEGORY]

    seattle, html = card(environment)
    (failed,) = seattle["tests_failed"]
    assert failed == {"test": UNIQUE, "failures": 1, "models": [STAGING]}
    (warned,) = seattle["tests_warned"]
    assert warned["test"] == CATEGORY and warned["failures"] == 1
    assert seattle["tests_passed"] == seattle["tests_total"] - 2
    assert 'data-tests-failed="1"' in html and f'data-test-failed="{UNIQUE}"' in html
    assert f"{UNIQUE} <small>on {STAGING}</small>: 1 failing rows" in html
