"""The ``civic_marts`` DAG and the Airflow Assets that drive it.

A source DAG lands its blocks and builds its own dbt layers (seeds, staging views, incremental
intermediate and fact tables: ``dbt_group.source_selection``), each costing only the new blocks. The
marts are tables rebuilt whole from those layers; built per source run, a catchup of 200 months
rebuilt them 200 times. They are built here instead, on the Assets the source DAGs emit:

* ``x-civic://lake/<source>``: every ``extract_load`` block that landed (a skipped block, i.e. an
  unchanged source month, emits nothing: nothing new to build from);
* ``x-civic://warehouse/<model>``: each incremental table a source DAG builds (the facts
  ``fct_*`` and Street Manager's ``int_permit_*``), from the Cosmos task that builds it.

Any of them (``|``) queues a run. The run first waits until no source DAG has a run queued or
running (a catchup in progress will emit again, and its fact must be built before its marts), then
builds only the mart groups whose sources changed. With ``max_active_runs=1`` the scheduler holds
the events of the months landed meanwhile in its queue, so a catchup of any length costs one marts
build while it waits and at most one more after it, not one per month.

URIs use an ``x-`` scheme: Airflow treats it as opaque (no provider normalises it) and the Assets
name what the data is, not where this deployment keeps it (the lake may be a folder or S3).
"""

from __future__ import annotations

from datetime import UTC, timedelta
from functools import reduce

from civic_pipelines import sources
from civic_pipelines.orchestration.dbt_group import parsed_manifest

MARTS_DAG_ID = "civic_marts"
# A catchup of every source's ten years takes about 1.5 h here; a day leaves room for a slow one.
WAIT_FOR_SOURCES_TIMEOUT = timedelta(hours=24)
WAIT_POKE_INTERVAL = timedelta(seconds=15)


def lake_uri(source: str) -> str:
    return f"x-civic://lake/{source}"


def table_uri(model: str) -> str:
    return f"x-civic://warehouse/{model}"


def lake_asset(source: str):
    from airflow.sdk import Asset

    return Asset(uri=lake_uri(source), group="lake")


def table_asset(model: str):
    from airflow.sdk import Asset

    return Asset(uri=table_uri(model), group="warehouse")


_MODELS: dict = {}


def _models() -> dict[str, dict]:
    """``{model name: {"tags": set, "materialized": str}}`` from the dbt manifest Cosmos renders from
    (the same parse as the Cosmos groups'; recomputed only when the manifest file changes)."""
    manifest = parsed_manifest()
    if _MODELS.get("of") is not manifest:
        _MODELS["models"] = {
            node["name"]: {"tags": set(node["tags"]), "materialized": node["config"]["materialized"]}
            for node in manifest["nodes"].values()
            if node["resource_type"] == "model"
        }
        _MODELS["of"] = manifest
    return _MODELS["models"]


def _dbt_tag(source: str) -> str:
    spec = sources.spec(source)
    return spec.dbt_tag or spec.name


def is_mart(model: str) -> bool:
    tags = _models()[model]["tags"]
    return "marts" in tags and "facts" not in tags


def marts() -> list[str]:
    """Every mart (``tag:marts`` less the facts), which civic_marts builds and no source DAG does."""
    return sorted(name for name in _models() if is_mart(name))


def source_tables(source: str) -> list[str]:
    """The incremental tables the source's DAG builds (its facts and incremental intermediates):
    what the marts read that changes with each landed block. Views need no Asset: they read the lake."""
    tag = _dbt_tag(source)
    return sorted(
        name
        for name, model in _models().items()
        if tag in model["tags"] and not is_mart(name) and model["materialized"] == "incremental"
    )


def mart_groups() -> dict[str, tuple[list[str], list[str]]]:
    """``{group id: (sources, marts)}``: the marts grouped by the sources they read (their source
    tags), so a run builds only the groups whose sources changed. The 311 marts share one group
    (they read ``fct_service_requests``, fed by the three cities); the id names its sources."""
    by_tag = {_dbt_tag(name): name for name in sources.names()}
    grouped: dict[tuple[str, ...], list[str]] = {}
    for mart in marts():
        owners = tuple(sorted(by_tag[tag] for tag in _models()[mart]["tags"] if tag in by_tag))
        if not owners:
            raise ValueError(f"mart {mart} carries no source tag: no source DAG would trigger its build")
        grouped.setdefault(owners, []).append(mart)
    return {"__".join(owners): (list(owners), models) for owners, models in sorted(grouped.items())}


def trigger_assets(group_sources: list[str]) -> list:
    """The Assets whose events mean the group's marts are out of date: the sources' lake and tables."""
    return [lake_asset(source) for source in group_sources] + [
        table_asset(table) for source in group_sources for table in source_tables(source)
    ]


def trigger_uris(group_sources: list[str]) -> set[str]:
    return {asset.uri for asset in trigger_assets(group_sources)}


def marts_schedule():
    """Any lake or table Asset of a source with marts: ``asset | asset | ...``."""
    assets = {asset.uri: asset for owners, _ in mart_groups().values() for asset in trigger_assets(owners)}
    return reduce(lambda left, right: left | right, (assets[uri] for uri in sorted(assets)))


def emit_table_assets(source: str, dbt_group) -> None:
    """Make the Cosmos task that builds each of the source's incremental tables its Asset's producer
    (the Assets view then shows the source DAG's task beside the civic_marts consumer)."""
    tables = source_tables(source)
    if not tables:  # a source with no incremental table (or no dbt models) produces no table Asset
        return
    for node_id, task in dbt_group.tasks_map.items():
        model = node_id.rsplit(".", 1)[1]
        if node_id.startswith("model.") and model in tables:
            task.outlets = [*task.outlets, table_asset(model)]


def changed_sources(triggering_uris: set[str], requested: list[str] | None) -> set[str]:
    """The sources whose marts a run builds: those whose Assets triggered it; on a manual run (no
    Asset event) the ``sources`` param, every source with marts when it is empty."""
    groups = mart_groups().values()
    with_marts = {source for owners, _ in groups for source in owners}
    if triggering_uris:
        return {source for source in with_marts if triggering_uris & trigger_uris([source])}
    return set(requested) & with_marts if requested else with_marts


def source_runs_in_flight(get_dr_count) -> dict[str, int]:
    """``{source DAG: runs queued or running}`` for the sources that have any."""
    counts = {name: get_dr_count(dag_id=name, states=["queued", "running"]) for name in sources.names()}
    return {name: count for name, count in counts.items() if count}


def build_marts_dag():
    from datetime import datetime

    from airflow.sdk import DAG, Param, get_current_context, task

    from civic_pipelines.orchestration.dag_factory import default_args
    from civic_pipelines.orchestration.dbt_group import build_marts_group, cosmos_environment_defaults

    cosmos_environment_defaults()
    groups = mart_groups()
    with DAG(
        dag_id=MARTS_DAG_ID,
        description="The marts, built once the source DAGs have landed",
        doc_md=__doc__,
        schedule=marts_schedule(),
        start_date=datetime(2020, 1, 1, tzinfo=UTC),
        catchup=False,
        # One at a time: the events of the months landed while a run waits or builds stay queued and
        # make one next run, instead of one run per month.
        max_active_runs=1,
        default_args=default_args(),
        params={
            "sources": Param(
                [],
                type="array",
                items={"type": "string", "enum": sorted({s for owners, _ in groups.values() for s in owners})},
                title="Sources",
                description="Manual runs: whose marts to build (empty: every source's). Asset-triggered "
                "runs build the marts of the sources whose Assets changed.",
            )
        },
        tags=["civic", "marts"],
    ) as dag:

        @task.sensor(poke_interval=WAIT_POKE_INTERVAL, timeout=WAIT_FOR_SOURCES_TIMEOUT, mode="reschedule")
        def wait_for_source_runs():
            """Until no source DAG has a run queued or running: their facts land before the marts read them,
            and the Asset events of a catchup's later months are then already in this run's past."""
            from airflow.sdk import PokeReturnValue

            busy = source_runs_in_flight(get_current_context()["ti"].get_dr_count)
            if busy:
                print(
                    "waiting for source runs: " + ", ".join(f"{name} {count}" for name, count in sorted(busy.items()))
                )
            return PokeReturnValue(is_done=not busy)

        @task
        def sources_to_build(params: dict | None = None) -> list[str]:
            """The sources whose Assets triggered this run (or, run by hand, the ``sources`` param)."""
            events = get_current_context()["triggering_asset_events"]
            uris = {asset.uri for asset in events}
            chosen = sorted(changed_sources(uris, (params or {}).get("sources")))
            print(f"triggered by {sorted(uris) or 'hand'}: marts of {chosen or 'no source'}")
            return chosen

        chosen = sources_to_build()
        wait_for_source_runs() >> chosen
        # One Cosmos group for every mart (one manifest load at parse time); each mart's task waits
        # on its group's gate, which skips it when none of its sources changed.
        marts_group = build_marts_group("marts", [mart for _, models in groups.values() for mart in models])
        group_of = {mart: group_id for group_id, (_, models) in groups.items() for mart in models}
        gates = {}
        for group_id, (owners, _) in groups.items():

            @task.short_circuit(task_id=f"{group_id}_changed")
            def group_changed(chosen: list[str], owners: list[str] = owners) -> bool:
                """Build this group's marts only when one of its sources changed."""
                return bool(set(chosen) & set(owners))

            gates[group_id] = group_changed(chosen)
        for node_id, mart_task in marts_group.tasks_map.items():
            gates[group_of[node_id.rsplit(".", 1)[1]]] >> mart_task
    return dag
