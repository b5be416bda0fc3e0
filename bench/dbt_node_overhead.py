"""What each Cosmos dbt task of a finished run cost beyond dbt's own work: the task's duration in
Airflow's metadata database (SQLite, as `make demo` keeps it) minus the ``execution_time`` of the
nodes it ran (its model or seed and that model's tests) from the kept dbt results. Prints medians.

    CIVIC_DEMO_EXIT=1 CIVIC_DATA_DIR=data/demo make demo
    .venv/bin/python bench/dbt_node_overhead.py data/demo
"""

from __future__ import annotations

import glob
import json
import sqlite3
import statistics
import sys


def main(data: str) -> int:
    with sqlite3.connect(f"{data}/airflow/airflow.db") as db:
        tasks = {
            (dag_id, task_id): seconds
            for dag_id, task_id, seconds in db.execute(
                "select dag_id, task_id, (julianday(end_date) - julianday(start_date)) * 86400 from task_instance "
                "where operator = 'DbtBuildLocalOperator' and state = 'success'"
            )
        }
    own: dict[tuple[str, str], float] = {}
    for path in glob.glob(f"{data}/dbt_results/*.json"):
        kept = json.loads(open(path).read())
        for node in kept["nodes"].values():
            key = (kept["source"], node["task_id"])
            own[key] = own.get(key, 0.0) + (node["execution_time"] or 0.0)
    matched = [key for key in tasks if key in own]
    if not matched:
        print("no dbt task of the run has kept results")
        return 1
    overhead = [tasks[key] - own[key] for key in matched]
    print(
        f"{len(tasks)} dbt tasks ({len(matched)} with kept results): duration median {statistics.median(tasks.values()):.2f} s "
        f"(min {min(tasks.values()):.2f}, max {max(tasks.values()):.2f}); dbt's own time median "
        f"{statistics.median(own[key] for key in matched):.2f} s; overhead (duration - dbt's own) median "
        f"{statistics.median(overhead):.2f} s, mean {statistics.mean(overhead):.2f}, max {max(overhead):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "data"))
