"""Benchmark: whole Seattle crime blocks from the replay server on loopback.

Prints, for N months (default 6 x 100,000 rows = 600,000 rows):
  * ceiling: the same pages fetched and parsed (orjson) with nothing else;
  * block:   the full block (fetch, parse, columnar conversion, validation, dedup check, parquet
             write, manifest), through the same `run_block` the CLI and the DAG use;
with rows/s, MB/s (response bytes) and the peak RSS of the process that did the work. Each
phase runs in its own process so peaks do not mix; the replay server runs in a third.

    .venv/bin/python bench/extract_seattle.py [--months 6] [--rows-per-month 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "bench"))

import _common as common  # noqa: E402


def months_list(count: int) -> list[str]:
    return (
        [f"2023-{m:02d}" for m in range(1, count + 1)]
        if count <= 12
        else [f"{2012 + i // 12}-{i % 12 + 1:02d}" for i in range(count)]
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_ceiling(base_url: str, months: list[str]) -> dict:
    import orjson

    from civic_pipelines import sources
    from civic_pipelines.http import get_bytes, make_session

    sc = sources.get("seattle_crime")

    rows = nbytes = 0
    started = time.perf_counter()
    with make_session() as session:
        for month in months:
            offset = 0
            while True:
                body = get_bytes(
                    session, f"{base_url}/resource/{sc.dataset_id}.json", params=sc.page_params("A", month, offset)
                )
                page = orjson.loads(body)
                rows += len(page)
                nbytes += len(body)
                if len(page) < sc.page_size:
                    break
                offset += sc.page_size
    return {"rows": rows, "bytes": nbytes, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def phase_block(base_url: str, months: list[str]) -> dict:
    from civic_pipelines.extract import run_block

    os.environ["AIRFLOW_CONN_CIVIC_SEATTLE_CRIME"] = json.dumps(
        {
            "conn_type": "http",
            "host": base_url.split("//")[1].split(":")[0],
            "port": int(base_url.rsplit(":", 1)[1]),
            "schema": "http",
        }
    )
    os.environ["CIVIC_NO_AIRFLOW_LOOKUP"] = "1"
    rows = nbytes = 0
    with tempfile.TemporaryDirectory() as lake:
        started = time.perf_counter()
        for month in months:
            manifest = run_block("seattle_crime", month, lake=lake, force=True)
            rows += manifest["rows"] + manifest["quarantined"]
            nbytes += manifest.get("fetched_bytes", 0)
        seconds = time.perf_counter() - started
    return {"rows": rows, "bytes": nbytes, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_phase(name: str, base_url: str, months: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--base-url", base_url, "--month-list", ",".join(months)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--rows-per-month", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--phase")
    parser.add_argument("--base-url")
    parser.add_argument("--month-list")
    args = parser.parse_args()

    if args.phase:
        months = args.month_list.split(",")
        result = {"ceiling": phase_ceiling, "block": phase_block}[args.phase](args.base_url, months)
        print(json.dumps(result))
        return 0

    months = months_list(args.months)
    base_url = f"http://127.0.0.1:{args.port}"
    server = common.start_seattle_replay_process(args.port, args.rows_per_month)
    try:
        print(f"warming the replay server: {len(months)} months x {args.rows_per_month:,} rows ...", flush=True)
        phase_ceiling(base_url, months)  # generate and cache every page once, so both phases see the same server
        ceiling = run_phase("ceiling", base_url, months)
        block = run_phase("block", base_url, months)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"\nseattle_crime: {len(months)} blocks, {block['rows']:,} rows, {ceiling['bytes'] / 1e6:,.1f} MB of JSON on loopback\n"
    )
    print(f"{'phase':<34} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>12}")
    for name, result in (("ceiling (fetch + orjson parse)", ceiling), ("block (fetch..parquet, manifest)", block)):
        mb = (result["bytes"] or ceiling["bytes"]) / 1e6
        print(
            f"{name:<34} {result['seconds']:>8.2f} {result['rows'] / result['seconds']:>10,.0f} {mb / result['seconds']:>7.1f} {result['peak_rss_mb']:>12.0f}"
        )
    print(
        f"\nblock / ceiling throughput: {(block['rows'] / block['seconds']) / (ceiling['rows'] / ceiling['seconds']):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
