"""bench/scale.py's figures: the report printed after a run (or from a saved run, ``--report``),
and the raw figures saved as JSON and read back.
"""

from __future__ import annotations

import json
import os
import statistics
from datetime import datetime
from pathlib import Path


def seconds(a, b) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


def summary(values: list[float]) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"median {statistics.median(values):7.2f}  p95 {p95:7.2f}  mean {statistics.fmean(values):7.2f}  max {values[-1]:7.2f}"


def report(data: dict, meta: dict) -> None:
    cores = meta.get("cpu_count") or os.cpu_count()
    tis = data["tis"]
    blocks = [t for t in tis if t["task_id"] == "extract_load" and t["map_index"] >= 0]
    plans = [t for t in tis if t["task_id"] == "plan_blocks"]
    states: dict[str, int] = {}
    for t in blocks:
        states[t["state"] or "none"] = states.get(t["state"] or "none", 0) + 1
    done = [t for t in blocks if t["state"] in ("success", "skipped", "failed") and t["end"] is not None]
    ran = [t for t in done if t["start"] is not None]
    wall = meta["wall"]
    rows = sum((t["manifest"].get("rows") or 0) for t in blocks if t["state"] == "success")
    print()
    print("=" * 100)
    print(f"Scale simulation: {meta['label']}")
    print(
        f"  Airflow {meta['airflow_version']}, LocalExecutor, parallelism {meta['parallelism']}, metadata on "
        f"PostgreSQL {meta['pg_version']}; replay server on loopback; dbt left out (planner + mapped extracts only)"
    )
    print(
        f"  machine: {cores} cores, load average during the run {meta['load_mean']:.2f} "
        f"(max {meta['load_max']:.2f}); the machine is shared, other processes' CPU is shown below"
    )
    print()
    print(
        f"blocks planned {len(blocks)}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        + f"; rows landed {rows:,}; task retries {data['retried']}"
    )
    print(f"wall, first trigger -> last run finished: {wall:8.1f} s")
    if wall:
        print(f"blocks per minute (all blocks / wall):    {len(done) / wall * 60:8.1f}")
    landed = meta.get("lake_blocks")
    if landed is not None:
        print(f"blocks in the lake (manifests):           {landed:8d}")
    print()
    print("per source (wall = its run's queue time -> its last block's end):")
    print(
        f"  {'source':<16}{'runs':>5}{'blocks':>8}{'wall s':>9}{'blocks/min':>12}{'task s (median)':>17}"
        f"{'run_block s (median)':>22}"
    )
    by_source: dict[str, list] = {}
    for t in blocks:
        by_source.setdefault(t["dag_id"], []).append(t)
    for source, items in sorted(by_source.items()):
        runs = [r for r in data["runs"] if r["dag_id"] == source]
        first = min((r["queued_at"] for r in runs if r["queued_at"]), default=None)
        last = max((t["end"] for t in items if t["end"]), default=None)
        span = seconds(first, last) or 0
        durations = [seconds(t["start"], t["end"]) for t in items if t["start"] and t["end"]]
        extract = [t["manifest"].get("seconds") for t in items if t["manifest"].get("seconds") is not None]
        print(
            f"  {source:<16}{len(runs):>5}{len(items):>8}{span:>9.1f}{(len(items) / span * 60 if span else 0):>12.1f}"
            f"{(statistics.median(durations) if durations else 0):>17.2f}"
            f"{(statistics.median(extract) if extract else 0):>22.2f}"
        )
    ends = {}
    for t in done:
        ends[t["dag_id"]] = max(ends.get(t["dag_id"], t["end"]), t["end"])
    starts = [r["queued_at"] for r in data["runs"] if r["queued_at"]]
    if len(ends) > 1 and starts:
        last_source, last_end = max(ends.items(), key=lambda item: item[1])
        others_end = max(end for source, end in ends.items() if source != last_source)
        before = [t for t in done if t["end"] <= others_end]
        after = [t for t in done if t["end"] > others_end]
        head, tail = seconds(min(starts), others_end) or 0, seconds(others_end, last_end) or 0
        print(
            f"  while every source had blocks left: {len(before)} blocks in {head:.0f} s = "
            f"{len(before) / head * 60 if head else 0:.1f} blocks/min;"
        )
        print(
            f"  then {last_source} alone (its API pool's slots cap it): {len(after)} blocks in {tail:.0f} s = "
            f"{len(after) / tail * 60 if tail else 0:.1f} blocks/min"
        )
    print()
    print("the planner (plan_blocks, one per run):")
    print(
        f"  run queued -> plan_blocks start    {summary([seconds(next(r['queued_at'] for r in data['runs'] if r['run_id'] == p['run_id']), p['start']) for p in plans])}"
    )
    print(f"  plan_blocks duration               {summary([seconds(p['start'], p['end']) for p in plans])}")
    print(f"    of which parsing the DAG file    {summary([p.get('log', {}).get('parse') for p in plans])}")
    first_mapped = {}
    for t in blocks:
        if t["scheduled"] is not None:
            key = t["run_id"]
            first_mapped[key] = min(first_mapped.get(key, t["scheduled"]), t["scheduled"])
    print(
        f"  plan end -> first block scheduled  {summary([seconds(p['end'], first_mapped.get(p['run_id'])) for p in plans])}"
    )
    print()
    print(
        "per mapped task (seconds; the two waits are mostly queueing behind the pools and the 4 slots, not overhead):"
    )
    phases = {
        "scheduled -> queued (pool, parallelism)": [seconds(t["scheduled"], t["queued"]) for t in ran],
        "queued -> running (free worker, start)": [seconds(t["queued"], t["start"]) for t in ran],
        "running (task duration)": [seconds(t["start"], t["end"]) for t in ran],
        "  of which run_block (extract)": [t["manifest"].get("seconds") for t in ran],
        "  of which task overhead": [
            seconds(t["start"], t["end"]) - t["manifest"]["seconds"]
            for t in ran
            if t["manifest"].get("seconds") is not None
        ],
        "    start -> the task log's first line": [t["log"].get("to_first_line") for t in ran],
        "    parsing the DAG file (task log)": [t["log"].get("parse") for t in ran],
        "    post execute: XCom, state (log)": [t["log"].get("post") for t in ran],
    }
    for name, values in phases.items():
        print(f"  {name:<42}{summary(values)}")
    task_sum = sum(seconds(t["start"], t["end"]) or 0 for t in ran)
    extract_sum = sum(t["manifest"].get("seconds") or 0 for t in ran)
    queued_sum = sum(seconds(t["queued"], t["start"]) or 0 for t in ran)
    print()
    print("total wall against the sum of task durations:")
    print(
        f"  sum of mapped task durations {task_sum:9.1f} task-s; wall {wall:.1f} s -> mean concurrency "
        f"{task_sum / wall if wall else 0:.2f} of {meta['parallelism']} slots "
        f"({100 * task_sum / (wall * meta['parallelism']) if wall else 0:.0f} % of the slot time busy)"
    )
    parse_sum = sum(t["log"].get("parse") or 0 for t in ran)
    post_sum = sum(t["log"].get("post") or 0 for t in ran)
    print(
        f"  of the task-seconds: run_block {extract_sum:9.1f} ({100 * extract_sum / task_sum if task_sum else 0:.0f} %), "
        f"task overhead {task_sum - extract_sum:9.1f} ({100 * (task_sum - extract_sum) / task_sum if task_sum else 0:.0f} %)"
    )
    print(
        f"  of the task overhead: parsing the DAG file {parse_sum:9.1f} ({100 * parse_sum / task_sum if task_sum else 0:.0f} % "
        f"of the task-seconds), post execute {post_sum:9.1f} ({100 * post_sum / task_sum if task_sum else 0:.0f} %)"
    )
    print(
        f"  queued -> running, summed: {queued_sum:.1f} s; per block {queued_sum / len(ran) if ran else 0:.2f} s "
        "(LocalExecutor queues ahead of its free workers: mostly waiting for one)"
    )
    if ran and wall:
        per_block = wall * meta["parallelism"] / len(ran)
        print("  the scheduler's own overhead per block is the slot time no task held: between one task's end and the")
        print(
            "  next one's start in that slot, and the slots the pools left empty (the tail of a source limited by its pool)"
        )
        print(
            f"  slot-seconds per block: {per_block:.2f} (wall x parallelism / blocks) = run_block "
            f"{extract_sum / len(ran):.2f} + task overhead {(task_sum - extract_sum) / len(ran):.2f} + slot idle or "
            f"starting {per_block - task_sum / len(ran):.2f}"
        )
    print()
    cpu = meta["cpu"]
    total_ours = sum(cpu.values())
    print(f"where the CPU went during the run (CPU-seconds; capacity {wall * cores:.0f} = wall x {cores} cores):")
    for name, value in cpu.items():
        print(f"  {name:<44}{value:9.1f}")
    print(f"  {'other processes on the machine (not ours)':<44}{max(meta['machine_busy'] - total_ours, 0):9.1f}")
    print(f"  {'machine busy in all':<44}{meta['machine_busy']:9.1f}")
    if ran:
        print(
            f"  ours per block: {total_ours / len(ran):.2f} CPU-s (task processes {cpu.get('executor workers + task processes', 0) / len(ran):.2f}, "
            f"scheduler {cpu.get('scheduler (its own process)', 0) / len(ran):.2f}, API server "
            f"{cpu.get('api-server (execution + core API)', 0) / len(ran):.2f}, PostgreSQL {cpu.get('PostgreSQL (metadata)', 0) / len(ran):.2f}); "
            f"we had {100 * total_ours / meta['machine_busy'] if meta['machine_busy'] else 0:.0f} % of the machine's busy CPU"
        )
    print()
    print(f"replay server: {meta['replay_requests']:,} requests, handlers {meta['replay_ms'] / 1000:.1f} s in all")
    statements = data["statements"]
    calls = sum(s[0] for s in statements)
    exec_ms = sum(s[1] for s in statements)
    print(
        f"metadata database: {calls:,} statements, {exec_ms / 1000:.1f} s of execution in all "
        f"({calls / len(ran) if ran else 0:.0f} statements and {exec_ms / len(ran) if ran else 0:.1f} ms per block); top 5:"
    )
    for count, total, query in statements[:5]:
        text = " ".join(query.split())
        print(f"  {total / 1000:7.2f} s {count:>8,} calls  {text[:90]}")
    print("=" * 100)


def save(path: Path, data: dict, meta: dict) -> None:
    """The raw figures (task instances, manifests, statements, CPU) as JSON, for --report."""
    path.write_text(
        json.dumps({"data": data, "meta": meta}, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )


def load(path: Path) -> tuple[dict, dict]:
    saved = json.loads(path.read_text())
    data, meta = saved["data"], saved["meta"]
    for rows, fields in (
        (data["tis"], ("scheduled", "queued", "start", "end")),
        (data["runs"], ("queued_at", "start", "end")),
    ):
        for row in rows:
            for name in fields:
                if row.get(name):
                    row[name] = datetime.fromisoformat(row[name])
    return data, meta
