"""``civic extract`` refuses what the DAG's planner refuses, with the planner's line.

The rules live in ``civic_pipelines.planning`` (no Airflow): ``plan_blocks`` calls ``plan`` and fails
with ``AirflowFailException(str(PlanError))`` (tests/test_trigger_params.py runs those DAGs);
the command line calls ``validate_month``/``validate_part`` and prints the same line after
``civic extract: error: ``. Nothing is fetched or written for a refused block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from civic_pipelines import cli, sources
from civic_pipelines.months import current_month, format_month, next_month, parse_month, previous_month
from civic_pipelines.planning import PlanError, plan

THIS_MONTH = current_month()
LAST_COMPLETE = format_month(previous_month(parse_month(THIS_MONTH)))
NEXT_MONTH = format_month(next_month(parse_month(THIS_MONTH)))

REFUSED = [
    pytest.param(
        "seattle_crime",
        "2099-01",
        None,
        "a month far in the future (2099-01)",
        f"month 2099-01 is not complete yet (current month is {THIS_MONTH}); the latest month you can ask "
        f"for is {LAST_COMPLETE}",
        id="2099-01",
    ),
    pytest.param(
        "seattle_crime",
        NEXT_MONTH,
        None,
        "next month",
        f"month {NEXT_MONTH} is not complete yet (current month is {THIS_MONTH}); the latest month you can "
        f"ask for is {LAST_COMPLETE}",
        id="next-month",
    ),
    pytest.param(
        "nyc_311",
        THIS_MONTH,
        None,
        "the current (unfinished) month",
        f"month {THIS_MONTH} is not complete yet (current month is {THIS_MONTH}); the latest month you can "
        f"ask for is {LAST_COMPLETE}",
        id="current-month",
    ),
    pytest.param(
        "seattle_crime",
        "2005-01",
        None,
        "a month before the source's first month",
        "month 2005-01 is before the source's first month 2008-01",
        id="before-first-month",
    ),
    pytest.param(
        "street_manager",
        "2020-06",
        "permit",
        "a month before the source's first month",
        "month 2020-06 is before the source's first month 2020-07",
        id="street-manager-before-first",
    ),
    pytest.param(
        "seattle_crime",
        "2024-13",
        None,
        "a malformed month",
        "month '2024-13' is not in YYYY-MM form (for example 2024-03)",
        id="malformed",
    ),
    pytest.param(
        "mds",
        "2024-01",
        "scootz",
        "an unknown provider",
        "unknown providers ['scootz']; known: ['voi', 'lyft', 'bolt', 'dott']",
        id="unknown-provider",
    ),
]


def planner_message(source: str, month: str, part: str | None) -> str:
    """What plan_blocks fails with for a trigger asking for this one block."""
    spec = sources.spec(source)
    params = {"start_month": month, "end_month": month}
    if part and spec.parts_param:
        params[spec.parts_param] = [part]
    with pytest.raises(PlanError) as refused:
        plan(spec, params)
    return str(refused.value)


@pytest.mark.parametrize("source,month,part,fault,reason", REFUSED)
def test_civic_extract_refuses_what_the_planner_refuses(
    source, month, part, fault, reason, monkeypatch, lake, capsys, reliability
):
    reliability.row(
        fault=f"civic extract: {fault}",
        source=source,
        expected="refused before any request, exit 1, one stderr line equal to plan_blocks' message",
    )
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["voi", "lyft", "bolt", "dott"]')
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    # A connection nowhere: had the block been started, it would have failed differently.
    monkeypatch.setenv(f"AIRFLOW_CONN_{sources.spec(source).conn_id.upper()}", "http://civic-test.invalid")
    expected = f"cannot plan {source} blocks: {reason}"
    assert planner_message(source, month, part) == expected
    argv = ["extract", "--source", source, "--month", month, "--lake", lake] + (["--part", part] if part else [])
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.splitlines() == [f"civic extract: error: {expected}"], err
    assert not Path(lake).exists(), "nothing is written for a refused block"
    reliability.observed(f'exit {code}: "{err.strip()[:120]}"')


def test_civic_extract_still_takes_a_month_the_planner_plans(monkeypatch, lake, capsys):
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    blocks, months = plan(sources.spec("seattle_crime"), {"start_month": LAST_COMPLETE, "end_month": LAST_COMPLETE})
    assert months == [LAST_COMPLETE] and len(blocks) == 1
    assert (
        cli.main(["extract", "--source", "seattle_crime", "--month", LAST_COMPLETE, "--lake", lake, "--dry-run"]) == 0
    )
    assert '"skipped": true' in capsys.readouterr().out
    assert cli.main(["extract", "--source", "seattle_crime", "--month", "2008-01", "--lake", lake, "--dry-run"]) == 0


def test_help_lists_the_sources(capsys, reliability):
    reliability.row(fault="civic extract --help", source="all", expected="--source lists every source in the registry")
    with pytest.raises(SystemExit) as done:
        cli.main(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert done.value.code == 0
    names = sources.names()
    missing = [name for name in names if name not in text]
    assert len(names) == 8 and not missing, text
    reliability.observed(f"--help names all {len(names)} sources: {', '.join(sorted(names))}")
