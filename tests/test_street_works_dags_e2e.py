"""The street-works DAGs end to end with dag.test(): replay server -> lake -> Cosmos dbt -> DuckDB.

Per source: two months land exactly the replay's generated records (Street Manager: every event of
each part's archive; SRWR: every dated activity of the month) and dbt builds the source's models; a
second run with unchanged archives skips every block. Street Manager's test runs in both extract
modes, in a lake and warehouse of each mode's own: in-process (``local``) and with each block in
an extractor container (``docker``, ``tests/docker_mode.py``); the assertions are the same.
"""

from __future__ import annotations

import pytest
from airflow_runs import asset_events, run_marts
from airflow_runs import states_of as states
from dbt_helpers import module_query as query
from docker_mode import MODES, assert_extract_mode, container_engine, use_mode  # noqa: F401 - container_engine is a fixture
from replay_env import fresh_folder, module_environment, street_works

MONTHS = ["2024-02", "2024-03"]
EVENTS = {"permit": 150, "activity": 20, "section_58": 10}
SRWR_ACTIVITIES = 25
TODAY = "2026-11-23"
STAGING = {
    "permit": "stg_street_manager__permit_events",
    "activity": "stg_street_manager__activity_events",
    "section_58": "stg_street_manager__section_58_events",
}


@pytest.fixture(scope="module")
def environment(airflow_db, run_dir):
    replay = street_works(EVENTS, SRWR_ACTIVITIES, TODAY)
    with module_environment(fresh_folder(run_dir / "e2e_street_works"), **replay) as environment:
        yield environment


def dbt_states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances() if ti.task_id.startswith("dbt.")}


@pytest.mark.parametrize("mode", MODES)
def test_street_manager_lands_every_generated_event_then_skips(environment, mode, request, monkeypatch):
    from civic_pipelines.orchestration.dag_factory import build_source_dag
    from civic_pipelines.replay.street_manager import archive_events

    use_mode(request, monkeypatch, mode)
    data = environment["data"] / f"street_manager_{mode}"
    monkeypatch.setenv("CIVIC_LAKE", str(data / "lake"))
    monkeypatch.setenv("CIVIC_WAREHOUSE", str(data / "warehouse.duckdb"))
    environment = {**environment, "data": data}
    archives = environment["server"].street_manager
    dag = build_source_dag("street_manager", extract_mode=mode)
    assert_extract_mode(dag, mode)
    conf = {"start_month": MONTHS[0], "end_month": MONTHS[1]}

    run = dag.test(run_conf=conf)
    assert run.state == "success"
    assert states(run, "extract_load") == ["success"] * 6  # 3 parts x 2 months
    built = dbt_states(run)
    assert built and set(built.values()) == {"success"}, built
    assert any("int_permits_latest" in task for task in built) and any("swa_codes" in task for task in built)

    generated = {}
    for part, view in STAGING.items():
        for month in MONTHS:
            want = {event["event_reference"] for event in archive_events(archives.spec(part, month))}
            got = query(environment, f"select event_reference from {view} where _block_month = '{month}'")
            assert len(got) == len(want) == EVENTS[part] and {r[0] for r in got} == want, (part, month)
            generated[(part, month)] = want
    permits = {
        event["object_reference"] for month in MONTHS for event in archive_events(archives.spec("permit", month))
    }
    (rows, distinct) = query(
        environment, "select count(*), count(distinct permit_reference_number) from int_permits_latest"
    )[0]
    assert rows == distinct == len(permits)
    # Blocks and the incremental intermediates are the Assets civic_marts runs on; it builds the marts.
    assert asset_events(run) == {
        "x-civic://lake/street_manager": 6,
        "x-civic://warehouse/int_permit_months": 1,
        "x-civic://warehouse/int_permits_latest": 1,
    }
    assert not any("mart_" in task for task in built), built
    marts_run, marts = run_marts("street_manager")
    assert marts_run.state == "success"
    assert {m for m, state in marts.items() if state == "success"} == {
        "mart_collaborative_works",
        "mart_emergency_works",
        "mart_new_connections",
        "mart_permits_per_street",
        "mart_street_impact",
        "mart_works_by_month",
    }, marts
    (counted,) = query(environment, "select sum(permits) from mart_works_by_month")[0]
    (staged,) = query(
        environment,
        """select count(distinct (permit_reference_number, _block_month))
                                      from stg_street_manager__permit_events where not is_test_data""",
    )[0]
    assert counted == staged > 0

    again = dag.test(run_conf=conf)
    assert states(again, "extract_load") == ["skipped"] * 6
    assert set(dbt_states(again).values()) == {"skipped"}, "nothing landed: dbt does not run"
    assert asset_events(again) == {}, "nothing landed: no Asset changed, civic_marts is not queued"
    (rows,) = query(environment, "select count(*) from stg_street_manager__permit_events")[0]
    assert rows == sum(len(generated[("permit", month)]) for month in MONTHS)


def test_srwr_lands_every_dated_activity_then_skips(environment):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    dataset = environment["server"].srwr
    dag = build_source_dag("srwr", extract_mode="local")
    conf = {"start_month": MONTHS[0], "end_month": MONTHS[1]}

    run = dag.test(run_conf=conf)
    assert run.state == "success"
    assert states(run, "extract_load") == ["success", "success"]
    built = dbt_states(run)
    assert built and set(built.values()) == {"success"}, built
    assert asset_events(run) == {"x-civic://lake/srwr": 2}
    marts_run, marts = run_marts("srwr")
    assert marts_run.state == "success"
    assert {m for m, state in marts.items() if state == "success"} == {"mart_srwr_activity_summary"}, marts

    for month in MONTHS:
        year, number = (int(x) for x in month.split("-"))
        # the block rule (docs/lake_contract_srwr.md): undated activities land in a year file's
        # January block, so the replay's own view of the block is the reference
        want = {fields[2] for fields in dataset.expected_month(month).get("001", [])}
        got = query(environment, f"select activity_id from stg_srwr__activities where _block_month = '{month}'")
        assert len(got) == len(want) > 0 and {r[0] for r in got} == want, month
    (summarised,) = query(environment, "select sum(activities) from mart_srwr_activity_summary")[0]
    (landed,) = query(environment, "select count(*) from stg_srwr__activities")[0]
    assert summarised == landed

    again = dag.test(run_conf=conf)
    assert states(again, "extract_load") == ["skipped", "skipped"]
    assert set(dbt_states(again).values()) == {"skipped"}
    assert asset_events(again) == {}
