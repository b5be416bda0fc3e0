"""bench/vs_dlt.py's report, printed after every configuration has run: the table of rows, seconds,
rows/s, peak memory and CPU per source and configuration, whether the row counts agree, the target
verdict, dlt's steps, and where our time and memory go.
"""

from __future__ import annotations

import os

from vs_dlt_child import SOURCES


def report(kinds: list[str], configs: list[str], results: dict, dlt_version: str) -> None:
    print(
        f"\nour extractor vs dlt {dlt_version} rest_api -> DuckDB; replay server on loopback in the parent "
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
