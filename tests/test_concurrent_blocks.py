"""Two runs of the same block at once: one lands it, the other waits for the block lock and then skips
(or, past ``CIVIC_BLOCK_LOCK_TIMEOUT``, fails with one line naming the block and the holder); the
month's rows end up in the lake once, fetched once.

The overlap is made deterministic with the lock's test-only failpoint (``CIVIC_TEST_BLOCK_LOCK_DIR``):
the holder records ``held-<pid>`` and waits for a ``release`` file; a waiter records ``waiting-<pid>``
as soon as it finds the lock taken. The test releases the holder only once the other run is seen
waiting. Proved with two ``civic extract`` processes, and with two real Airflow DAG runs of the same
source and month (``dag.test()`` in two processes sharing the session's metadata database: an
interval-driven run for January, as the schedule makes it, and a manual trigger for 2024-01).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fault_checks import assert_exactly

CIVIC = str(Path(sys.executable).with_name("civic"))
MONTH = "2024-01"


def seattle_env(replay, lake: str, hold: Path, **extra) -> dict:
    host, port = replay.url.split("://", 1)[1].split(":")
    return {**os.environ, "CIVIC_LAKE": lake, "CIVIC_NO_AIRFLOW_LOOKUP": "1", "CIVIC_TEST_BLOCK_LOCK_DIR": str(hold),
            "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME": json.dumps({"conn_type": "http", "host": host, "port": int(port),
                                                            "schema": "http"}),
            **extra}


def wait_for(condition, what: str, processes=(), timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"{what}: a run ended first (exit {process.returncode}): {out[-1500:]} {err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def markers(hold: Path, kind: str) -> list[int]:
    return sorted(int(p.name.split("-", 1)[1]) for p in hold.glob(f"{kind}-*"))


def data_pages(replay) -> int:
    return sum(1 for r in replay.state.requests if r.startswith("/resource/"))


def finish(process, timeout: float = 120) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def extract(env) -> subprocess.Popen:
    return subprocess.Popen([CIVIC, "extract", "--source", "seattle_crime", "--month", MONTH], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expected_keys(replay) -> list[int]:
    return [int(r["offense_id"]) for r in replay.dataset.rows_for_month(MONTH)]


def test_two_extract_processes_one_lands_the_other_waits_and_skips(replay, lake, tmp_path, reliability):
    reliability.row(fault="two runs of one block at once (two civic extract processes)", source="seattle_crime",
                    expected="one lands the block, the other waits for the block lock, then skips (unchanged); "
                             "rows land once and the month is fetched once")
    hold = tmp_path / "hold"
    hold.mkdir()
    env = seattle_env(replay, lake, hold)
    runs = [extract(env), extract(env)]
    try:
        wait_for(lambda: markers(hold, "held") and markers(hold, "waiting"), "one run holding, one waiting", runs)
        winner, loser = markers(hold, "held")[0], markers(hold, "waiting")[0]
        assert {winner, loser} == {p.pid for p in runs} and winner != loser
        assert data_pages(replay) == 0, "the holder is stopped at the failpoint before any request"
        (hold / "release").touch()
        outputs = {p.pid: finish(p) for p in runs}
    finally:
        (hold / "release").touch()
        for p in runs:
            finish(p)
    assert all(p.returncode == 0 for p in runs), outputs
    manifests = {pid: json.loads(out.strip().splitlines()[-1]) for pid, (out, _) in outputs.items()}
    landed, waited = manifests[winner], manifests[loser]
    assert landed["skipped"] is False and landed["rows"] > 0
    assert waited["skipped"] is True and waited["reason"].startswith("source unchanged since last landing")
    assert waited["lock_waited_seconds"] > 0 and waited["sha256"] == landed["sha256"]
    rows = assert_exactly(lake, "seattle_crime", MONTH, expected_keys(replay))
    pages = data_pages(replay)
    assert pages == 1, f"the month was fetched {pages} times"
    reliability.observed(f"pid {loser} waited {waited['lock_waited_seconds']:.2f} s behind pid {winner}, then skipped; "
                         f"{rows:,} rows landed once, key set equal, 0 duplicates, 1 data page fetched")


def test_a_run_that_waits_past_the_timeout_fails_naming_the_block_and_the_holder(replay, lake, tmp_path, reliability):
    reliability.row(fault="two runs of one block at once, the second past CIVIC_BLOCK_LOCK_TIMEOUT",
                    source="seattle_crime",
                    expected="the second fails with one line naming the block and the holder (pid, host, since); "
                             "the first lands the block once")
    hold = tmp_path / "hold"
    hold.mkdir()
    holder = extract(seattle_env(replay, lake, hold))
    waiter = None
    try:
        wait_for(lambda: markers(hold, "held"), "the first run to hold the lock", [holder])
        waiter = extract(seattle_env(replay, lake, hold, CIVIC_BLOCK_LOCK_TIMEOUT="1"))
        out, err = finish(waiter, timeout=60)
        assert waiter.returncode == 1 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        line = lines[0]
        assert line.startswith("civic extract: error: BlockLockTimeout: block seattle_crime 2024-01 is being written "
                               f"by another run (pid {holder.pid} on {socket.gethostname()} since 20"), line
        assert "gave up after waiting 1 s (CIVIC_BLOCK_LOCK_TIMEOUT=1)" in line
        assert data_pages(replay) == 0
        (hold / "release").touch()
        out, err = finish(holder)
    finally:
        (hold / "release").touch()
        for p in (holder, waiter):
            if p is not None:
                finish(p)
    assert holder.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["skipped"] is False
    rows = assert_exactly(lake, "seattle_crime", MONTH, expected_keys(replay))
    assert data_pages(replay) == 1
    reliability.observed(f"after 1 s: \"{line.split('error: ', 1)[1][:140]}...\"; holder then landed {rows:,} rows "
                         "once, 0 duplicates")


# ---------------------------------------------------------------- through Airflow

ONE_DAG = textwrap.dedent('''
    """One source's Airflow DAG, built by the project's factory (the test's DAG folder: parses in a second)."""
    import os
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    dag = build_source_dag(os.environ["CIVIC_TEST_DAG"], extract_mode="local")
''')

RUN_DAG = textwrap.dedent('''
    import json, sys
    from datetime import datetime, timezone
    from civic_pipelines.orchestration.dag_factory import build_source_dag

    kind, synced = sys.argv[1], sys.argv[2]
    dag = build_source_dag("seattle_crime", extract_mode="local")
    # What dag.test() does first, done here so the test can start the second run once the DAG is in
    # the metadata DB (two processes writing the same new DAG version at once is a dag.test() race).
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
                       bundle.name, bundle.version)
    open(synced, "w").close()
    if kind == "interval":  # the run the schedule makes for January: its data interval, no params
        run = dag.test(logical_date=datetime(2024, 2, 1, tzinfo=timezone.utc), mark_success_pattern=r"dbt\\..*")
    else:  # a manual trigger for the same month
        run = dag.test(run_conf={"start_month": "2024-01", "end_month": "2024-01"}, mark_success_pattern=r"dbt\\..*")
    states = {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()}
    print("RESULT " + json.dumps({"run_id": run.run_id, "state": run.state, "states": states}))
''')


def test_two_dag_runs_of_one_block_at_once_land_it_once(replay, lake, tmp_path, airflow_db, reliability):
    reliability.row(fault="two DAG runs of one block at once (the schedule's run for the month and a manual "
                          "trigger)", source="seattle_crime",
                    expected="both runs succeed: one extract_load lands the block, the other waits for the block "
                             "lock and is skipped (unchanged); rows land once, fetched once")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "one_dag.py").write_text(ONE_DAG)
    script = tmp_path / "run_dag.py"
    script.write_text(RUN_DAG)
    hold = tmp_path / "hold"
    hold.mkdir()
    # dbt tasks are marked success, not run: they are not under test here (and dag.test ignores the
    # one-slot DuckDB pool that keeps two dbt tasks apart under the scheduler).
    env = seattle_env(replay, lake, hold, AIRFLOW__CORE__DAGS_FOLDER=str(dags), CIVIC_TEST_DAG="seattle_crime",
                      CIVIC_NO_AIRFLOW_LOOKUP="0", CIVIC_WAREHOUSE=str(tmp_path / "warehouse.duckdb"))

    def start(kind):
        return subprocess.Popen([sys.executable, str(script), kind, str(tmp_path / f"synced-{kind}")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    runs = {"interval": start("interval")}
    try:
        wait_for(lambda: (tmp_path / "synced-interval").exists(), "the first run to sync the DAG", runs.values())
        runs["manual"] = start("manual")
        wait_for(lambda: markers(hold, "held"), "the first DAG run to hold the block", runs.values())
        wait_for(lambda: markers(hold, "waiting"), "the second DAG run to wait for the block", runs.values())
        assert markers(hold, "held") == [runs["interval"].pid] and markers(hold, "waiting") == [runs["manual"].pid]
        assert data_pages(replay) == 0
        (hold / "release").touch()
        outputs = {kind: finish(p, timeout=180) for kind, p in runs.items()}
    finally:
        (hold / "release").touch()
        for p in runs.values():
            finish(p)
    seconds = time.monotonic() - started
    results = {}
    for kind, (out, err) in outputs.items():
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
        assert line, f"{kind}: {out[-2000:]} {err[-3000:]}"
        results[kind] = json.loads(line[len("RESULT "):])
    first, second = results["interval"], results["manual"]
    assert first["run_id"] != second["run_id"]
    assert first["state"] == second["state"] == "success", results
    assert first["states"]["plan_blocks[-1]"] == second["states"]["plan_blocks[-1]"] == "success"
    assert first["states"]["extract_load[0]"] == "success"
    assert second["states"]["extract_load[0]"] == "skipped"
    assert "extract_load[1]" not in first["states"] and "extract_load[1]" not in second["states"], "one block each"
    manual_log = outputs["manual"][0] + outputs["manual"][1]
    assert "block seattle_crime 2024-01 is being written by pid" in manual_log
    assert "source unchanged since last landing" in manual_log
    rows = assert_exactly(lake, "seattle_crime", MONTH, expected_keys(replay))
    assert data_pages(replay) == 1
    reliability.observed(f"runs {first['run_id']} and {second['run_id']}: the manual run's extract waited for the "
                         f"lock then skipped; {rows:,} rows landed once, key set equal, 0 duplicates, 1 data page "
                         f"fetched ({seconds:.0f} s for both runs)")
