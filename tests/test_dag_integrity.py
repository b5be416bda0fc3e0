"""DagBag integrity (the Astro template's checks) plus the schedule's data intervals."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from airflow_runs import MARTS_INPUT_TABLES

from civic_pipelines import sources


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder="dags")
    bag.parse_seconds = time.monotonic() - started
    return bag


def test_no_import_errors_and_one_dag_per_source(dagbag):
    assert dagbag.import_errors == {}
    assert set(sources.names()) | {"civic_marts"} <= set(dagbag.dag_ids)
    print(f"DagBag parse: {dagbag.parse_seconds:.2f} s for {len(dagbag.dag_ids)} DAG(s)")
    assert dagbag.parse_seconds < 30, "Airflow's DAG import timeout is 30 s"


@pytest.mark.parametrize("dag_id", sources.names())
def test_dag_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "civic" in dag.tags
    assert dag.doc_md and dag_id in dag.doc_md or sources.spec(dag_id).title in dag.doc_md
    assert dag.catchup is True
    assert dag.max_active_runs <= 4
    for task in dag.tasks:
        assert task.retries >= 2, f"{task.task_id} has retries={task.retries}"
        assert task.retry_exponential_backoff, task.task_id
    for name in ("start_month", "end_month", "force", "dry_run"):
        param = dag.params.get_param(name)
        assert param.schema.get("type"), f"param {name} has no JSON schema type"
        assert param.schema.get("title") and param.description, name
    extract = dag.get_task("extract_load")
    assert extract.pool == sources.spec(dag_id).pool
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.")]
    assert dbt_tasks and all(t.pool == "duckdb_writer" for t in dbt_tasks)
    assert dag.get_task("plan_blocks").downstream_task_ids == {"extract_load"}
    # A manifest, a sync summary, a freshness report: each one XCom. multiple_outputs (which
    # TaskFlow infers from a ``-> dict`` annotation) would push every key as an XCom of its own,
    # one Execution API call and metadata write each, in every mapped block.
    fanned_out = [t.task_id for t in dag.tasks if getattr(t, "multiple_outputs", False)]
    assert fanned_out == [], fanned_out


@pytest.mark.parametrize("dag_id", sources.names())
def test_failures_notify_and_nothing_runs_forever(dagbag, dag_id):
    """Issue 14 item 8: every task mails its failure, so does a run that fails without one (timed
    out); a run and each extract block have a time limit; source freshness runs after the models."""
    from datetime import timedelta

    from civic_pipelines.orchestration.notify import FailureNotifier, RunFailureNotifier

    dag = dagbag.dags[dag_id]
    run_callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    assert any(isinstance(c, RunFailureNotifier) for c in run_callbacks), dag.on_failure_callback
    assert dag.dagrun_timeout and dag.dagrun_timeout <= timedelta(days=2)
    for task in dag.tasks:
        callbacks = (
            task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
        )
        assert any(type(c) is FailureNotifier for c in callbacks), f"{task.task_id} does not notify on failure"
    extract = dag.get_task("extract_load")
    assert extract.execution_timeout and extract.execution_timeout <= dag.dagrun_timeout
    freshness = dag.get_task("source_freshness")
    assert freshness.pool == "duckdb_writer" and freshness.trigger_rule == "none_failed"
    dbt_tasks = {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")}
    assert freshness.upstream_task_ids and freshness.upstream_task_ids <= dbt_tasks


def test_timeouts_are_configurable_per_source(monkeypatch):
    from datetime import timedelta

    from civic_pipelines.orchestration.dag_factory import dagrun_timeout, extract_timeout

    assert extract_timeout("seattle_crime") == timedelta(minutes=120)
    assert dagrun_timeout("seattle_crime") == timedelta(hours=24)
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_EXTRACT_TIMEOUT_MINUTES", "30")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_NYC_311_EXTRACT_TIMEOUT_MINUTES", "90")
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_DAGRUN_TIMEOUT_HOURS", "6")
    assert extract_timeout("seattle_crime") == timedelta(minutes=30)
    assert extract_timeout("nyc_311") == timedelta(minutes=90)
    assert dagrun_timeout("toronto_311") == timedelta(hours=6)
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_EXTRACT_TIMEOUT_MINUTES", "soon")
    with pytest.raises(ValueError, match="civic_extract_timeout_minutes must be a number of minutes"):
        extract_timeout("seattle_crime")


def test_monthly_data_intervals_cover_the_previous_month(dagbag):
    from airflow.timetables.base import DataInterval, TimeRestriction

    from civic_pipelines.months import plan_months

    dag = dagbag.dags["seattle_crime"]
    september = DataInterval(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=september,
        restriction=TimeRestriction(earliest=datetime(2008, 1, 1, tzinfo=UTC), latest=None, catchup=True),
    )
    assert info.run_after == datetime(2026, 11, 1, tzinfo=UTC)
    assert info.data_interval.start == datetime(2026, 10, 1, tzinfo=UTC)
    assert info.data_interval.end == datetime(2026, 11, 1, tzinfo=UTC)
    months = plan_months(
        None,
        None,
        info.data_interval.start,
        info.data_interval.end,
        first_month="2008-01",
        max_blocks=12,
        now=datetime(2026, 11, 1, 0, 5, tzinfo=UTC),
    )
    assert months == ["2026-10"]


def test_first_catchup_run_is_the_first_month(dagbag):
    from airflow.timetables.base import TimeRestriction

    dag = dagbag.dags["seattle_crime"]
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    assert info.data_interval.start == dag.start_date
    assert info.data_interval.start.strftime("%Y-%m") == sources.spec("seattle_crime").first_month


def test_astro_settings_have_every_sources_connection_and_pool():
    """`astro dev start` loads airflow_settings.yaml: each source needs its connection (pointing
    at the real endpoint) and its API pool there, plus the dbt writer pool; nothing that points at
    what does not exist (MDS zones, a PostgreSQL mirror): those are commented examples."""
    from pathlib import Path
    from urllib.parse import urlsplit

    import yaml

    settings = yaml.safe_load((Path(__file__).resolve().parent.parent / "airflow_settings.yaml").read_text())["airflow"]
    connections = {c["conn_id"]: c for c in settings["connections"]}
    pools = {p["pool_name"] for p in settings["pools"]}
    assert "duckdb_writer" in pools
    for spec in sources.specs():
        assert spec.pool in pools, spec.name
        if spec.parts_param:  # one connection per part (MDS providers): none until the user has one
            # (a provider without its connection is skipped; one pointing at a placeholder fails)
            assert not [c for c in connections if c.startswith(f"{spec.conn_id}_")], spec.name
            continue
        connection = connections[spec.conn_id]
        assert connection["conn_host"] == urlsplit(spec.default_base_url).hostname, spec.name
        assert connection["conn_schema"] == "https" and not connection.get("conn_password"), spec.name
    # No PostgreSQL mirror until the user has a database: sync_postgres skips while it is absent.
    assert "civic_postgres" not in connections


def _dbt_nodes(dag, group: str) -> set[str]:
    """The dbt nodes (models and seeds) a DAG's Cosmos group builds, one ``<node>_<kind>_build`` task each."""
    import re

    built = {
        re.fullmatch(rf"{group}\.(.+)_(model|seed)_build", t.task_id)
        for t in dag.tasks
        if t.task_id.startswith(f"{group}.")
    }
    assert None not in built, [t.task_id for t in dag.tasks if t.task_id.startswith(f"{group}.")]
    return {match.group(1) for match in built}


def _manifest_nodes() -> dict[str, set[str]]:
    import json

    from civic_pipelines.orchestration.dbt_group import manifest_path

    nodes = json.loads(manifest_path().read_text())["nodes"].values()
    return {n["name"]: set(n["tags"]) for n in nodes if n["resource_type"] in ("model", "seed")}


@pytest.mark.parametrize("dag_id", sources.names())
def test_source_dags_build_their_own_layers_and_no_mart(dagbag, dag_id):
    """Issue 15 item 3: a source's DAG builds its seeds, staging, intermediate and fact models (named
    ``fct_*``), never a ``mart_*``: those are civic_marts', built once after a catchup."""
    tag = sources.spec(dag_id).dbt_tag or dag_id
    built = _dbt_nodes(dagbag.dags[dag_id], "dbt")
    assert not {name for name in built if name.startswith("mart_")}, built
    own = {name for name, tags in _manifest_nodes().items() if tag in tags and not name.startswith("mart_")}
    assert built == own


@pytest.mark.parametrize("dag_id", sources.names())
def test_source_dags_emit_their_lake_and_table_assets(dagbag, dag_id):
    """Each landed block updates the source's lake Asset; the task that builds each of the source's
    incremental tables (its facts, Street Manager's int_permit_*) updates that table's Asset."""
    dag = dagbag.dags[dag_id]
    assert [a.uri for a in dag.get_task("extract_load").outlets] == [f"x-civic://lake/{dag_id}"]
    producers = {a.uri: t.task_id for t in dag.tasks for a in t.outlets if t.task_id != "extract_load"}
    tag = sources.spec(dag_id).dbt_tag or dag_id
    tables = {
        "seattle_crime": ["fct_crime_offenses"],
        "mds": ["fct_mobility_trips"],
        "street_manager": ["int_permit_months", "int_permits_latest"],
        "srwr": [],
    }.get(tag, ["fct_service_requests"])
    assert producers == {f"x-civic://warehouse/{t}": f"dbt.{t}_model_build" for t in tables}


def test_marts_dag_builds_exactly_the_marts_on_the_sources_assets(dagbag):
    from airflow.sdk.definitions.asset import AssetAny

    dag = dagbag.dags["civic_marts"]
    marts = {name for name in _manifest_nodes() if name.startswith("mart_")}
    assert len(marts) == 16
    assert _dbt_nodes(dag, "marts") == marts
    assert all(t.pool == "duckdb_writer" for t in dag.tasks if t.task_id.startswith("marts."))
    # Any update of any lake or table Asset (an AssetAny, `|`) queues a run; one run at a time.
    condition = dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert {a.uri for a in condition.objects} == {f"x-civic://lake/{name}" for name in sources.names()} | {
        f"x-civic://warehouse/{t}" for t in MARTS_INPUT_TABLES
    }
    assert dag.max_active_runs == 1 and dag.catchup is False
    # Each mart waits on its sources' gate, after the wait for the source runs.
    gate_of = {
        t.task_id[len("marts.") : -len("_model_build")]: t.upstream_task_ids
        for t in dag.tasks
        if t.task_id.startswith("marts.")
    }
    assert gate_of["mart_crime_monthly"] == {"seattle_crime_changed"}
    assert gate_of["mart_time_to_close"] == {"chicago_311__minneapolis_311__nyc_311__toronto_311_changed"}
    assert gate_of["mart_works_by_month"] == {"street_manager_changed"}
    assert gate_of["mart_srwr_activity_summary"] == {"srwr_changed"}
    assert gate_of["mart_mobility_trips_daily"] == {"mds_changed"}
    assert dag.get_task("sources_to_build").upstream_task_ids == {"wait_for_source_runs"}
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id


def test_marts_of_the_sources_that_changed():
    from civic_pipelines.orchestration.marts_dag import changed_sources

    every = set(sources.names())
    assert changed_sources({"x-civic://lake/seattle_crime"}, None) == {"seattle_crime"}
    # fct_service_requests is fed by the three cities: its update rebuilds the 311 marts.
    assert changed_sources({"x-civic://warehouse/fct_service_requests"}, []) == {
        "chicago_311",
        "minneapolis_311",
        "nyc_311",
        "toronto_311",
    }
    assert changed_sources({"x-civic://warehouse/int_permit_months", "x-civic://lake/srwr"}, None) == {
        "street_manager",
        "srwr",
    }
    # Run by hand: the param, or every source when it is empty.
    assert changed_sources(set(), ["mds"]) == {"mds"}
    assert changed_sources(set(), []) == every
