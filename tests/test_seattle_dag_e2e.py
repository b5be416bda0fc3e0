"""The Seattle DAG end to end with dag.test(): replay server -> lake -> Cosmos dbt -> DuckDB.

The tests in this module share one lake and one warehouse and run in order: first landing,
unchanged re-run, forced re-landing, dry run, bad params. They run twice, once per extract mode:
in-process (``local``) and with each block in an extractor container (``docker``, through
podman's Docker API: ``tests/docker_mode.py``); the assertions are the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from airflow_runs import asset_events, run_marts, task_states
from dbt_helpers import module_query as warehouse_query
from docker_mode import MODES, assert_extract_mode, container_engine, use_mode  # noqa: F401 - container_engine is a fixture
from replay_env import connection_env, fresh_folder, module_environment

MONTHS = ["2024-01", "2024-02"]
# Every test, once per extract mode; module scope: one lake per mode, the tests in order.
pytestmark = pytest.mark.parametrize("mode", MODES, scope="module")


@pytest.fixture(scope="module")
def environment(airflow_db, run_dir, mode, request):
    """A fresh lake and warehouse, and the replay server, for the whole module (per mode)."""
    data = fresh_folder(run_dir / f"e2e_seattle_{mode}")
    with pytest.MonkeyPatch.context() as patch:
        use_mode(request, patch, mode)
        with module_environment(
            data,
            connections=lambda server: connection_env(server, "civic_seattle_crime"),
            CIVIC_DBT_FRESHNESS=str(data / "dbt_freshness"),
        ) as environment:
            yield environment


@pytest.fixture(scope="module")
def dag(environment, mode):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    dag = build_source_dag("seattle_crime", extract_mode=mode)
    assert_extract_mode(dag, mode)
    return dag


def expected_ids(environment, months):
    dataset = environment["server"].dataset
    return {int(row["offense_id"]) for month in months for row in dataset.rows_for_month(month)}


def test_two_months_land_exactly_the_replay_rows(dag, environment):
    run = dag.test(run_conf={"start_month": MONTHS[0], "end_month": MONTHS[1]})
    assert run.state == "success", task_states(run)
    assert task_states(run)[("source_freshness", -1)] == "success"
    want = expected_ids(environment, MONTHS)
    got = {row[0] for row in warehouse_query(environment, "select offense_id from fct_crime_offenses")}
    assert len(want) > 5000
    assert got == want
    (count,) = warehouse_query(environment, "select count(*) from fct_crime_offenses")[0]
    assert count == len(want)
    per_month = dict(warehouse_query(environment, "select _block_month, count(*) from fct_crime_offenses group by 1"))
    for month in MONTHS:
        assert per_month[month] == len(environment["server"].dataset.rows_for_month(month))
    # Each landed block updated the lake's Asset, the fact's task the fact's: what schedules civic_marts.
    assert asset_events(run) == {
        "x-civic://lake/seattle_crime": len(MONTHS),
        "x-civic://warehouse/fct_crime_offenses": 1,
    }
    # The marts are civic_marts' to build, not the source run's.
    assert not warehouse_query(environment, "select 1 from information_schema.tables where table_name like 'mart_%'")
    marts_run, marts = run_marts("seattle_crime")
    assert marts_run.state == "success", task_states(marts_run)
    assert {m for m, state in marts.items() if state == "success"} == {"mart_crime_by_area", "mart_crime_monthly"}
    assert {state for m, state in marts.items() if not m.startswith("mart_crime")} == {"skipped"}
    # The marts agree with the fact.
    (mart_total,) = warehouse_query(environment, "select sum(offenses) from mart_crime_monthly")[0]
    assert mart_total == len(want)
    lake = Path(os.environ["CIVIC_LAKE"]) / "seattle_crime"
    assert sorted(p.name for p in lake.iterdir()) == [f"month={m}" for m in MONTHS]


def test_source_freshness_ran_after_the_models_and_shows_on_the_card(dag, environment):
    """The first run's source_freshness task (after the dbt models) graded the lake table: just
    landed, so pass, with its age; the dashboard's Seattle card shows it."""
    import dashboard_warehouse as dw

    kept = json.loads((environment["data"] / "dbt_freshness" / "seattle_crime.json").read_text())
    (offenses,) = kept["results"]
    assert offenses["table"] == "offenses" and offenses["status"] == "pass", offenses
    assert 0 <= offenses["age_seconds"] < 3600
    data = environment["data"]
    with dw.client_without_build(data, dbt_freshness=data / "dbt_freshness") as client:
        cards = dw.overview_cards(client)
    card = cards["seattle_crime"]
    assert card["dbt_freshness_status"] == "pass" and card["dbt_freshness"][0]["age"], card["dbt_freshness"]
    assert card["months"] == MONTHS


def test_unchanged_source_skips_every_block_and_keeps_the_counts(dag, environment):
    before = warehouse_query(environment, "select count(*), max(_landed_at) from fct_crime_offenses")[0]
    run = dag.test(run_conf={"start_month": MONTHS[0], "end_month": MONTHS[1]})
    states = task_states(run)
    extract_states = [state for (task_id, _), state in states.items() if task_id == "extract_load"]
    assert extract_states == ["skipped", "skipped"], states
    assert states[("source_freshness", -1)] == "success", "an unchanged source is still checked for freshness"
    after = warehouse_query(environment, "select count(*), max(_landed_at) from fct_crime_offenses")[0]
    assert after == before


def test_force_relands_and_late_edits_replace_rows(dag, environment):
    dataset = environment["server"].dataset
    edited = dataset.apply_late_edits(MONTHS[1], 5)
    manifest_path = Path(os.environ["CIVIC_LAKE"]) / "seattle_crime" / f"month={MONTHS[0]}" / "_manifest.json"
    landed_before = json.loads(manifest_path.read_text())["landed_at"]
    run = dag.test(run_conf={"start_month": MONTHS[0], "end_month": MONTHS[1], "force": True})
    assert run.state == "success", task_states(run)
    assert json.loads(manifest_path.read_text())["landed_at"] != landed_before
    want = expected_ids(environment, MONTHS)
    rows = warehouse_query(environment, "select offense_id from fct_crime_offenses")
    assert len(rows) == len(want) and {r[0] for r in rows} == want, "one row per offense after a re-landing"
    new_values = {int(r["offense_id"]): r for r in dataset.rows_for_month(MONTHS[1]) if r["offense_id"] in set(edited)}
    ids = ",".join(str(i) for i in new_values)
    got = dict(
        warehouse_query(environment, f"select offense_id, offense from fct_crime_offenses where offense_id in ({ids})")
    )
    for offense_id, row in new_values.items():
        assert got[offense_id] == row.get("offense"), "the late edit replaced the old row"


def test_dry_run_writes_nothing(dag, environment):
    lake = Path(os.environ["CIVIC_LAKE"]) / "seattle_crime"
    before = sorted(p.name for p in lake.iterdir())
    requests_before = len(environment["server"].state.requests)
    run = dag.test(run_conf={"start_month": "2023-05", "end_month": "2023-06", "dry_run": True})
    assert run.state == "success"
    assert task_states(run)[("source_freshness", -1)] == "skipped"
    assert sorted(p.name for p in lake.iterdir()) == before
    assert len(environment["server"].state.requests) == requests_before, "a dry run fetches nothing"


@pytest.mark.parametrize(
    "conf,message",
    [
        ({"start_month": "2024-03", "end_month": "2024-01"}, "end_month 2024-01 is before start_month 2024-03"),
        ({"start_month": "2024-01", "end_month": "2099-01"}, "is not complete yet"),
        ({"start_month": "2008-01", "end_month": "2030-01"}, "is not complete yet"),
        (
            {"start_month": "2008-01", "end_month": "2026-01"},
            "217 months requested (2008-01..2026-01); the limit is 120 blocks per run",
        ),
    ],
)
def test_bad_params_fail_in_planning_with_the_message(dag, environment, conf, message, capfd):
    requests_before = len(environment["server"].state.requests)
    run = dag.test(run_conf=conf)
    assert run.state == "failed"
    states = task_states(run)
    assert states[("plan_blocks", -1)] == "failed"
    assert states[("source_freshness", -1)] == "upstream_failed", "the last task does not hide the failure"
    out, err = capfd.readouterr()
    assert message in out + err
    assert len(environment["server"].state.requests) == requests_before, "nothing was extracted"


def test_malformed_month_is_refused_by_the_params_schema(dag):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.test(run_conf={"start_month": "2024-1", "end_month": "2024-02"})
