"""Two runs of the same block at once: one lands it, the other waits for the block lock and then skips
(or, past ``CIVIC_BLOCK_LOCK_TIMEOUT``, fails with one line naming the block and the holder); the
month's rows end up in the lake once, fetched once.

The overlap is made deterministic with the lock's test-only failpoint (``CIVIC_TEST_BLOCK_LOCK_DIR``):
the holder records ``held-<pid>`` and waits for a ``release`` file; a waiter records ``waiting-<pid>``
as soon as it finds the lock taken. The test releases the holder only once the other run is seen
waiting. Proved with two ``civic extract`` processes, and with two real Airflow DAG runs of the same
source and month at once (an interval-driven run for January, as the schedule makes it, and a manual
trigger for 2024-01), each driven by ``dag.test(use_executor=True)``, so the LocalExecutor runs every
task in a process of its own, on the session's metadata database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fault_checks import assert_exactly
from replay_env import connection_env

CIVIC = str(Path(sys.executable).with_name("civic"))
MONTH = "2024-01"


def seattle_env(replay, lake: str, hold: Path, **extra) -> dict:
    return {
        **os.environ,
        "CIVIC_LAKE": lake,
        "CIVIC_NO_AIRFLOW_LOOKUP": "1",
        "CIVIC_TEST_BLOCK_LOCK_DIR": str(hold),
        **connection_env(replay, "civic_seattle_crime"),
        **extra,
    }


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
    return subprocess.Popen(
        [CIVIC, "extract", "--source", "seattle_crime", "--month", MONTH],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def expected_keys(replay) -> list[int]:
    return [int(r["offense_id"]) for r in replay.dataset.rows_for_month(MONTH)]


@pytest.fixture
def hold(tmp_path) -> Path:
    """The lock failpoint's folder: the runs' held- and waiting- markers, and the release file."""
    folder = tmp_path / "hold"
    folder.mkdir()
    return folder


def test_two_extract_processes_one_lands_the_other_waits_and_skips(replay, lake, hold, reliability):
    env = seattle_env(replay, lake, hold)
    reliability.row(
        fault="two runs of one block at once (two civic extract processes)",
        source="seattle_crime",
        expected="one lands the block, the other waits for the block lock, then skips (unchanged); "
        "rows land once and the month is fetched once",
    )
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
    reliability.observed(
        f"pid {loser} waited {waited['lock_waited_seconds']:.2f} s behind pid {winner}, then skipped; "
        f"{rows:,} rows landed once, key set equal, 0 duplicates, 1 data page fetched"
    )


def test_a_run_that_waits_past_the_timeout_fails_naming_the_block_and_the_holder(replay, lake, hold, reliability):
    reliability.row(
        fault="two runs of one block at once, the second past CIVIC_BLOCK_LOCK_TIMEOUT",
        source="seattle_crime",
        expected="the second fails with one line naming the block and the holder (pid, host, since); "
        "the first lands the block once",
    )
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
        assert line.startswith(
            "civic extract: error: BlockLockTimeout: block seattle_crime 2024-01 is being written "
            f"by another run (pid {holder.pid} on {socket.gethostname()} since 20"
        ), line
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
    reliability.observed(
        f'after 1 s: "{line.split("error: ", 1)[1][:140]}..."; holder then landed {rows:,} rows once, 0 duplicates'
    )


def test_the_lock_file_of_another_user_still_locks_and_a_timeout_names_the_holder(tmp_path, monkeypatch):
    """A lock file made by another user (read-only to us) still locks (flock needs only a read handle);
    a second holder in the same process times out with the block, the holder and the lock file."""
    import builtins

    from civic_pipelines.block_lock import BlockLockTimeout, block_lock, lock_path

    lake = str(tmp_path / "lake")
    with block_lock(lake, "street_manager", "2024-03", "permit") as first:
        assert first.locked and first.waited_seconds is None
    path = lock_path(lake, "street_manager", "2024-03", "permit")
    assert path == tmp_path / "lake" / ".locks" / "street_manager" / "permit" / "2024-03.lock"
    real_open = builtins.open

    def no_write(file, mode="r", *args, **kwargs):
        if str(file) == str(path) and mode != "r":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    with block_lock(lake, "street_manager", "2024-03", "permit") as held:
        assert held.locked
        monkeypatch.setattr(builtins, "open", no_write)
        with pytest.raises(BlockLockTimeout) as timed_out:
            with block_lock(lake, "street_manager", "2024-03", "permit", timeout=0.3):
                pytest.fail("two holders of one block")
        monkeypatch.setattr(builtins, "open", real_open)
    message = str(timed_out.value)
    assert message.startswith(
        f"block street_manager permit 2024-03 is being written by another run (pid {os.getpid()} "
        f"on {socket.gethostname()} since 20"
    )
    assert f"lock file {path}" in message and "\n" not in message


# ---------------------------------------------------------------- through Airflow


def test_two_dag_runs_of_one_block_at_once_land_it_once(
    replay, lake, hold, tmp_path, airflow_db, monkeypatch, reliability
):
    reliability.row(
        fault="two DAG runs of one block at once (a data-interval run for the month, as the schedule "
        "makes it, and a manual trigger)",
        source="seattle_crime",
        expected="both runs succeed: one extract_load lands the block, the other waits for the block "
        "lock and is skipped (unchanged); rows land once, fetched once",
    )
    from airflow_runs import (
        execution_api,
        extract_side,
        parse_dag_bundle_once,
        small_dags_folder,
        sync_dags,
        task_states,
    )

    env = seattle_env(
        replay,
        lake,
        hold,
        CIVIC_WAREHOUSE=str(tmp_path / "warehouse.duckdb"),
        AIRFLOW__CORE__PARALLELISM="2",
        **small_dags_folder(tmp_path / "dags", ["seattle_crime"]),
    )
    env.pop("CIVIC_NO_AIRFLOW_LOOKUP")
    for key, value in env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("CIVIC_NO_AIRFLOW_LOOKUP", raising=False)
    dags_file = tmp_path / "dags" / "civic_test_dags.py"
    results, errors = {}, {}

    # Built here, not in the threads: a DAG's "with" block uses a process-wide context stack. For the
    # same reason the bundle parse each dag.test() starts with is done once, here, by sync_dags()
    # below, and reused by both threads (see parse_dag_bundle_once).
    dags = {kind: extract_side("seattle_crime", dags_file) for kind in ("interval", "manual")}
    parse_dag_bundle_once(monkeypatch)

    def run(kind):
        try:
            dag = dags[kind]
            if kind == "interval":  # the run the schedule makes for January: its data interval, no params
                results[kind] = dag.test(logical_date=datetime(2024, 2, 1, tzinfo=UTC), use_executor=True)
            else:  # a manual trigger for the same month
                results[kind] = dag.test(run_conf={"start_month": MONTH, "end_month": MONTH}, use_executor=True)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors[kind] = error

    started = time.monotonic()
    with execution_api() as url:
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
        sync_dags()
        # Each run is driven as dag.test(use_executor=True) drives it: the LocalExecutor runs every task
        # in its own process (the block lock's failpoint works across them), two runs at once.
        threads = [threading.Thread(target=run, args=(kind,), name=kind) for kind in ("interval", "manual")]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 120
            while not (markers(hold, "held") and markers(hold, "waiting")):
                assert not errors and time.monotonic() < deadline, f"no run waited for the other: {errors}"
                assert any(t.is_alive() for t in threads), f"both runs ended before overlapping: {results}"
                time.sleep(0.05)
            assert len(markers(hold, "held")) == 1 and len(markers(hold, "waiting")) == 1
            assert data_pages(replay) == 0, "the holder is stopped at the failpoint before any request"
        finally:
            (hold / "release").touch()
            for thread in threads:
                thread.join(timeout=180)
    seconds = time.monotonic() - started
    assert not errors, errors
    first, second = results["interval"], results["manual"]
    states = {kind: task_states(run) for kind, run in results.items()}
    assert first.run_id != second.run_id
    assert first.state == second.state == "success", states
    extract = {kind: {k: v for k, v in s.items() if k[0] == "extract_load"} for kind, s in states.items()}
    assert all(list(e) == [("extract_load", 0)] for e in extract.values()), extract  # one block each
    assert sorted(e[("extract_load", 0)] for e in extract.values()) == ["skipped", "success"], extract
    loser = next(kind for kind, e in extract.items() if e[("extract_load", 0)] == "skipped")
    from airflow_runs import run_rows, task_log_files

    log = "".join(
        p.read_text() for p in task_log_files("seattle_crime", results[loser].run_id) if "extract_load" in str(p)
    )
    assert "block seattle_crime 2024-01 is being written by pid" in log and "lock acquired after waiting" in log
    assert "source unchanged since last landing" in log
    skipped = json.loads(run_rows(results[loser].run_id, "seattle_crime")["xcom"]["extract_load[0].manifest"])
    rows = assert_exactly(lake, "seattle_crime", MONTH, expected_keys(replay))
    assert data_pages(replay) == 1
    reliability.observed(
        f"the {loser} run's extract_load waited {skipped['lock_waited_seconds']:.2f} s for the lock, "
        f"then skipped (unchanged); {rows:,} rows landed once, key set equal, 0 duplicates, "
        f"1 data page fetched ({seconds:.0f} s for both runs)"
    )


def test_dag_bundle_parse_of_dag_test_in_two_threads_is_done_once(tmp_path, monkeypatch):
    """What each dag.test() does first, in two threads at once as the test above runs them: parse the
    DAG bundle and serialize what it found. Airflow keeps the parse's ``with DAG`` stack process-wide,
    so two threads parsing at once build each other's DAGs (seen in 56 of 80 parses: "Tried to set
    relationships between tasks in more than one Dag", "group_id 'dbt' has already been added"; in
    the test above, the SerializationError "dictionary changed size during iteration"). With
    parse_dag_bundle_once, the bundle is parsed once in this thread and both threads serialize
    that whole DAG, three times over."""
    from airflow.dag_processing import dagbag
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow_runs import parse_dag_bundle_once, small_dags_folder

    folder = tmp_path / "dags"
    for key, value in small_dags_folder(folder, ["seattle_crime"]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    monkeypatch.setenv("CIVIC_LAKE", str(tmp_path / "lake"))
    parses = []
    real_parse = dagbag.BundleDagBag
    monkeypatch.setattr(
        dagbag, "BundleDagBag", lambda *a, **k: parses.append(threading.current_thread().name) or real_parse(*a, **k)
    )
    parse_dag_bundle_once(monkeypatch)

    def parse() -> tuple[dict, list[str], str]:
        bag = dagbag.BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-folder")
        serialized = [LazyDeserializedDAG.from_dag(dag) for dag in bag.dags.values()]
        return bag.import_errors, sorted(bag.dags["seattle_crime"].task_dict), serialized[0].hash

    alone_errors, alone_tasks, alone_serialized = parse()
    assert alone_errors == {}
    assert {"plan_blocks", "extract_load", "dbt.stg_seattle_crime__offenses_model_build"} <= set(alone_tasks)
    results, barrier = [], threading.Barrier(2)

    def both():
        barrier.wait()
        try:
            results.append(parse())
        except BaseException as error:  # noqa: BLE001 - asserted below
            results.append((error, [], ""))

    for _ in range(3):
        threads = [threading.Thread(target=both) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert results == [({}, alone_tasks, alone_serialized)] * 6
    assert parses == [threading.current_thread().name]  # parsed once, in this thread
