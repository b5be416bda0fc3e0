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

This module is the parent (the replay, the warming pass, one child per configuration); the children
are bench/vs_dlt_ours.py and bench/vs_dlt_dlt.py (what both share: bench/vs_dlt_child.py), the
printed report bench/vs_dlt_report.py.

    .venv/bin/python bench/vs_dlt.py [--rows 500000] [--sources soda,arcgis] [--skip-dlt-default]
        [--soda-month 2023-07] [--arcgis-month 2024-07] [--arcgis-page-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as common
from vs_dlt_child import CONFIGS, LOOPBACK, SOURCES, loopback_only, peak_mb  # noqa: F401 - re-exported
from vs_dlt_dlt import child_dlt, dlt_config  # noqa: F401 - re-exported
from vs_dlt_ours import Timers, child_ours, instrument  # noqa: F401 - re-exported
from vs_dlt_report import report

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

    report(kinds, configs, results, dlt.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
