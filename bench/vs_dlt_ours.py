"""Our side of bench/vs_dlt.py, in its child process: ``run_block`` into a temporary lake plus a
``read_parquet`` load into DuckDB, timed together, with the adapter's functions wrapped in phase
timers (``Timers``) for "where our time goes".
"""

from __future__ import annotations

import functools
import resource
import threading
import time
from pathlib import Path

import _common as common
from vs_dlt_child import SOURCES, loopback_only, peak_mb

# ---------------------------------------------------------------- phase timers (our run)


class Timers:
    """Seconds per phase, exclusive of the phases timed inside it (so a thread's phases add up),
    the prefetch thread's apart from the main thread's (they overlap)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.main_total = 0.0  # main thread, sum of the outermost phases
        self._lock = threading.Lock()
        self._local = threading.local()

    def _stack(self) -> list:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def enter(self) -> None:
        self._stack().append(0.0)  # time spent in phases nested in this one

    def leave(self, name: str, seconds: float) -> None:
        stack = self._stack()
        nested = stack.pop()
        if stack:
            stack[-1] += seconds
        main = threading.current_thread() is threading.main_thread()
        if not main:
            name += " [prefetch thread]"
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds - nested
            self.calls[name] = self.calls.get(name, 0) + 1
            if main and not stack:
                self.main_total += seconds

    def wrap(self, owner, attribute: str, name: str) -> None:
        function = getattr(owner, attribute)
        timers = self

        @functools.wraps(function)  # keeps the signature: run_block inspects probe()'s parameters
        def timed(*args, **kwargs):
            timers.enter()
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timers.leave(name, time.perf_counter() - started)

        setattr(owner, attribute, timed)

    def wrap_generator(self, owner, attribute: str, name: str) -> None:
        """Time spent inside each ``next()`` of a generator (waiting for the next page)."""
        function = getattr(owner, attribute)
        timers = self

        @functools.wraps(function)
        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                timers.enter()
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    timers.leave(name, time.perf_counter() - started)
                yield item

        setattr(owner, attribute, timed)


def instrument(source: str, timers: Timers) -> None:
    from civic_pipelines import extract, jsonarrow, sources
    from civic_pipelines.adapters import arcgis, socrata

    module = sources.get(source)
    cls = type(module)
    timers.wrap(cls, "probe", "metadata probe")
    timers.wrap(cls, "collapse_duplicates", "dedup check")
    timers.wrap(extract, "content_sha256_all", "content checksum")
    timers.wrap(extract, "write_block", "parquet write + manifest")
    if isinstance(module, socrata.SocrataDatasetSource):
        timers.wrap(socrata, "get_bytes", "HTTP fetch")
        timers.wrap(jsonarrow.JsonPage, "__init__", "JSON array -> NDJSON rewrite")
        timers.wrap_generator(cls, "iter_pages", "waiting for the next page (fetch not hidden by the prefetch)")
        timers.wrap(jsonarrow.JsonPage, "to_table", "JSON parse (Arrow's reader)")
        timers.wrap(cls, "validate", "typing + validation (Arrow compute)")
        timers.wrap(cls, "sort_by_key", "key order check")
    elif isinstance(module, arcgis.ArcGisFeatureLayerSource):
        timers.wrap(arcgis, "get_bytes", "HTTP fetch")
        timers.wrap(cls, "get_json", "JSON parse (orjson)")
        timers.wrap_generator(cls, "iter_pages", "waiting for the next page (fetch not hidden by the prefetch)")
        timers.wrap(cls, "page_table", "features -> typed Arrow + validation (Python lists)")


def child_ours(args) -> dict:
    refused = loopback_only()
    spec = SOURCES[args.kind]
    common.point_connection(spec["conn_id"], args.base_url)
    import duckdb

    import civic_pipelines.extract as extract  # imports outside the timed run (as dlt's are)

    timers = Timers()
    instrument(spec["source"], timers)
    import pyarrow as pa

    work = Path(args.workdir)
    memory = {"rss_start_mb": common.current_rss_mb()}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    manifest = extract.run_block(spec["source"], args.month, lake=str(work / "lake"), force=True)
    extracted = time.perf_counter()
    pool = pa.default_memory_pool()
    memory.update(
        peak_run_block_mb=common.peak_rss_mb(),
        rss_after_run_block_mb=common.current_rss_mb(),
        arrow_pool=pool.backend_name,
        arrow_pool_peak_mb=(pool.max_memory() or 0) / 2**20,
        arrow_pool_held_mb=pool.bytes_allocated() / 2**20,
    )
    con = duckdb.connect(str(work / "ours.duckdb"))
    con.execute(f"CREATE TABLE {spec['table']} AS SELECT * FROM read_parquet(?)", [manifest["path"]])
    rows = con.execute(f"SELECT count(*) FROM {spec['table']}").fetchone()[0]
    con.close()
    seconds = time.perf_counter() - started
    timers.enter()
    timers.leave("DuckDB load (CREATE TABLE AS read_parquet)", time.perf_counter() - extracted)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": peak_mb(),
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "run_block_seconds": extracted - started,
        "phases": timers.seconds,
        "calls": timers.calls,
        "main_total": timers.main_total,
        "manifest": {
            k: manifest.get(k)
            for k in (
                "rows",
                "quarantined",
                "fetched_rows",
                "fetched_bytes",
                "pages",
                "duplicates_collapsed",
                "quarantine_reasons",
                "bytes",
            )
        },
        "memory": memory,
        "refused": refused,
    }
