"""CPU seconds read from ``/proc`` (Linux): a process session (its leader's own, and every other
member's, reaped ones through their parents' children times), a PostgreSQL postmaster with its
backends, the whole machine since boot, and this process. For ``bench/scale.py``.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from civic_pipelines.devtools.local_airflow import session_members

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> dict | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return {
        "ppid": int(fields[1]),
        "own": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        "children": (int(fields[13]) + int(fields[14])) / CLOCK_TICKS,
    }


def group_cpu(leader: int) -> dict:
    """CPU seconds of a process session: the leader's own, and everything else (live members, and
    every reaped process through its parent's children times, each counted once)."""
    own = rest = 0.0
    for pid in session_members(leader):
        stat = proc_stat(pid)
        if stat is None:
            continue
        if pid == leader:
            own += stat["own"]
            rest += stat["children"]
        else:
            rest += stat["own"] + stat["children"]
    return {"own": own, "rest": rest}


def postgres_cpu(postmaster: int) -> float:
    total = 0.0
    stat = proc_stat(postmaster)
    if stat:
        total += stat["own"] + stat["children"]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = proc_stat(int(entry.name))
            if child and child["ppid"] == postmaster:
                total += child["own"] + child["children"]
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, every process)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
