"""The 311 DAGs end to end with dag.test(): replay server -> lake -> Cosmos dbt -> DuckDB.

Per source: two months land exactly the replay's requests; a second run with an unchanged
watermark skips every block; after the replay's late edits a run updates the changed rows and
the warehouse still holds one row per request.
"""

from __future__ import annotations

import pytest
from airflow_runs import states_of as states
from dbt_helpers import module_query as query
from replay_env import cities_311, fresh_folder, module_environment

MONTHS = ["2024-02", "2024-03"]


@pytest.fixture(scope="module")
def environment(airflow_db, run_dir):
    with module_environment(fresh_folder(run_dir / "e2e_311"), connections=cities_311) as environment:
        yield environment


def test_minneapolis_lands_skips_and_takes_late_edits(environment):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    server = environment["server"]
    dag = build_source_dag("minneapolis_311", extract_mode="local")
    conf = {"start_month": MONTHS[0], "end_month": MONTHS[1]}

    run = dag.test(run_conf=conf)
    assert run.state == "success"
    want = {f"{month[:4]}-{row['OBJECTID']}" for month in MONTHS for row in server.minneapolis.rows_for_month(month)}
    got = query(environment, "select request_id from stg_minneapolis_311__requests")
    assert len(got) == len(want) > 5000 and {r[0] for r in got} == want

    again = dag.test(run_conf=conf)
    assert states(again, "extract_load") == ["skipped", "skipped"]

    edited = server.minneapolis.apply_late_edits(MONTHS[1], 5)
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    # The layer's watermark moved: the edited month re-landed, the other kept its landing.
    assert states(run, "extract_load") == ["skipped", "success"]
    rows = query(environment, "select request_id, status, closed_at from stg_minneapolis_311__requests")
    assert len(rows) == len({r[0] for r in rows}) == len(want), "one row per request after the re-landing"
    new = {
        row["OBJECTID"]: row for row in server.minneapolis.rows_for_month(MONTHS[1]) if row["OBJECTID"] in set(edited)
    }
    landed = {
        int(r[0].split("-")[1]): r for r in rows if r[0].startswith(MONTHS[1][:4]) and int(r[0].split("-")[1]) in new
    }
    for object_id, row in new.items():
        assert (landed[object_id][2] is None) == (row["CLOSEDDATETIME"] is None), object_id


def test_toronto_lands_skips_and_takes_late_edits(environment):
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    server = environment["server"]
    # Small yearly files keep the test quick; the adapter reads them the same way.
    server.toronto.set_rows_per_year(20_000)
    dag = build_source_dag("toronto_311", extract_mode="local")
    conf = {"start_month": MONTHS[0], "end_month": MONTHS[1]}

    run = dag.test(run_conf=conf)
    assert run.state == "success"
    want = sum(len(server.toronto.rows_for_month(month)) for month in MONTHS)
    per_month = dict(query(environment, "select _block_month, count(*) from stg_toronto_311__requests group by 1"))
    for month in MONTHS:
        assert per_month[month] == len(server.toronto.rows_for_month(month)), month
    assert sum(per_month.values()) == want > 1000

    again = dag.test(run_conf=conf)
    assert states(again, "extract_load") == ["skipped", "skipped"]

    edits = server.toronto.apply_late_edits(2024, MONTHS[1], 5)
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    # The year's file moved: February's content is unchanged (skipped), March re-landed.
    assert states(run, "extract_load") == ["skipped", "success"]
    rows = query(environment, "select request_id, status from stg_toronto_311__requests")
    assert len(rows) == len({r[0] for r in rows}) == want, "one row per request after the re-landing"
    statuses = {r[1] for r in rows}
    assert {edit["new_status"] for edit in edits} <= statuses


def test_nyc_the_configured_city_runs_the_same_dag(environment):
    """The DAG built from nothing but datasets/nyc_311.toml lands, skips and re-lands like the others."""
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    dataset = environment["server"].generated["nyc_311"]
    dag = build_source_dag("nyc_311", extract_mode="local")
    conf = {"start_month": MONTHS[0], "end_month": MONTHS[1]}
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    want = {row["unique_key"] for month in MONTHS for row in dataset.rows_for_month(month)}
    got = query(environment, "select request_id from fct_service_requests where city = 'nyc'")
    assert len(got) == len(want) > 5000 and {r[0] for r in got} == want

    assert states(dag.test(run_conf=conf), "extract_load") == ["skipped", "skipped"]

    edited = dataset.apply_late_edits(MONTHS[1], 4)
    run = dag.test(run_conf=conf)
    assert states(run, "extract_load") == ["skipped", "success"]
    keys = ", ".join(f"'{k}'" for k in edited)
    rows = query(environment, f"select status from fct_service_requests where city = 'nyc' and request_id in ({keys})")
    assert sorted(r[0] for r in rows) == ["Closed"] * 4
    (total,) = query(environment, "select count(*) from fct_service_requests where city = 'nyc'")[0]
    assert total == len(want), "one row per request after the re-landing"
