"""Head-to-head with dlt: the same replayed SODA and ArcGIS months into DuckDB, by our extractor and
by dlt's ``rest_api`` source (issue 8).

For each source (default: one Seattle crime month over SODA and one Minneapolis 311 month over
ArcGIS REST, 500,000 rows each), the replay server (in this process, loopback only) serves the
month, warmed once so every run reads the same cached pages; then each configuration runs in a
fresh child process of its own:

  * ours:         ``run_block`` into a temporary lake (fetch, typed columns, validation,
                  quarantine, dedup check, checksum, parquet, manifest) + ``CREATE TABLE ... AS
                  SELECT * FROM read_parquet(<the landed block>)`` into a DuckDB file, timed together;
  * dlt parquet:  ``dlt.pipeline(destination="duckdb")`` running a ``rest_api_source`` with
                  ``loader_file_format="parquet"`` (dlt's advice for speed);
  * dlt default:  the same pipeline in dlt's default configuration (duckdb's default loader file
                  format, insert_values). Slow: ``--skip-dlt-default`` leaves it out.

The ``rest_api`` paging is the one our adapters use, with the same query parameters (so the
replay answers both from the same cache entry):

  * SODA:   an ``offset`` paginator on ``$offset``/``$limit`` (50,000, SODA 2.0's maximum) with our
            ``$where`` (the month) and ``$order=:id``; SODA gives no total, so it stops after the
            first empty page (``total_path=None``; one request more than ours, which stops at a
            short page);
  * ArcGIS: an ``OffsetPaginator`` on ``resultOffset``/``resultRecordCount`` (the layer's
            ``maxRecordCount``) with our ``where``/``outFields``/``orderByFields``/``outSR``,
            ``data_selector="features"``, continuing while the answer says
            ``exceededTransferLimit: true``. ArcGIS omits that flag on the last page, which dlt's
            ``has_more_path`` treats as an error, so the stop condition is a four-line subclass
            (``update_state`` is the documented extension point); the empty-page stop stays on
            as a backstop.

Every child counts the rows of its DuckDB table; the bench prints them and whether the sides
agree. Peak memory is the child's own ``VmHWM`` (see bench/_common.py: ``ru_maxrss`` of a child
would include this process's replay caches, which it inherits across fork + exec), the larger of
that and ``getrusage(RUSAGE_CHILDREN)`` of the child's own sub-processes, if any. dlt runs with
telemetry off, its data, pipelines and project dirs under a temporary folder, and in every child
a socket guard refuses any connection that is not to loopback (the count is printed: it must be 0).

Our run is timed by phase (wrappers around the adapter's functions, a few calls per page; the
fetch and, for ArcGIS, the JSON parse run in a prefetch thread, so their time overlaps the main
thread's), which the bench prints as "where our time goes". The replay server's own handler time
is printed too: it is Python on the same two cores, and every configuration pays it.

    .venv/bin/python bench/vs_dlt.py [--rows 500000] [--sources soda,arcgis] [--skip-dlt-default]
        [--soda-month 2023-07] [--arcgis-month 2024-07] [--arcgis-page-size N]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common as common

SOURCES = {
    "soda": {
        "source": "seattle_crime",
        "conn_id": "civic_seattle_crime",
        "table": "seattle_crime",
        "label": "SODA (seattle_crime)",
    },
    "arcgis": {
        "source": "minneapolis_311",
        "conn_id": "civic_minneapolis_311",
        "table": "minneapolis_311",
        "label": "ArcGIS (minneapolis_311)",
    },
}
CONFIGS = ("ours", "dlt-parquet", "dlt-default")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ---------------------------------------------------------------- guards (in every child)


def loopback_only() -> dict:
    """Refuse every socket connection that is not to loopback; returns the refusal counter."""
    import socket

    refused = {"count": 0, "targets": []}
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            refused["count"] += 1
            refused["targets"].append(str(address)[:80])
            raise ConnectionRefusedError(f"vs_dlt: non-loopback connection refused: {address}")
        return original(self, address)

    socket.socket.connect = guarded
    return refused


def peak_mb() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(common.peak_rss_mb(), children)


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


# ---------------------------------------------------------------- children


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


def dlt_config(kind: str, base_url: str, plan: dict) -> dict:
    from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

    if kind == "soda":
        paginator = {
            "type": "offset",
            "limit": plan["page_size"],
            "offset_param": "$offset",
            "limit_param": "$limit",
            "total_path": None,
            "stop_after_empty_page": True,
        }
        endpoint = {"path": plan["path"], "params": plan["params"], "data_selector": "$"}
    else:

        class ExceededTransferLimitPaginator(OffsetPaginator):
            """Offset paging that continues while the page says ``exceededTransferLimit: true``
            (ArcGIS omits the flag on the last page)."""

            def update_state(self, response, data=None) -> None:
                super().update_state(response, data)
                if response.json().get("exceededTransferLimit") is not True:
                    self._has_next_page = False

        paginator = ExceededTransferLimitPaginator(
            limit=plan["page_size"],
            offset_param="resultOffset",
            limit_param="resultRecordCount",
            total_path=None,
            stop_after_empty_page=True,
        )
        endpoint = {"path": plan["path"], "params": plan["params"], "data_selector": "features"}
    return {
        "client": {"base_url": base_url, "paginator": paginator},
        "resources": [{"name": SOURCES[kind]["table"], "endpoint": endpoint}],
    }


def child_dlt(args) -> dict:
    refused = loopback_only()
    work = Path(args.workdir)
    os.environ.update(
        {
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            # dlt looks for secrets in Airflow Variables whenever Airflow is importable (it is, in this
            # project): that imports Airflow and reads its metadata database. Not part of loading.
            "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
            "DLT_DATA_DIR": str(work / "dlt_data"),
            "DLT_PROJECT_DIR": str(work / "dlt_project"),
        }
    )
    (work / "dlt_project").mkdir(parents=True, exist_ok=True)
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    plan = json.loads(args.plan)
    table = SOURCES[args.kind]["table"]
    fmt = "parquet" if args.config == "dlt-parquet" else None
    # dlt's one-off start-up (resolving its configuration providers), not counted, as our side's
    # imports are not.
    warm = time.perf_counter()
    rest_api_source(dlt_config(args.kind, args.base_url, plan))
    startup = time.perf_counter() - warm
    memory = {"rss_start_mb": common.current_rss_mb()}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    source = rest_api_source(dlt_config(args.kind, args.base_url, plan))
    pipeline = dlt.pipeline(
        pipeline_name=f"vs_dlt_{args.kind}_{args.config.replace('-', '_')}",
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="bench",
        pipelines_dir=str(work / "dlt_pipelines"),
    )
    info = pipeline.run(source, loader_file_format=fmt) if fmt else pipeline.run(source)
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    info.raise_on_failed_jobs()
    steps = {}
    trace = pipeline.last_trace
    for step in trace.steps if trace else []:
        if step.started_at and step.finished_at and step.step != "run":
            steps[step.step] = (step.finished_at - step.started_at).total_seconds()
    con = duckdb.connect(str(work / "dlt.duckdb"), read_only=True)
    rows = con.execute(f"SELECT count(*) FROM bench.{table}").fetchone()[0]
    columns = len(con.execute(f"DESCRIBE bench.{table}").fetchall())
    con.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": peak_mb(),
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "steps": steps,
        "startup_seconds": startup,
        "columns": columns,
        "memory": memory,
        "loader_file_format": fmt or "default (insert_values)",
        "refused": refused,
    }


# ---------------------------------------------------------------- the parent


def plan_source(kind: str, base_url: str, month: str) -> dict:
    """The month's query as our adapter sends it (for dlt), and one warming pass over its pages
    (the replay generates and caches the month; not timed)."""
    import orjson

    from civic_pipelines import connections, sources
    from civic_pipelines.http import get_bytes, make_session

    spec = SOURCES[kind]
    common.point_connection(spec["conn_id"], base_url)
    module = sources.get(spec["source"])
    connection = connections.resolve(module.SPEC.conn_id, module.SPEC.default_base_url)
    with make_session() as session:
        if kind == "soda":
            probed = module.probe(session, connection)
            params = module.page_params(probed["schema"], month, 0)
            page_size = module.page_size
            path = f"resource/{module.dataset_id}.json"
            url = f"{base_url}/{path}"
        else:
            probed = module.probe(session, connection, month=month)
            page_size = probed["max_record_count"]
            params = module.query_params(month, 0, page_size, probed["object_id_field"])
            url = f"{probed['layer_url']}/query"
            path = url[len(base_url) + 1 :]
        offset_key, limit_key = ("$offset", "$limit") if kind == "soda" else ("resultOffset", "resultRecordCount")
        fixed = {k: v for k, v in params.items() if k not in (offset_key, limit_key)}
        rows = nbytes = offset = 0
        while True:
            body = get_bytes(session, url, params={**fixed, offset_key: str(offset), limit_key: str(page_size)})
            nbytes += len(body)
            document = orjson.loads(body)
            page = document if kind == "soda" else document["features"]
            rows += len(page)
            offset += page_size
            if (kind == "soda" and len(page) < page_size) or (
                kind == "arcgis" and not document.get("exceededTransferLimit")
            ):
                break
    return {"path": path, "params": fixed, "page_size": page_size, "rows": rows, "bytes": nbytes}


def run_config(script: str, kind: str, config: str, base_url: str, month: str, plan: dict, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"vs-dlt-{kind}-{config}-") as workdir:
        common.clear_replay_log(base_url)
        result = common.run_child(
            script,
            [
                "--child",
                config,
                "--kind",
                kind,
                "--base-url",
                base_url,
                "--month",
                month,
                "--workdir",
                workdir,
                "--plan",
                json.dumps(plan),
            ],
            timeout=timeout,
        )
        log = common.replay_log(base_url)
    data = [r for r in log if "/resource/" in r["path"] or r["path"].endswith("/query")]
    result["requests"] = len(data)
    result["server_seconds"] = sum(r.get("ms") or 0 for r in log) / 1000
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows in each source's month (default 500000)")
    parser.add_argument("--sources", default="soda,arcgis")
    parser.add_argument(
        "--skip-dlt-default",
        action="store_true",
        help="leave out dlt's default configuration (about 7 minutes per 500,000 rows)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"which to run (default {','.join(CONFIGS)})")
    parser.add_argument("--soda-month", default="2023-07")
    parser.add_argument("--arcgis-month", default="2024-07")
    parser.add_argument(
        "--arcgis-page-size", type=int, default=None, help="the layer's maxRecordCount (replay default 2000)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to each child run")
    parser.add_argument("--child", choices=CONFIGS)
    parser.add_argument("--kind", choices=sorted(SOURCES))
    parser.add_argument("--base-url")
    parser.add_argument("--month")
    parser.add_argument("--workdir")
    parser.add_argument("--plan")
    args = parser.parse_args()

    if args.child:
        args.config = args.child
        result = child_ours(args) if args.child == "ours" else child_dlt(args)
        print(json.dumps(result))
        return 0

    kinds = [k.strip() for k in args.sources.split(",") if k.strip()]
    unknown = set(kinds) - set(SOURCES)
    if unknown:
        parser.error(f"unknown source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")
    wanted = {c.strip() for c in args.configs.split(",") if c.strip()}
    if wanted - set(CONFIGS) or "ours" not in wanted:
        parser.error(f"--configs: a subset of {', '.join(CONFIGS)} that includes ours")
    configs = [c for c in CONFIGS if c in wanted and not (c == "dlt-default" and args.skip_dlt_default)]
    months = {"soda": args.soda_month, "arcgis": args.arcgis_month}
    script = str(Path(__file__).resolve())
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

    import dlt

    results: dict = {}
    server = common.start_replay()
    try:
        for kind in kinds:
            config = {"rows_per_month": args.rows}
            if kind == "arcgis" and args.arcgis_page_size:
                config["max_record_count"] = args.arcgis_page_size
            common.configure(server.url, SOURCES[kind]["source"], config)
            warm = time.perf_counter()
            plan = plan_source(kind, server.url, months[kind])
            print(
                f"{SOURCES[kind]['label']} {months[kind]}: {plan['rows']:,} rows, {common.mb(plan['bytes']):,.1f} MB of JSON "
                f"in pages of {plan['page_size']:,} (replay generated and warmed in {time.perf_counter() - warm:.1f} s, "
                "not counted)",
                flush=True,
            )
            for config_name in configs:
                result = run_config(script, kind, config_name, server.url, months[kind], plan, args.timeout)
                results[(kind, config_name)] = result
                print(
                    f"  {config_name:<12} {result['rows']:>9,} rows {result['seconds']:>8.1f} s "
                    f"{result['rows'] / result['seconds']:>9,.0f} rows/s  peak {result['peak_rss_mb']:,.0f} MB",
                    flush=True,
                )
            results[(kind, "plan")] = plan
    finally:
        server.stop()

    print(
        f"\nour extractor vs dlt {dlt.__version__} rest_api -> DuckDB; replay server on loopback in the parent "
        f"process; {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f} (shared machine)\n"
    )
    header = (
        f"{'source':<26} {'tool / config':<30} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>11} "
        f"{'CPU s':>7} {'server s':>8} {'reqs':>5} {'ours is':>9}"
    )
    print(header)
    print("-" * len(header))
    names = {
        "ours": "ours (run_block + DuckDB load)",
        "dlt-parquet": "dlt, loader_file_format=parquet",
        "dlt-default": "dlt, default (insert_values)",
    }
    for kind in kinds:
        ours = results[(kind, "ours")]
        ours_rate = ours["rows"] / ours["seconds"]
        for config_name in configs:
            r = results[(kind, config_name)]
            rate = r["rows"] / r["seconds"]
            ratio = "-" if config_name == "ours" else f"{ours_rate / rate:.2f}x"
            print(
                f"{SOURCES[kind]['label']:<26} {names[config_name]:<30} {r['rows']:>9,} {r['seconds']:>8.1f} {rate:>9,.0f} "
                f"{r['peak_rss_mb']:>11,.0f} {r['cpu_seconds']:>7.1f} {r['server_seconds']:>8.1f} {r['requests']:>5} {ratio:>9}"
            )
    print(
        "\nrows: counted in each run's DuckDB table.  peak RSS: VmHWM of the child (not ru_maxrss, see bench/_common.py).  "
        "CPU s: the child's user+sys.  server s: the replay's handler time for the run's requests (same cores).  "
        "ours is: our rows/s over that configuration's."
    )

    print()
    verdicts = {}
    for kind in kinds:
        ours = results[(kind, "ours")]
        counts = {c: results[(kind, c)]["rows"] for c in configs}
        same = len(set(counts.values())) == 1
        m = ours["manifest"]
        print(
            f"{SOURCES[kind]['label']}: rows in DuckDB "
            + ", ".join(f"{c} {n:,}" for c, n in counts.items())
            + (" - the same" if same else " - DIFFERENT")
            + f" (ours fetched {m.get('fetched_rows') or 0:,}: landed {m.get('rows') or 0:,}, quarantined "
            f"{m.get('quarantined') or 0:,}, duplicates collapsed {m.get('duplicates_collapsed') or 0:,})"
        )
        dlts = [c for c in configs if c != "ours"]
        if dlts:
            best = max(dlts, key=lambda c: results[(kind, c)]["rows"] / results[(kind, c)]["seconds"])
            b = results[(kind, best)]
            speed = (ours["rows"] / ours["seconds"]) / (b["rows"] / b["seconds"])
            memory_ok = ours["peak_rss_mb"] <= b["peak_rss_mb"]
            met = speed >= 3 and memory_ok
            verdicts[kind] = (
                "met" if met else "NOT met"
            ) + f" ({speed:.2f}x, {ours['peak_rss_mb']:,.0f} vs {b['peak_rss_mb']:,.0f} MB)"
            print(
                f"  target >= 3x the faster dlt ({best}) at equal or lower memory: {speed:.2f}x, "
                f"{ours['peak_rss_mb']:,.0f} MB vs {b['peak_rss_mb']:,.0f} MB -> {'met' if met else 'NOT met'}"
            )
        for c in dlts:
            steps = results[(kind, c)].get("steps") or {}
            print(
                f"  {c}: "
                + ", ".join(f"{name} {s:.1f} s" for name, s in steps.items())
                + f"; {results[(kind, c)].get('columns')} columns in dlt's table; start-up before the timed run "
                f"{results[(kind, c)]['startup_seconds']:.1f} s (not counted), RSS then "
                f"{results[(kind, c)]['memory']['rss_start_mb']:,.0f} MB"
            )
        refused = sum(results[(kind, c)]["refused"]["count"] for c in configs)
        print(f"  non-loopback connections refused in the children: {refused}")

    for kind in kinds:
        ours = results[(kind, "ours")]
        print(
            f"\nwhere our time goes, {SOURCES[kind]['label']} ({ours['seconds']:.2f} s wall, {ours['cpu_seconds']:.2f} s CPU "
            f"in our process, {ours['server_seconds']:.2f} s in the replay's handlers):"
        )
        phases = ours["phases"]
        for thread in ("main", "prefetch"):
            names = [n for n in phases if ("[prefetch thread]" in n) == (thread == "prefetch")]
            if thread == "prefetch" and names:
                print("  in the prefetch thread (overlapping the main thread's time):")
            for name in sorted(names, key=lambda n: -phases[n]):
                label = name.replace(" [prefetch thread]", "")
                print(
                    f"  {label:<62} {phases[name]:>7.2f} s {100 * phases[name] / ours['seconds']:5.1f}%  "
                    f"x{ours['calls'].get(name, 0)}"
                )
            if thread == "main":
                print(
                    f"  {'other (run_block bookkeeping, manifest, imports on first use)':<62} "
                    f"{ours['seconds'] - ours['main_total']:>7.2f} s {100 * (1 - ours['main_total'] / ours['seconds']):5.1f}%"
                )
        m = ours["memory"]
        print(
            f"  memory: RSS {m['rss_start_mb']:,.0f} MB at the start (interpreter, imports); peak "
            f"{m['peak_run_block_mb']:,.0f} MB by the end of run_block (Arrow's {m['arrow_pool']} pool peaked at "
            f"{m['arrow_pool_peak_mb']:,.0f} MB: the whole block is held in memory until it is written), "
            f"{m['rss_after_run_block_mb']:,.0f} MB after it; {ours['peak_rss_mb']:,.0f} MB with the DuckDB load"
        )
    if verdicts:
        print(
            "\ntarget (>= 3x the faster dlt configuration at equal or lower memory): "
            + "; ".join(f"{kind} {verdict}" for kind, verdict in verdicts.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
