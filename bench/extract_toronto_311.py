"""Benchmark: one Toronto 311 block (a month cut from the year's zipped CSV) from the replay server.

Volume: the contract (shared/contracts/toronto_311.md, *Volumes*) counts 402,824 rows in the 2024
file (kez-1a); the replay serves that many well-formed rows for SR2024 (plus its malformed lines)
in a deflated zip, as Open Data Toronto does. There is no paging: every block of a year downloads
and parses the whole year's file and keeps one month.

Prints, for the block (default 2024-07 of SR2024):
  * the year file alone: the zip downloaded (1 MiB reads, bytes discarded), then downloaded,
    inflated and decoded (latin-1 to UTF-8) with the adapter's own stream readers: no CSV parse;
  * runs: ``run_block`` (package_show, the same download, Arrow CSV parse of the whole year,
    month filter, validation, derived key, parquet, manifest) into a temporary lake: the first run
    cold (a fresh process, an empty lake), then forced re-runs (same process; the block is
    landed, so the re-run also diffs against it), and one unforced run that skips on the watermark;
with rows (the block's, and the year's rows read), fetched MB (zip bytes), seconds, rows/s, MB/s,
the run's peak RSS (VmHWM of the child process, reset per run; not ru_maxrss: see
bench/_common.py) and requests.

    .venv/bin/python bench/extract_toronto_311.py [--month 2024-07] [--rows-per-year 402824] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _common as common

SOURCE = "toronto_311"
CONN_ID = "civic_toronto_311"
REAL_ROWS_2024 = 402_824  # contract, Volumes: kez-1a's count for the 2024 file


def phase_file(base_url: str, month: str, reps: int) -> dict:
    """The year file alone: download only, then download + inflate + decode (no CSV parse)."""
    from civic_pipelines import connections, sources
    from civic_pipelines.adapters.ckan import HTTP_CHUNK, Utf8Stream, ZipMemberStream
    from civic_pipelines.http import DEFAULT_TIMEOUT, make_session

    common.point_connection(CONN_ID, base_url)
    source = sources.get(SOURCE)
    connection = connections.resolve(source.SPEC.conn_id, source.SPEC.default_base_url)
    year = int(month[:4])
    out = {"download": [], "inflate": []}
    with make_session() as session:
        probed = source.probe(session, connection, month=month)
        url = source.download_url(connection, probed["resource"])

        def body():
            with session.get(url, stream=True, timeout=DEFAULT_TIMEOUT) as response:
                response.raise_for_status()
                while True:
                    piece = response.raw.read(HTTP_CHUNK, decode_content=True)
                    if not piece:
                        break
                    yield piece

        for _ in range(reps):
            common.reset_peak_rss()
            started = time.perf_counter()
            nbytes = sum(len(piece) for piece in body())
            out["download"].append(
                {"seconds": time.perf_counter() - started, "bytes": nbytes, "peak_rss_mb": common.peak_rss_mb()}
            )
        for _ in range(reps):
            common.reset_peak_rss()
            started = time.perf_counter()
            counted = {"zip": 0}

            def counting():
                for piece in body():
                    counted["zip"] += len(piece)
                    yield piece

            first = b""
            pieces = counting()
            for piece in pieces:
                first += piece
                break
            chained = _chain(first, pieces)
            member = (
                ZipMemberStream(chained, source.member.replace("{year}", f"{year:04d}"))
                if first.startswith(b"PK\x03\x04")
                else chained
            )
            text = Utf8Stream(member, source.encoding)
            utf8 = sum(len(piece) for piece in text)
            out["inflate"].append(
                {
                    "seconds": time.perf_counter() - started,
                    "bytes": counted["zip"],
                    "csv_bytes": text.bytes_in,
                    "utf8_bytes": utf8,
                    "member": getattr(member, "name", None),
                    "peak_rss_mb": common.peak_rss_mb(),
                }
            )
    out["url"] = url
    return out


def _chain(first: bytes, rest):
    if first:
        yield first
    yield from rest


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--month", default="2024-07")
    parser.add_argument("--rows-per-year", type=int, default=REAL_ROWS_2024)
    parser.add_argument("--runs", type=int, default=3, help="block runs: 1 cold + forced re-runs")
    parser.add_argument("--file-reps", type=int, default=2, help="repetitions of each year-file-alone phase")
    parser.add_argument("--phase")
    parser.add_argument("--base-url")
    args = parser.parse_args()

    if args.phase == "file":
        print(json.dumps(phase_file(args.base_url, args.month, args.file_reps)))
        return 0
    if args.phase == "runs":
        print(json.dumps(common.repeated_blocks(SOURCE, CONN_ID, args.base_url, args.month, args.runs)))
        return 0

    year = int(args.month[:4])
    server = common.start_replay()
    try:
        common.configure(server.url, SOURCE, {"rows_per_year": args.rows_per_year})
        with common.measured() as building:
            zipped = server.toronto.zip_bytes(year)  # generate, render and deflate the year before timing
        csv_size = len(server.toronto.csv_bytes(year))
        print(
            f"replay on {server.url}: {SOURCE} SR{year}, {args.rows_per_year:,} rows a year, "
            f"zip {common.mb(len(zipped)):.1f} MB holding a {common.mb(csv_size):.1f} MB CSV "
            f"(built in {building['seconds']:.1f} s, not counted)",
            flush=True,
        )
        script = str(Path(__file__).resolve())
        common.clear_replay_log(server.url)
        alone = common.run_child(
            script,
            ["--phase", "file", "--base-url", server.url, "--month", args.month, "--file-reps", str(args.file_reps)],
        )
        result = common.run_child(
            script, ["--phase", "runs", "--base-url", server.url, "--month", args.month, "--runs", str(args.runs)]
        )
    finally:
        server.stop()

    runs = result["runs"]
    m = runs[0]["manifest"]
    block_rows = (m.get("rows") or 0) + (m.get("quarantined") or 0)
    file_rows = (m.get("file_rows") or 0) + (m.get("file_malformed_lines") or 0)
    print(
        f"\n{SOURCE} {args.month}: {block_rows:,} rows in the block ({m.get('rows'):,} landed, "
        f"{m.get('quarantined')} quarantined) out of {file_rows:,} lines read from SR{year} "
        f"({common.mb(m.get('fetched_bytes', 0)):.1f} MB zip, {common.mb(m.get('file_text_bytes', 0)):.1f} MB CSV)\n"
    )
    print(
        f"{'phase':<34} {'seconds':>8} {'block rows/s':>13} {'file rows/s':>12} {'zip MB/s':>9} {'CSV MB/s':>9} "
        f"{'peak RSS MB':>12} {'RSS before':>10} {'requests':>9}"
    )

    def line(name, seconds, nbytes, csv_bytes, peak, before=None, requests="-", rows=None):
        rows_s = f"{rows / seconds:>13,.0f}" if rows is not None else f"{'-':>13}"
        file_s = f"{file_rows / seconds:>12,.0f}" if csv_bytes else f"{'-':>12}"
        csv_s = f"{common.mb(csv_bytes) / seconds:>9.1f}" if csv_bytes else f"{'-':>9}"
        before_s = f"{before:>10.0f}" if before is not None else f"{'-':>10}"
        print(
            f"{name:<34} {seconds:>8.3f} {rows_s} {file_s} {common.mb(nbytes) / seconds:>9.1f} {csv_s} "
            f"{peak:>12.0f} {before_s} {requests:>9}"
        )

    for i, rep in enumerate(alone["download"]):
        line(f"year file: download only #{i + 1}", rep["seconds"], rep["bytes"], 0, rep["peak_rss_mb"], requests=1)
    for i, rep in enumerate(alone["inflate"]):
        line(
            f"year file: + unzip + decode #{i + 1}",
            rep["seconds"],
            rep["bytes"],
            rep["csv_bytes"],
            rep["peak_rss_mb"],
            requests=1,
        )
    for i, run in enumerate(runs):
        man = run["manifest"]
        name = "block, cold (empty lake)" if i == 0 else f"block, forced re-run {i}"
        line(
            name,
            run["seconds"],
            man.get("fetched_bytes", 0),
            man.get("file_text_bytes", 0),
            run["peak_rss_mb"],
            run["rss_before_mb"],
            len(run["requests"]),
            block_rows,
        )
    skip = result["skip"]
    print(
        f"{'unforced re-run (skipped)':<34} {skip['seconds']:>8.3f} {'-':>13} {'-':>12} {'-':>9} {'-':>9} "
        f"{skip['peak_rss_mb']:>12.0f} {skip['rss_before_mb']:>10.0f} {len(skip['requests']):>9}"
    )

    download = min(rep["seconds"] for rep in alone["download"])
    inflate = min(rep["seconds"] for rep in alone["inflate"])
    forced = runs[1:] or runs
    best = min(forced, key=lambda r: r["seconds"])
    man = best["manifest"]
    print(
        f"\nyear file alone (best of {len(alone['download'])}): download {download:.3f} s, "
        f"download + unzip + decode {inflate:.3f} s; best forced block {best['seconds']:.2f} s "
        f"(of which download + parse {man.get('download_parse_seconds')} s, parse {man.get('parse_seconds')} s "
        f"as the manifest records them)"
    )
    print(
        f"block / download-only time: {best['seconds'] / download:.1f}x; block / unzip+decode time: "
        f"{best['seconds'] / inflate:.1f}x"
    )
    print(
        f"a whole year of blocks downloads and parses SR{year} 12 times: about {12 * best['seconds']:.0f} s and "
        f"{12 * common.mb(man.get('fetched_bytes', 0)):.0f} MB fetched at these figures"
    )
    common.print_memory_notes(runs, result["arrow"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
