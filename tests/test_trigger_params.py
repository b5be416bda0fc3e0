"""Bad trigger params fail in planning, with one clear line, before any extraction.

Each case is a real DAG run (``dag.test()``) of the source's DAG: the run's ``plan_blocks`` task
fails with an ``AirflowFailException`` whose message is one line naming the problem, ``extract_load``
never runs (it is ``upstream_failed``, never expanded), and the replay server gets no request. A
malformed month never gets that far: the DAG's param schema refuses the trigger itself, so no run
is created at all (Airflow's message names the param and the value).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from airflow_runs import small_dags_folder, task_states
from replay_env import connection_env, module_environment

from civic_pipelines.months import current_month, format_month, next_month, parse_month, previous_month

THIS_MONTH = current_month()
LAST_COMPLETE = format_month(previous_month(parse_month(THIS_MONTH)))
NEXT_MONTH = format_month(next_month(parse_month(THIS_MONTH)))
# Eleven operators (Austin had as many in 2019) over eight years: 1,056 (provider, month) blocks,
# within the 120-month limit per run but past Airflow's default max_map_length of 1,024 mapped tasks.
ELEVEN_PROVIDERS = ["voi", "lyft", "bolt", "dott", "bird", "lime", "spin", "jump", "razor", "wheels", "ojo"]


@pytest.fixture(scope="module")
def environment(airflow_db, tmp_path_factory):
    from civic_pipelines.replay.mds import connections_for

    def connections(server) -> dict[str, str]:
        return {
            **connection_env(server, "civic_seattle_crime"),
            **{
                f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}": json.dumps(connection)
                for provider, connection in connections_for(server.url).items()
            },
        }

    root = tmp_path_factory.mktemp("trigger_params")
    dags = small_dags_folder(root / "dags", ["seattle_crime", "mds"])
    with module_environment(root, connections=connections, **dags) as environment:
        environment["patch"].delenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", raising=False)
        yield {**environment, "root": root}


def planning_dag(dag_id: str):
    """The source's DAG, fresh (an in-process DAG object keeps the last run's param values), cut to
    plan_blocks and extract_load: the dbt group below a failed plan only adds dag.test()'s one-second
    polls while upstream_failed walks down it."""
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    return build_source_dag(dag_id, extract_mode="local").partial_subset(["extract_load"], include_upstream=True)


class BadParams(NamedTuple):
    """One bad trigger: the test id, the DAG, its run conf, the MDS providers variable (None: unset),
    the fault as the reliability row names it, and the reason plan_blocks must give."""

    id: str
    dag_id: str
    conf: dict
    providers: list[str] | None
    fault: str
    message: str


CASES = [
    BadParams(
        "end-before-start",
        "seattle_crime",
        {"start_month": "2024-03", "end_month": "2024-01"},
        None,
        "end before start",
        "end_month 2024-01 is before start_month 2024-03",
    ),
    BadParams(
        "future-month",
        "seattle_crime",
        {"start_month": LAST_COMPLETE, "end_month": NEXT_MONTH},
        None,
        "a future month",
        f"month {NEXT_MONTH} is not complete yet (current month is {THIS_MONTH}); the latest month you can "
        f"ask for is {LAST_COMPLETE}",
    ),
    BadParams(
        "current-month",
        "seattle_crime",
        {"start_month": THIS_MONTH, "end_month": THIS_MONTH},
        None,
        "the current (unfinished) month",
        f"month {THIS_MONTH} is not complete yet",
    ),
    BadParams(
        "half-range",
        "seattle_crime",
        {"start_month": "2024-01"},
        None,
        "only one end of the range",
        "give both start_month and end_month, or neither",
    ),
    BadParams(
        "before-first-month",
        "seattle_crime",
        {"start_month": "2005-01", "end_month": "2005-02"},
        None,
        "a month before the source's first month",
        "month 2005-01 is before the source's first month 2008-01",
    ),
    BadParams(
        "past-blocks-per-run",
        "seattle_crime",
        {"start_month": "2008-01", "end_month": "2024-12"},
        None,
        "a range wider than the blocks-per-run limit",
        "204 months requested (2008-01..2024-12); the limit is 120 blocks per run: split the range into several runs",
    ),
    BadParams(
        "unknown-provider",
        "mds",
        {"start_month": "2024-01", "end_month": "2024-01", "providers": ["voi", "scootz"]},
        None,
        "an unknown provider",
        "unknown providers ['scootz']; known: ['voi', 'lyft', 'bolt', 'dott']",
    ),
    BadParams(
        "past-max-map-length",
        "mds",
        {"start_month": "2018-01", "end_month": "2025-12"},
        ELEVEN_PROVIDERS,
        "a range past Airflow's mapping limit (max_map_length 1024)",
        "1056 blocks (96 months x 11 providers) exceed Airflow's limit of 1024 mapped tasks per run "
        "([core] max_map_length): split the range into several runs",
    ),
]


@pytest.mark.parametrize("bad", CASES, ids=lambda bad: bad.id)
def test_bad_params_fail_in_planning_with_one_line_before_any_extraction(environment, bad, capfd, reliability):
    _, dag_id, conf, providers, fault, message = bad
    reliability.row(
        fault=f"bad trigger params: {fault}",
        source=dag_id,
        expected="plan_blocks fails with one clear line; extract_load never runs; no request sent",
    )
    server, patch = environment["server"], environment["patch"]
    if providers:
        patch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", json.dumps(providers))
    else:
        patch.delenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", raising=False)
    requests_before = len(server.state.requests)
    capfd.readouterr()
    dag = planning_dag(dag_id)
    assert sorted(dag.task_ids) == ["extract_load", "plan_blocks"]
    run = dag.test(run_conf=conf)
    out, err = capfd.readouterr()
    states = task_states(run)
    assert run.state == "failed", states
    assert states[("plan_blocks", -1)] == "failed"
    assert states[("extract_load", -1)] == "upstream_failed", "extract_load was never expanded"
    assert not [key for key in states if key[0] == "extract_load" and key[1] >= 0]
    assert len(server.state.requests) == requests_before, "nothing was fetched"
    assert not (environment["root"] / "lake").exists() or not any((environment["root"] / "lake").rglob("*.parquet"))
    # One line: the exception line in the task's log, exactly "cannot plan <dag>: <reason>".
    full = f"cannot plan {dag_id} blocks: {message}"
    lines = [line for line in (out + err).splitlines() if "AirflowFailException: cannot plan" in line]
    assert lines, (out + err)[-3000:]
    reason = re.sub(r"^.*AirflowFailException: ", "", lines[0]).strip()
    assert reason.startswith(full), reason
    assert "\n" not in reason and len(reason) < 300
    reliability.observed(f'"{reason}"; extract_load upstream_failed, 0 requests')


def test_a_malformed_month_is_refused_at_trigger_before_any_run(environment, reliability):
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.param import ParamValidationError
    from airflow.utils.session import create_session

    server = environment["server"]
    reliability.row(
        fault="bad trigger params: a malformed month (2024-1)",
        source="seattle_crime",
        expected="the trigger is refused by the param schema (no run, nothing planned or fetched)",
    )
    with create_session() as session:
        runs_before = session.query(DagRun).filter(DagRun.dag_id == "seattle_crime").count()
    requests_before = len(server.state.requests)
    refusals = []
    for bad in ("2024-1", "2024-13", "24-01", "January 2024"):
        with pytest.raises(ParamValidationError) as refused:
            planning_dag("seattle_crime").test(run_conf={"start_month": bad, "end_month": "2024-02"})
        refusals.append(str(refused.value).splitlines()[0])
        assert refusals[-1].startswith(f"Invalid input for param start_month: '{bad}' does not match"), refusals[-1]
    first_line = refusals[0]
    with create_session() as session:
        assert session.query(DagRun).filter(DagRun.dag_id == "seattle_crime").count() == runs_before
    assert len(server.state.requests) == requests_before
    # The planner refuses the same values itself (for a run made some other way) with its own line.
    from civic_pipelines.months import BlockPlanError, plan_months

    with pytest.raises(BlockPlanError, match=r"^month '2024-1' is not in YYYY-MM form \(for example 2024-03\)$"):
        plan_months(
            "2024-1", "2024-02", None, None, first_month="2008-01", max_blocks=120, now=datetime(2026, 1, 1, tzinfo=UTC)
        )
    reliability.observed(f'refused at trigger: "{first_line}"; 0 runs created, 0 requests')
