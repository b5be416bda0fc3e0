"""How a source's dbt nodes become Airflow tasks in each execution mode (issue 15, item 2), and the
warehouse's writer lock that keeps one dbt invocation at a time on the DuckDB file.

Speed is measured by bench/dbt_modes.py, not here. What is checked: per-node tasks (the default)
each take the one-slot pool and the lock; in watcher mode the producer takes the pool and the lock
and does not retry (Cosmos's producer skips itself on a retry), the sensors stay out of the pool and
take the lock only once the producer has ended (when Cosmos's fallback may run their node), so a
sensor never waits for the producer's slot and the producer never waits for a sensor; the lock
excludes a second process until the holder releases it or dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest


def build(execution: str):
    import pendulum
    from airflow.sdk import DAG

    from civic_pipelines import sources
    from civic_pipelines.orchestration.dbt_group import build_dbt_group

    with DAG(f"dbt_{execution}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        build_dbt_group(sources.spec("seattle_crime"), execution=execution)
    return dag


def test_per_node_tasks_hold_the_pool_and_the_lock_and_retry_their_node():
    from civic_pipelines.orchestration import dbt_group

    dag = build("per_node")
    tasks = {t.task_id: t for t in dag.tasks}
    # The source's own layers (its marts are civic_marts'), one task per model.
    assert set(tasks) == {f"dbt.{m}_model_build" for m in ("stg_seattle_crime__offenses", "fct_crime_offenses")}
    for task in tasks.values():
        assert task.pool == "duckdb_writer" and task.retries == 2
        assert task._pre_execute_hook is dbt_group.hold_warehouse_lock
        assert task._post_execute_hook is dbt_group.release_warehouse_lock
        assert "--no-write-json" in task.dbt_cmd_flags
        assert task.callback is dbt_group.keep_dbt_results and task.callback_args["source"] == "seattle_crime"


def test_watcher_producer_holds_pool_and_lock_sensors_do_not():
    from civic_pipelines.orchestration import dbt_group

    dag = build("watcher")
    tasks = {t.task_id: t for t in dag.tasks}
    producer = tasks["dbt.dbt_producer_watcher"]
    assert producer.pool == "duckdb_writer" and producer.retries == 0
    assert producer._pre_execute_hook is dbt_group.hold_warehouse_lock
    sensors = [t for name, t in tasks.items() if name.endswith((".run", ".test"))]
    assert len(sensors) == 4  # a model sensor and a tests sensor per model (staging and fact)
    for sensor in sensors:
        assert sensor.pool == "default_pool" and sensor.retries == 2 and sensor.deferrable
        assert sensor._pre_execute_hook is dbt_group.hold_warehouse_lock_once_producer_ended
        assert sensor.poke_interval == dbt_group.WATCHER_POKE_SECONDS


def _hold(path: str, ready, release) -> None:
    os.environ["CIVIC_WAREHOUSE"] = path
    from civic_pipelines.dbt_results import warehouse_writer

    with warehouse_writer():
        ready.set()
        release.wait(120)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = str(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("CIVIC_WAREHOUSE", path)
    return path


def holder(warehouse):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    process = context.Process(target=_hold, args=(warehouse, ready, release))
    process.start()
    assert ready.wait(120), "the holder did not take the lock"
    return process, release


def test_the_lock_excludes_a_second_writer_until_the_holder_releases_or_dies(warehouse, monkeypatch):
    from filelock import Timeout

    from civic_pipelines.dbt_results import warehouse_writer

    monkeypatch.setenv("CIVIC_WAREHOUSE_LOCK_TIMEOUT", "0.2")
    process, release = holder(warehouse)
    with pytest.raises(Timeout):
        with warehouse_writer():
            pass
    release.set()
    process.join(60)
    with warehouse_writer() as lock:
        assert lock.is_locked
    # A holder killed mid-invocation leaves nothing to clean up: the kernel drops its lock.
    process, release = holder(warehouse)
    os.kill(process.pid, signal.SIGKILL)
    process.join(60)
    with warehouse_writer() as lock:
        assert lock.is_locked


class FakeSensor:
    def __init__(self, producer_state):
        self.producer_state = producer_state

    def _get_producer_task_status(self, context):
        return self.producer_state


@pytest.mark.parametrize(
    "producer_state, takes_lock",
    [
        (None, False),
        ("queued", False),
        ("running", False),  # it will read XComs and defer
        ("success", True),
        ("failed", True),
        ("skipped", True),  # it may run its node itself
    ],
)
def test_a_watcher_sensor_takes_the_lock_only_once_the_producer_ended(warehouse, producer_state, takes_lock):
    from civic_pipelines.dbt_results import warehouse_lock
    from civic_pipelines.orchestration import dbt_group

    context = {"task": FakeSensor(producer_state), "ti": None}
    dbt_group.hold_warehouse_lock_once_producer_ended(context)
    try:
        assert warehouse_lock().is_locked is takes_lock
    finally:
        dbt_group.release_warehouse_lock(context)
    assert not warehouse_lock().is_locked
