"""Benchmark: one Minneapolis 311 block (an ArcGIS hosted layer's month) from the replay server.

Volume: the contract (shared/contracts/minneapolis_311.md, *Volumes*) has no per-layer counts;
its only figure is 61,000 requests in a year (2006), about 5,100 a month. The replay's model puts
2015-2026 at 55,000-67,000 a year with summer and snow peaks (about 6,100 in July 2024). A busy
month is taken as 6,500 requests (about 1.25x the average month), paged by the replay's
maxRecordCount of 2,000 (the contract reports 1,000 or 16,000: try --max-record-count).

Prints, for the block (default 2024-07):
  * ceiling: the same query pages fetched one after another and parsed (orjson), nothing else;
  * runs:    ``run_block`` (probe, paged fetch with one page of prefetch, typed columns,
             quarantine, dedup, parquet, manifest) into a temporary lake: the first run cold (a
             fresh process, an empty lake), then forced re-runs (same process; the block is landed,
             so the re-run also diffs against it), and one unforced run that skips on the watermark;
with rows, fetched MB (query response bytes), seconds, rows/s, MB/s, the run's peak RSS
(VmHWM of the child process, reset per run; not ru_maxrss: see bench/_common.py), pages, requests
and the replay server's own handler time for those requests (it shares the machine's cores).

    .venv/bin/python bench/extract_minneapolis_311.py [--month 2024-07] [--rows-per-month 6500]
        [--max-record-count N] [--runs 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _common as common

SOURCE = "minneapolis_311"
CONN_ID = "civic_minneapolis_311"


def phase_ceiling(base_url: str, month: str) -> dict:
    import orjson

    from civic_pipelines import connections, sources
    from civic_pipelines.http import get_bytes, make_session

    common.point_connection(CONN_ID, base_url)
    source = sources.get(SOURCE)
    connection = connections.resolve(source.SPEC.conn_id, source.SPEC.default_base_url)
    rows = nbytes = pages = 0
    started = time.perf_counter()
    with make_session() as session:
        probed = source.probe(session, connection, month=month)
        url = f"{probed['layer_url']}/query"
        offset = 0
        while True:
            body = get_bytes(
                session,
                url,
                params=source.query_params(month, offset, probed["max_record_count"], probed["object_id_field"]),
            )
            document = orjson.loads(body)
            features = document["features"]
            rows += len(features)
            nbytes += len(body)
            pages += 1
            if document.get("exceededTransferLimit") is not True:
                break
            offset += len(features)
    return {
        "rows": rows,
        "bytes": nbytes,
        "pages": pages,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": common.peak_rss_mb(),
    }


def summarize(run: dict) -> dict:
    manifest = run["manifest"]
    queries = [r for r in run["requests"] if r["path"].endswith("/query")]
    return {
        "rows": (manifest.get("rows") or 0) + (manifest.get("quarantined") or 0),
        "landed": manifest.get("rows") or 0,
        "bytes": manifest.get("fetched_bytes", 0),
        "pages": manifest.get("pages", len(queries)),
        "requests": len(run["requests"]),
        "server_ms": sum(r["ms"] or 0 for r in run["requests"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--month", default="2024-07")
    parser.add_argument("--rows-per-month", type=int, default=6500)
    parser.add_argument("--max-record-count", type=int, default=None, help="layer page size (replay default 2000)")
    parser.add_argument("--runs", type=int, default=4, help="block runs: 1 cold + forced re-runs")
    parser.add_argument("--phase")
    parser.add_argument("--base-url")
    args = parser.parse_args()

    if args.phase:
        result = (
            phase_ceiling(args.base_url, args.month)
            if args.phase == "ceiling"
            else common.repeated_blocks(SOURCE, CONN_ID, args.base_url, args.month, args.runs)
        )
        print(json.dumps(result))
        return 0

    server = common.start_replay()
    try:
        config = {"rows_per_month": args.rows_per_month}
        if args.max_record_count:
            config["max_record_count"] = args.max_record_count
        described = common.configure(server.url, SOURCE, config)
        with common.measured() as warming:
            common.point_connection(CONN_ID, server.url)
            phase_ceiling(server.url, args.month)  # generate and cache the month, warm the server's paths
        print(
            f"replay on {server.url}: {SOURCE} {args.month}, {args.rows_per_month:,} rows, "
            f"maxRecordCount {described['max_record_count']:,} (server warmed with one pass in {warming['seconds']:.2f} s, not counted)",
            flush=True,
        )
        script = str(Path(__file__).resolve())
        common.clear_replay_log(server.url)
        ceiling = common.run_child(script, ["--phase", "ceiling", "--base-url", server.url, "--month", args.month])
        ceiling["requests"] = common.replay_log(server.url)
        result = common.run_child(
            script, ["--phase", "runs", "--base-url", server.url, "--month", args.month, "--runs", str(args.runs)]
        )
    finally:
        server.stop()

    runs = result["runs"]
    first = summarize(runs[0])
    print(
        f"\n{SOURCE} {args.month}: {first['rows']:,} rows ({first['landed']:,} landed), "
        f"{common.mb(first['bytes']):.1f} MB of query JSON, {first['pages']} pages of "
        f"{described['max_record_count']:,} on loopback\n"
    )
    print(
        f"{'phase':<30} {'rows':>7} {'MB':>6} {'seconds':>8} {'rows/s':>9} {'MB/s':>6} {'peak RSS MB':>12} "
        f"{'RSS before':>10} {'pages':>6} {'requests':>9} {'server ms':>10}"
    )

    def line(name, rows, nbytes, seconds, peak, before, pages, requests, server_ms):
        before = f"{before:>10.0f}" if before is not None else f"{'-':>10}"
        print(
            f"{name:<30} {rows:>7,} {common.mb(nbytes):>6.1f} {seconds:>8.3f} {rows / seconds:>9,.0f} "
            f"{common.mb(nbytes) / seconds:>6.1f} {peak:>12.0f} {before} {pages:>6} {requests:>9} {server_ms:>10.0f}"
        )

    line(
        "ceiling (fetch + orjson)",
        ceiling["rows"],
        ceiling["bytes"],
        ceiling["seconds"],
        ceiling["peak_rss_mb"],
        None,
        ceiling["pages"],
        len(ceiling["requests"]),
        sum(r.get("ms") or 0 for r in ceiling["requests"]),
    )
    for i, run in enumerate(runs):
        s = summarize(run)
        name = "block, cold (empty lake)" if i == 0 else f"block, forced re-run {i}"
        line(
            name,
            s["rows"],
            s["bytes"],
            run["seconds"],
            run["peak_rss_mb"],
            run["rss_before_mb"],
            s["pages"],
            s["requests"],
            s["server_ms"],
        )
    skip = result["skip"]
    print(
        f"{'unforced re-run (skipped)':<30} {'-':>7} {'-':>6} {skip['seconds']:>8.3f} {'-':>9} {'-':>6} "
        f"{skip['peak_rss_mb']:>12.0f} {skip['rss_before_mb']:>10.0f} {'-':>6} {len(skip['requests']):>9} "
        f"{sum(r['ms'] or 0 for r in skip['requests']):>10.0f}"
    )

    forced = runs[1:] or runs
    best = min(forced, key=lambda r: r["seconds"])
    print(
        f"\nbest forced block / ceiling throughput: "
        f"{(first['rows'] / best['seconds']) / (ceiling['rows'] / ceiling['seconds']):.2f}"
    )
    common.print_memory_notes(runs, result["arrow"])
    print("server ms: the replay's handler time for the run's requests (same machine, so it competes for the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
