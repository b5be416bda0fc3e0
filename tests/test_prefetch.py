"""The paging adapters' prefetch pool: an exception in the caller (Airflow's execution_timeout
raised into the task's main thread) leaves at once, not when the page in flight comes back."""

from __future__ import annotations

import threading
import time

import pytest

from civic_pipelines.prefetch import prefetch_pool


def test_an_exception_does_not_wait_for_the_page_in_flight():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with prefetch_pool("test-prefetch") as pool:
            pool.submit(release.wait, 30)
            raise TimeoutError("execution_timeout")
    assert time.monotonic() - started < 2
    release.set()


def test_a_normal_exit_waits_for_the_last_page():
    done = []
    with prefetch_pool("test-prefetch") as pool:
        pool.submit(lambda: (time.sleep(0.3), done.append(1)))
    assert done == [1]
