"""Benchmark: one Street Manager permit month of the real size, as one block, against its ceiling.

Volume: the contract (shared/contracts/street_manager.md, *Volumes*) reports a permit archive of
about 1 GB holding 1,081,996 event files; the bench generates 1,100,000 permit events with the
real field set (the replay's generator, DfT's broken central directory included), about 0.9 GB
zipped. The archive is built once and cached under ``data/bench/street_manager/`` (keyed by
everything that shapes its bytes); later runs reuse it. The replay server serves it on loopback
from this process; each measured phase runs in a child process of its own (peak RSS is the
child's VmHWM, see bench/_common.py).

Prints:
  * **block**: ``run_block("street_manager", month, part="permit", force=True)`` into a temporary
    lake: HEAD, streamed download, forward unzip, pyarrow.json parse, flatten and type,
    validation and quarantine, normalisation, coordinates, parquet and manifest;
  * **ceiling**: the same archive from the same server with the same code and threads, but only
    download + unzip + parse (pyarrow.json into Arrow tables, dropped at once): no typing, no
    validation, no coordinates, no parquet;
with seconds, events/s, MB/s (zip bytes), peak RSS, and the block / ceiling ratio against the
targets (<= 60 s, <= 1.5 GB peak, within 2x of the ceiling).

    .venv/bin/python bench/street_manager.py [--events 1100000] [--month 2026-09] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import _common as common

SOURCE = "street_manager"
CONN_ID = "civic_street_manager"
EVENTS = 1_100_000
CACHE = common.ROOT / "data" / "bench" / "street_manager"
TARGET_SECONDS, TARGET_PEAK_MB, TARGET_RATIO = 60, 1536, 2.0


def phase_block(base_url: str, month: str) -> dict:
    common.point_connection(CONN_ID, base_url)
    import civic_pipelines.extract  # noqa: F401 - imports outside the timed run
    import civic_pipelines.sources.street_manager  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-street-manager-") as lake:
        from civic_pipelines.extract import run_block

        common.clear_replay_log(base_url)
        with common.measured() as figures:
            manifest = run_block(SOURCE, month, lake=lake, force=True, part="permit")
    return {
        **figures,
        "manifest": manifest,
        "requests": [(r["method"], r["path"], r["status"]) for r in common.replay_log(base_url)],
        "arrow": common.arrow_pool(),
        "peak_method": common.peak_rss_method(),
    }


def phase_ceiling(base_url: str, month: str) -> dict:
    """Download + unzip + parse only, with the extractor's own pieces and threading."""
    import pyarrow as pa
    import pyarrow.json as pajson

    from civic_pipelines import connections
    from civic_pipelines.http import make_session
    from civic_pipelines.sources import street_manager as sm

    common.point_connection(CONN_ID, base_url)
    connection = connections.resolve(sm.SPEC.conn_id, sm.SPEC.default_base_url)
    schema = sm._parse_schema("permit", frozenset())
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    read_options = pajson.ReadOptions(block_size=sm.PARSE_BLOCK)
    counted = {"events": 0}

    def parse(chunk):
        table = pajson.read_json(pa.BufferReader(chunk.text), read_options=read_options, parse_options=options)
        counted["events"] += table.num_rows + len(chunk.bad)
        return table.num_rows

    with make_session() as session:
        probed = sm.probe(session, connection, month, "permit")
        with common.measured() as figures:
            download = sm.Download(session, probed["url"], probed)
            walker = sm.ZipWalker(download.pieces())
            for _rows in sm.pipelined(walker.chunks(), parse, download.close):
                pass
    return {**figures, "events": counted["events"], "archive_bytes": download.received, "complete": walker.complete}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--month", default="2026-09")
    parser.add_argument("--runs", type=int, default=1, help="pairs of (ceiling, block) runs")
    parser.add_argument("--phase")
    parser.add_argument("--base-url")
    args = parser.parse_args()

    if args.phase == "block":
        print(json.dumps(phase_block(args.base_url, args.month)))
        return 0
    if args.phase == "ceiling":
        print(json.dumps(phase_ceiling(args.base_url, args.month)))
        return 0

    server = common.start_replay()
    try:
        common.configure(
            server.url,
            SOURCE,
            {"events_per_month": {"permit": args.events}, "cache_dir": str(CACHE), "latest_month": args.month},
        )
        with common.measured() as building:
            spec, stored = server.street_manager.archive("permit", args.month)  # build (or find) it before timing
        built = building["seconds"]
        print(
            f"replay on {server.url}: permit {args.month}, {spec.events:,} events, {common.mb(stored.size):.1f} MB "
            f"zip ({'built' if built > 5 else 'cached'} in {built:.1f} s, not counted; {stored.path})",
            flush=True,
        )
        script = str(Path(__file__).resolve())
        print(
            f"{os.cpu_count()} CPUs, load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())} "
            "(1/5/15 min) before the runs",
            flush=True,
        )
        ceilings, blocks = [], []
        for _ in range(args.runs):
            ceilings.append(
                common.run_child(
                    script, ["--phase", "ceiling", "--base-url", server.url, "--month", args.month], timeout=1200
                )
            )
            blocks.append(
                common.run_child(
                    script, ["--phase", "block", "--base-url", server.url, "--month", args.month], timeout=1200
                )
            )
    finally:
        server.stop()

    ceiling = min(ceilings, key=lambda r: r["seconds"])
    block = min(blocks, key=lambda r: r["seconds"])
    m = block["manifest"]
    events = m["events"]
    zipped = m["archive_size"]
    print(
        f"\n{SOURCE} permit {args.month}: {events:,} events ({m['rows']:,} landed, {m['quarantined']} quarantined), "
        f"{common.mb(zipped):.1f} MB zip ({common.mb(m['archive_bytes']):.1f} MB read: the members, not the "
        f"central directory), parquet {common.mb(m['bytes']):.1f} MB"
    )
    print(f"{'phase':<44} {'seconds':>8} {'events/s':>10} {'MB/s':>7} {'peak RSS MB':>12} {'RSS before':>10}")

    def line(name, run, n):
        print(
            f"{name:<44} {run['seconds']:>8.2f} {n / run['seconds']:>10,.0f} "
            f"{common.mb(zipped) / run['seconds']:>7.1f} {run['peak_rss_mb']:>12.0f} {run['rss_before_mb']:>10.0f}"
        )

    for i, run in enumerate(ceilings):
        line(f"ceiling: download + unzip + parse #{i + 1}", run, run["events"])
    for i, run in enumerate(blocks):
        line(f"block: run_block, full #{i + 1}", run, run["manifest"]["events"])
    ratio = block["seconds"] / ceiling["seconds"]
    print(f"\nblock / ceiling: {ratio:.2f}x (best of {args.runs} each)")
    print(
        f"targets: block <= {TARGET_SECONDS} s: {'met' if block['seconds'] <= TARGET_SECONDS else 'MISSED'} "
        f"({block['seconds']:.1f} s); peak <= {TARGET_PEAK_MB} MB: "
        f"{'met' if block['peak_rss_mb'] <= TARGET_PEAK_MB else 'MISSED'} ({block['peak_rss_mb']:.0f} MB); "
        f"within {TARGET_RATIO:.0f}x of the ceiling: {'met' if ratio <= TARGET_RATIO else 'MISSED'} ({ratio:.2f}x)"
    )
    print(
        f"requests in the block: {', '.join(f'{method} {path} {status}' for method, path, status in block['requests'])}"
    )
    print(
        f"manifest: coordinates {m['coordinates']}, fallback chunks {m['fallback_chunks']}, "
        f"resumes {m['download_resumes']}, drift new fields {m['drift']['new_fields']}"
    )
    print(
        f"peak RSS: {block['peak_method']} of each child, reset as the measured phase starts; MB/s: zip MB "
        f"(Content-Length) per second; load average after the runs "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
