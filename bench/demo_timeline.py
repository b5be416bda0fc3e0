"""Where the demo's wall time goes, from the metadata database a `make demo` run leaves behind.

    .venv/bin/python bench/demo_timeline.py [data/airflow/airflow.db] [--runs demo__]

Prints, for the runs whose id starts with ``--runs`` (the demo's triggered runs; ``""`` for every
run, the catchup run included): first trigger (earliest run queued) to last run end, and the one
DuckDB writer slot's timeline: how long dbt tasks held it, and the gaps in which it was free while a
dbt task waited (scheduler latency: upstream done -> queued; start latency: queued -> started).
Task durations split by kind (extract_load, dbt, other). Figures only; nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
from datetime import datetime
from pathlib import Path


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return f"n={len(values)} total={sum(values):.0f} s median={statistics.median(values):.1f} s max={max(values):.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "db", nargs="?", default=str(Path(__file__).resolve().parents[1] / "data" / "airflow" / "airflow.db")
    )
    parser.add_argument("--runs", default="demo__", help="run id prefix of the runs measured")
    args = parser.parse_args()
    with sqlite3.connect(f"file:{args.db}?mode=ro", uri=True) as db:
        runs = db.execute(
            "select dag_id, run_id, state, queued_at, start_date, end_date from dag_run where run_id like ?",
            (args.runs + "%",),
        ).fetchall()
        tis = db.execute(
            "select ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.state, ti.queued_dttm, ti.start_date, ti.end_date, ti.pool "
            "from task_instance ti join dag_run r on r.dag_id = ti.dag_id and r.run_id = ti.run_id where r.run_id like ?",
            (args.runs + "%",),
        ).fetchall()
        every_dbt = db.execute(
            "select queued_dttm, start_date, end_date from task_instance where pool = 'duckdb_writer' "
            "and start_date is not null and end_date is not null order by start_date"
        ).fetchall()
    first = min(when(r[3]) or when(r[4]) for r in runs)
    ended = [when(r[5]) for r in runs if r[5]]
    if len(ended) == len(runs):
        last = max(ended)
        print(
            f"{len(runs)} runs ({args.runs or 'all'}*): first queued {first:%H:%M:%S}, last ended {last:%H:%M:%S}: "
            f"{(last - first).total_seconds():.0f} s; states {sorted({r[2] for r in runs})}"
        )
    else:  # a run that was stopped or timed out: how far it got
        last = max(when(t[7]) for t in tis if t[7])
        states: dict[str, int] = {}
        for t in tis:
            states[t[4] or "none"] = states.get(t[4] or "none", 0) + 1
        print(
            f"{len(runs)} runs ({args.runs or 'all'}*), {len(runs) - len(ended)} unfinished: first queued "
            f"{first:%H:%M:%S}, last task ended {last:%H:%M:%S} (+{(last - first).total_seconds():.0f} s); "
            f"task states {dict(sorted(states.items()))}"
        )
    for dag_id, _run_id, state, _queued, _start, end in sorted(runs, key=lambda r: r[5] or "~"):
        print(
            f"  {dag_id:<18} {state:<8} ended +{(when(end) - first).total_seconds():5.0f} s"
            if end
            else f"  {dag_id:<18} {state}"
        )
    reschedules = sum(1 for t in tis if t[4] in ("up_for_reschedule", "up_for_retry"))
    print(f"tasks up for reschedule or retry at the end: {reschedules}")

    kinds: dict[str, list[float]] = {}
    for _dag_id, _run_id, task_id, _map_index, _state, _queued, start, end, pool in tis:
        if start and end:
            kind = "extract_load" if task_id == "extract_load" else "dbt" if pool == "duckdb_writer" else "other"
            kinds.setdefault(kind, []).append((when(end) - when(start)).total_seconds())
    for kind, durations in sorted(kinds.items()):
        print(f"task duration {kind:<12} {summary(durations)}")

    # The writer slot over every run (the catchup run's dbt tasks hold it too).
    held = [(when(e) - when(s)).total_seconds() for q, s, e in every_dbt]
    gaps = [(when(b[1]) - when(a[2])).total_seconds() for a, b in zip(every_dbt, every_dbt[1:])]
    waits = [(when(s) - when(q)).total_seconds() for q, s, e in every_dbt if q]
    span = (when(every_dbt[-1][2]) - when(every_dbt[0][1])).total_seconds() if every_dbt else 0
    if not every_dbt:
        return
    print(
        f"duckdb_writer slot: first dbt start +{(when(every_dbt[0][1]) - first).total_seconds():.0f} s, "
        f"busy {sum(held):.0f} s of {span:.0f} s ({100 * sum(held) / span if span else 0:.0f} %)"
    )
    print(f"  held per task  {summary(held)}")
    print(f"  free between   {summary([g for g in gaps if g > 0])}")
    print(f"  queued->start  {summary(waits)}")


if __name__ == "__main__":
    main()
