"""The one-thread pool the paging adapters download the next page in while the current one parses.

On an exception in the caller (a bad page, or Airflow's ``execution_timeout`` raised into the task's
main thread) the pool is left without waiting for the page in flight: ``with ThreadPoolExecutor``
would wait for it, so a hung request held a timed-out task (and its failure mail) until its read
timeout ran out.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def prefetch_pool(name: str) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
