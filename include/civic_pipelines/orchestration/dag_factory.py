"""One DAG per source, built from the source registry.

Shape: ``plan_blocks`` (data interval or trigger-form range -> list of blocks) ->
``extract_load`` mapped over the blocks (in-process, or a DockerOperator container) -> the
source's dbt models as a Cosmos task group. The DAG runs and their mapped task instances are
the block ledger: there is no schedule table of our own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civic_pipelines import settings, sources
from civic_pipelines.months import MONTH_PATTERN, parse_month
from civic_pipelines.orchestration.variables import get_variable

EXTRACT_MODES = ("local", "docker")
OPTIONAL_MONTH = {"type": ["null", "string"], "pattern": f"({MONTH_PATTERN})|(^$)"}


# A block that has not landed in this long is stuck (a hung socket, a server trickling bytes):
# fail it so its retries and the failure mail happen, instead of holding a pool slot forever.
EXTRACT_TIMEOUT_MINUTES = 120
# A run (at most spec.max_blocks_per_run blocks, then dbt) that has not finished in this long fails.
DAGRUN_TIMEOUT_HOURS = 24


def default_args() -> dict:
    from civic_pipelines.orchestration.notify import FailureNotifier

    return {
        "owner": "civic-pipelines",
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        # A task's priority is the sum of its upstream tasks' weights, so a run's later tasks (its dbt
        # nodes) take a free executor slot before other runs' blocks: the one DuckDB writer slot is
        # the bottleneck, and with the default (downstream) rule every extract of every run went
        # first while the writer slot sat idle, its next node queued behind minutes-long blocks.
        "weight_rule": "upstream",
        # Every task (each block, each dbt node) e-mails when it fails for good (retries spent).
        "on_failure_callback": [FailureNotifier()],
    }


def _timeout(name: str, key: str, default: float, unit: str) -> timedelta:
    """A timeout from ``civic_<name>_<key>``, else ``civic_<key>``, else ``default`` (in ``unit``)."""
    raw = get_variable(f"civic_{name}_{key}", None) or get_variable(f"civic_{key}", None)
    try:
        value = float(raw) if raw not in (None, "") else default
    except ValueError:
        raise ValueError(f"civic_{key} must be a number of {unit}, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"civic_{key} must be positive, not {raw!r}")
    return timedelta(**{unit: value})


def extract_timeout(name: str) -> timedelta:
    """``execution_timeout`` of one extract_load block: Variable ``civic_<source>_extract_timeout_minutes``
    or ``civic_extract_timeout_minutes`` (default 120)."""
    return _timeout(name, "extract_timeout_minutes", EXTRACT_TIMEOUT_MINUTES, "minutes")


def dagrun_timeout(name: str) -> timedelta:
    """The DAG's ``dagrun_timeout``: Variable ``civic_<source>_dagrun_timeout_hours`` or
    ``civic_dagrun_timeout_hours`` (default 24)."""
    return _timeout(name, "dagrun_timeout_hours", DAGRUN_TIMEOUT_HOURS, "hours")


def build_params(spec) -> dict:
    from airflow.sdk import Param

    return {
        "start_month": Param(
            None,
            **OPTIONAL_MONTH,
            title="Start month",
            description=f"First month to land, YYYY-MM (from {spec.first_month}). Empty: the run's data interval.",
        ),
        "end_month": Param(
            None,
            **OPTIONAL_MONTH,
            title="End month",
            description="Last month to land, YYYY-MM, inclusive; not before the start and not the current month or later.",
        ),
        "force": Param(
            False, type="boolean", title="Force", description="Land every block even if the source is unchanged."
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Plan and print the blocks; fetch and write nothing."
        ),
        **(
            {
                "incomplete_only": Param(
                    False,
                    type="boolean",
                    title="Incomplete only",
                    description="Plan only blocks never landed or landed incomplete (missing hours).",
                )
            }
            if spec.capabilities.incomplete_hours
            else {}
        ),
        **(
            {
                spec.parts_param: Param(
                    None,
                    type=["null", "array"],
                    items={"type": "string"},
                    title=spec.parts_param.capitalize(),
                    description=f"Which {spec.parts_param} to land (names); empty: all of them.",
                )
            }
            if spec.parts_param
            else {}
        ),
        **(
            {
                "sync_postgres": Param(
                    True,
                    type="boolean",
                    title="Sync PostgreSQL",
                    description="After the blocks land, mirror every planned block that is in the lake into "
                    "PostgreSQL (connection civic_postgres; skipped when it is not set). "
                    "Force also re-syncs blocks unchanged since their last sync.",
                )
            }
            if spec.capabilities.postgres_sink
            else {}
        ),
    }


def has_postgres_sink(name: str) -> bool:
    """A source declaring a PostgreSQL sink gets the ``sync_postgres`` param and task."""
    return sources.spec(name).capabilities.postgres_sink


def dag_doc(spec) -> str:
    return f"""
### {spec.title}

**Publisher:** {spec.publisher}

{spec.description}

* One **block** = one calendar month of this source, landed in the lake as parquet
  (`{settings.lake_url()}/{spec.name}/month=YYYY-MM/`), replaced whole and atomically.
* Scheduled {spec.cadence} with catchup from **{spec.first_month}**: every historic month is a DAG
  run, so the grid is the block ledger. A scheduled run covers the previous complete month.
* Trigger with `start_month`/`end_month` to (re)land a range; `force` ignores the watermark;
  `dry_run` only plans.
* Connection: `{spec.conn_id}` (default endpoint `{spec.default_base_url}`); API pool `{spec.pool}`.
* After the blocks, dbt builds the `{spec.dbt_tag or spec.name}` seeds, staging, intermediate and fact
  models; the landed blocks and the facts are Assets that schedule `civic_marts`, which builds the marts.
""" + (
        """* Beside dbt, `sync_postgres` mirrors the planned blocks into PostgreSQL (connection `civic_postgres`;
  trigger param `sync_postgres`).
"""
        if spec.capabilities.postgres_sink
        else ""
    )


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: how many mapped task instances one task may expand to."""
    try:
        from airflow.configuration import conf

        return conf.getint("core", "max_map_length", fallback=1024)
    except ImportError:  # pragma: no cover - the planner runs inside Airflow
        return 1024


def build_source_dag(name: str, extract_mode: str | None = None):
    from airflow.sdk import DAG, get_current_context, task
    from airflow.timetables.interval import CronDataIntervalTimetable

    from civic_pipelines.orchestration.dbt_group import (
        build_dbt_group,
        build_freshness_task,
        cosmos_environment_defaults,
    )
    from civic_pipelines.orchestration.marts_dag import emit_table_assets, lake_asset
    from civic_pipelines.orchestration.notify import RunFailureNotifier

    cosmos_environment_defaults()
    spec = sources.spec(name)
    extract_mode = extract_mode or get_variable("civic_extract_mode", "local")
    if extract_mode not in EXTRACT_MODES:
        raise ValueError(f"civic_extract_mode must be one of {EXTRACT_MODES}, not {extract_mode!r}")
    start_month = get_variable(f"civic_{name}_start_month", spec.first_month)
    start = parse_month(start_month)

    with DAG(
        dag_id=name,
        description=spec.title,
        doc_md=dag_doc(spec),
        # Cron with data intervals: the run at 2026-11-01 has the interval [2026-10-01, 2026-11-01).
        schedule=CronDataIntervalTimetable(spec.cron, timezone="UTC"),
        start_date=datetime(start.year, start.month, 1, tzinfo=UTC),
        catchup=True,
        max_active_runs=2,
        max_active_tasks=4,
        default_args=default_args(),
        dagrun_timeout=dagrun_timeout(name),
        # A run that fails with no task failing (timed out) mails from here; failed tasks mail themselves.
        on_failure_callback=RunFailureNotifier(),
        params=build_params(spec),
        tags=["civic", name, *spec.tags],
    ) as dag:

        @task
        def plan_blocks(params: dict | None = None, data_interval_start=None, data_interval_end=None) -> list[dict]:
            """Turn the trigger form's month range, or else the run's data interval, into blocks."""
            from airflow.sdk.exceptions import AirflowFailException

            from civic_pipelines.planning import PlanError, plan

            params = params or {}
            try:
                blocks, months = plan(
                    spec,
                    params,
                    data_interval_start,
                    data_interval_end,
                    max_map_length=max_map_length(),
                    lake=settings.lake_url(),
                )
            except PlanError as error:
                # A bad range will not get better on retry: fail now, with the reason, before any extraction.
                raise AirflowFailException(str(error)) from None
            force = bool(params.get("force"))
            print(
                f"planned {len(blocks)} block(s) for {name}: {', '.join(months)}"
                + (" (force)" if force else "")
                + (" (incomplete only)" if params.get("incomplete_only") else "")
            )
            if params.get("dry_run"):
                print("dry run: nothing will be fetched or written")
                return []
            return blocks

        blocks = plan_blocks()

        if extract_mode == "local":

            @task(
                pool=spec.pool,
                map_index_template="{{ block_label }}",
                execution_timeout=extract_timeout(name),
                outlets=[lake_asset(name)],
                # The manifest is one XCom. Left to TaskFlow, the ``-> dict`` annotation makes every
                # key of it an XCom of its own as well: some 30 Execution API calls and metadata
                # writes per block, most of a block's post-execute time and API-server CPU.
                multiple_outputs=False,
            )
            def extract_load(block: dict) -> dict:
                """Extract one block from the source and land it in the lake; the manifest is the XCom."""
                from airflow.sdk.exceptions import AirflowSkipException

                from civic_pipelines.extract import run_block

                context = get_current_context()
                context["block_label"] = block["label"]
                manifest = run_block(
                    block["source"], block["month"], force=block.get("force", False), part=block.get("part")
                )
                print(manifest)
                if manifest.get("skipped"):
                    context["ti"].xcom_push(key="manifest", value=manifest)
                    raise AirflowSkipException(f"{block['label']}: {manifest['reason']}")
                return manifest

            landed = extract_load.expand(block=blocks)
        else:
            from civic_pipelines.orchestration.docker_extract import CivicExtractDockerOperator, docker_kwargs

            landed = CivicExtractDockerOperator.partial(
                task_id="extract_load",
                pool=spec.pool,
                map_index_template="{{ task.block['label'] }}",
                execution_timeout=extract_timeout(name),
                outlets=[lake_asset(name)],
                lake_host_path=settings.lake_url(),
                conn_id=spec.conn_id,
                **docker_kwargs(),
            ).expand(block=blocks)

        dbt_models = build_dbt_group(spec)
        emit_table_assets(name, dbt_models)
        landed >> dbt_models >> build_freshness_task(spec)

        if has_postgres_sink(name):
            # Beside dbt, not before it: PostgreSQL mirrors the lake, dbt reads the lake. all_done: a
            # block that failed this run still has its previous landing whole in the lake, so the
            # sync mirrors whatever is landed, and it runs when every block was skipped (converges).
            @task(trigger_rule="all_done", multiple_outputs=False)  # its summary is one XCom (see extract_load)
            def sync_postgres(params: dict | None = None) -> dict:
                """Upsert every planned block that is in the lake into PostgreSQL, one transaction per block."""
                from civic_pipelines.sinks.postgres import sync_task

                # The plan from XCom, not as an argument: plan_blocks keeps extract_load as its only downstream.
                planned = get_current_context()["ti"].xcom_pull(task_ids="plan_blocks")
                return sync_task(name, planned, params or {})

            landed >> sync_postgres()
    return dag
