"""The Cosmos task group that builds a source's dbt models after its blocks land, and the task
that runs ``dbt source freshness`` for the source after them."""

from __future__ import annotations

import os
from pathlib import Path

from civic_pipelines import settings

DUCKDB_WRITER_POOL = "duckdb_writer"


def dbt_env() -> dict[str, str]:
    """What dbt needs, resolved to absolute paths at parse time (Cosmos may copy the project)."""
    return {
        "CIVIC_LAKE": settings.lake_url(),
        "CIVIC_WAREHOUSE": settings.warehouse_path(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def manifest_path() -> Path:
    return settings.dbt_project_dir() / "target" / "manifest.json"


# What a source's DAG builds: its own layers, each incremental per landed block or a view over the
# lake, so a monthly run costs its new blocks. The marts, rebuilt whole, are civic_marts' (marts_dag.py).
SOURCE_LAYERS = ("seeds", "staging", "intermediate", "facts")


def source_selection(dbt_tag: str) -> list[str]:
    """The source's seeds, staging, intermediate and fact models (``tag:<source>,tag:<layer>``, a dbt
    intersection), never a mart: a catchup of N months must not rebuild the marts N times."""
    return [f"tag:{dbt_tag},tag:{layer}" for layer in SOURCE_LAYERS]


def build_dbt_group(spec, group_id: str = "dbt", select: list[str] | None = None):
    """The source's own models (``source_selection``) or, given ``select``, those nodes; one task per model.

    Each model runs as ``dbt build`` of that node (model plus its tests) in-process
    (InvocationMode.DBT_RUNNER, about half a second per node once warm instead of ~5 s for a
    dbt subprocess). Every node takes the single ``duckdb_writer`` pool slot: DuckDB allows
    one writer.
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import InvocationMode, LoadMode, TestBehavior

    project_dir = settings.dbt_project_dir()
    env = dbt_env()
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=project_dir,
            manifest_path=manifest_path(),
            env_vars=env,
            install_dbt_deps=False,  # no dbt packages: the hub is not reachable offline
        ),
        profile_config=ProfileConfig(
            profile_name="civic",
            target_name="dev",
            profiles_yml_filepath=project_dir / "profiles.yml",
        ),
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=select if select is not None else source_selection(spec.dbt_tag or spec.name),
            test_behavior=TestBehavior.BUILD,
            enable_mock_profile=False,
            # The Assets that schedule civic_marts are the project's own (marts_dag.py); Cosmos's
            # per-node duckdb:// Assets (one per model, named by this machine's warehouse path, with
            # no consumer) would only crowd the Assets view and cost each node its lineage pass.
            emit_datasets=False,
        ),
        operator_args={
            "pool": DUCKDB_WRITER_POOL,
            # Blocks that were skipped (unchanged source) must not stop the rebuild of those that landed.
            "trigger_rule": "none_failed_min_one_success",
            "retries": 2,
        },
    )


def build_marts_group(group_id: str, marts: list[str]):
    """The marts named, as one Cosmos group of the civic_marts DAG: the source groups' settings
    (one task per model, the DuckDB writer slot, in-process dbt), only the selection differs."""
    return build_dbt_group(None, group_id=group_id, select=sorted(marts))


def run_source_freshness(source: str, out: Path | None = None) -> dict:
    """``dbt source freshness --select source:<source>``, in-process as the Cosmos nodes run dbt.

    The result is kept at ``<freshness_dir>/<source>.json`` (replaced atomically) for the dashboard:
    one entry per table of the source with dbt's status (pass, warn, error, or runtime error when
    the table cannot be read, e.g. no block landed yet), the newest ``_landed_at``, its age and the
    criteria. Returns ``{table: status}``. A stale or unreadable table is a result to show, not a
    task failure; dbt failing as a whole (a project that does not parse) raises.
    """
    import json
    import shutil
    import tempfile
    from datetime import datetime, timezone

    from dbt.cli.main import dbtRunner

    out = out or settings.freshness_dir() / f"{source}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    project_dir = settings.dbt_project_dir()
    os.environ.update(dbt_env())  # this task's own process: dbt reads the paths with env_var()
    with tempfile.TemporaryDirectory(prefix=f"freshness-{source}-") as scratch:
        # target/ and logs/ in a scratch folder (the project folder is shared with concurrent runs),
        # seeded with the project's partial-parse state so dbt does not parse every file again.
        target = Path(scratch) / "target"
        target.mkdir()
        partial_parse = project_dir / "target" / "partial_parse.msgpack"
        if partial_parse.is_file():
            shutil.copy2(partial_parse, target / partial_parse.name)
        invoked = dbtRunner().invoke([
            "source", "freshness", "--select", f"source:{source}",
            "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
            "--target-path", str(target), "--log-path", f"{scratch}/logs", "--quiet",
        ])
    results = getattr(invoked.result, "results", None)
    if invoked.exception is not None or results is None:
        raise RuntimeError(f"dbt source freshness for {source} failed: {invoked.exception or 'no result'}")
    tables = []
    for result in results:
        node = result.node
        criteria = getattr(node, "freshness", None)
        max_loaded_at = getattr(result, "max_loaded_at", None)
        snapshotted_at = getattr(result, "snapshotted_at", None)
        tables.append({
            "unique_id": node.unique_id,
            "table": node.name,
            "status": tables_status(result),
            "max_loaded_at": max_loaded_at.isoformat() if max_loaded_at else None,
            "snapshotted_at": snapshotted_at.isoformat() if snapshotted_at else None,
            "age_seconds": getattr(result, "age", None),
            "warn_after": _period(getattr(criteria, "warn_after", None)),
            "error_after": _period(getattr(criteria, "error_after", None)),
            "message": _short_message(getattr(result, "message", None)) if tables_status(result) == "runtime error" else None,
        })
    payload = {"source": source, "generated_at": datetime.now(timezone.utc).isoformat(),
               "results": sorted(tables, key=lambda t: t["table"])}
    partial = out.with_name(f".{out.name}.tmp")
    partial.write_text(json.dumps(payload, indent=1))
    partial.replace(out)
    statuses = {t["table"]: t["status"] for t in payload["results"]}
    print(f"dbt source freshness {source}: " + ", ".join(f"{t} {s}" for t, s in sorted(statuses.items())))
    return statuses


def tables_status(result) -> str:
    return str(getattr(result.status, "value", result.status))


def _short_message(message: str | None) -> str | None:
    """dbt's runtime error, its last line (the cause), with the lake's path shortened to ``<lake>``."""
    if not message:
        return None
    last = [line.strip() for line in message.splitlines() if line.strip()][-1]
    return last.replace(settings.lake_url(), "<lake>")[:300]


def _period(value) -> str | None:
    """``{count: 45, period: day}`` -> ``"45 days"``; None when not configured."""
    count, period = getattr(value, "count", None), getattr(value, "period", None)
    if not count or not period:
        return None
    period = str(getattr(period, "value", period))
    return f"{count} {period}{'s' if count != 1 else ''}"


def build_freshness_task(spec, task_id: str = "source_freshness"):
    """The task after the source's dbt models: ``dbt source freshness`` of the source, on the DuckDB
    writer slot (dbt opens the warehouse). Skipped on a dry run, which writes nothing.

    ``none_failed``: it also runs when every block was skipped (an unchanged source is exactly when
    staleness shows), but not after a failure: as the DAG's last task it decides the run's state,
    and a run whose blocks or models failed must stay failed (the failure has mailed already)."""
    from airflow.sdk import task

    @task(task_id=task_id, pool=DUCKDB_WRITER_POOL, trigger_rule="none_failed")
    def source_freshness(params: dict | None = None) -> dict:
        """dbt source freshness of the source's lake tables, kept for the dashboard's health card."""
        from airflow.sdk.exceptions import AirflowSkipException

        if (params or {}).get("dry_run"):
            raise AirflowSkipException("dry run: nothing to check")
        return run_source_freshness(spec.name)

    return source_freshness()


def cosmos_environment_defaults() -> None:
    """Cosmos and dbt telemetry off, Cosmos's cache inside the project's data folder."""
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    os.environ.setdefault("AIRFLOW__COSMOS__CACHE_DIR", str(settings.data_dir() / "cosmos_cache"))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("SCARF_ANALYTICS", "false")
