"""What each dbt invocation of a source's DAG left: every model and test it ran, kept per source for
the dashboard's health cards (``<dbt_results_dir>/<source>.json``), and the lock that lets one dbt
invocation at a time open the warehouse.

Cosmos runs dbt in a temporary copy of the project, so dbt's own ``target/run_results.json`` is gone
when the task ends; the task group's ``callback`` (:func:`keep_cosmos_results`) reads it first. A
per-node task runs dbt with ``--no-write-json`` (writing the 1.7 MB manifest.json after every node
costs about as much as the node itself): its results come from dbt's ``NodeFinished`` events instead
(:func:`collect_node_results`, a dbtRunner callback). A per-node task reports one model and its
tests, a watcher producer the whole build: each report is
merged into the source's file by node id (the newest result of a node wins), under a lock and by an
atomic rename, so concurrent tasks lose nothing and a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from civic_pipelines import settings

log = logging.getLogger(__name__)

# One invocation holds the warehouse for seconds; a queue of them behind it for minutes at most.
DEFAULT_LOCK_TIMEOUT = 3600


def warehouse_lock():
    """The warehouse's writer lock (``<warehouse>.writer.lock``), or None for a warehouse that is not
    a local file. ``fcntl`` underneath: the kernel releases it when its holder dies, however it
    dies. One object per path in a process, re-entrant within a thread and exclusive between
    threads (tests run several ``dag.test()`` in one process)."""
    from filelock import FileLock

    path = settings.warehouse_lock_path()
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("CIVIC_WAREHOUSE_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    return FileLock(str(path), timeout=timeout, is_singleton=True)


@contextmanager
def warehouse_writer():
    """Hold the warehouse's writer lock for a block of code. DuckDB lets one process open the file
    for writing and fails a second one at once: every dbt invocation of the DAGs takes this lock
    first, so they wait in turn instead of failing."""
    lock = warehouse_lock()
    if lock is None:
        yield None
        return
    with lock:
        yield lock


@lru_cache(maxsize=4)
def _tested_models(manifest_path: str, mtime_ns: int) -> dict[str, list[str]]:
    """test unique_id -> names of the models (and seeds) it tests, from the project's manifest."""
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError):
        return {}
    return {
        uid: [
            d.split(".")[-1]
            for d in (node.get("depends_on") or {}).get("nodes", [])
            if d.startswith(("model.", "seed."))
        ]
        for uid, node in manifest.get("nodes", {}).items()
        if node.get("resource_type") == "test"
    }


def tested_models() -> dict[str, list[str]]:
    path = settings.dbt_project_dir() / "target" / "manifest.json"
    try:
        return _tested_models(str(path), path.stat().st_mtime_ns)
    except OSError:
        return {}


def node_entries(run_results: dict, run_id: str | None = None, task_id: str | None = None) -> dict[str, dict]:
    """dbt's run_results.json, one entry per node: name, type, status, failures, dbt's own seconds,
    the models a test tests."""
    generated = (run_results.get("metadata") or {}).get("generated_at")
    models = tested_models()
    entries = {}
    for result in run_results.get("results") or []:
        uid = result.get("unique_id") or ""
        kind = uid.split(".", 1)[0]
        message = result.get("message")
        entries[uid] = {
            "name": uid.split(".")[2] if uid.count(".") >= 2 else uid,
            "resource_type": kind,
            "status": str(result.get("status")),
            "failures": result.get("failures"),
            "message": message[:500] if isinstance(message, str) else message,
            "execution_time": result.get("execution_time"),
            "models": models.get(uid, []) if kind == "test" else [],
            "generated_at": generated,
            "run_id": run_id,
            "task_id": task_id,
        }
    return entries


def keep_results(
    source: str, run_results: dict, run_id: str | None = None, task_id: str | None = None, folder: Path | None = None
) -> Path:
    """Merge one invocation's results into ``<folder>/<source>.json`` (replaced atomically)."""
    from filelock import FileLock

    folder = Path(folder or settings.dbt_results_dir())
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{source}.json"
    entries = node_entries(run_results, run_id, task_id)
    with FileLock(str(folder / f".{source}.lock"), timeout=300):
        try:
            payload = json.loads(out.read_text())
        except FileNotFoundError:
            payload = {}
        except ValueError:  # a file from before an interrupted write cannot exist (rename), but be safe
            log.warning("unreadable dbt results %s: replaced", out)
            payload = {}
        nodes = payload.get("nodes") or {}
        nodes.update(entries)
        payload = {
            "source": source,
            "updated_at": datetime.now(UTC).isoformat(),
            "run_id": run_id,
            "nodes": dict(sorted(nodes.items())),
        }
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(payload, indent=1, default=str))
        partial.replace(out)
    return out


# dbt invocation id -> the results of its finished nodes, from its events (collect_node_results).
_collected: dict[str, list[dict]] = {}
_collected_lock = threading.Lock()


def collect_node_results(event) -> None:
    """A dbtRunner callback: each finished node's result (what run_results.json would say), kept
    under the invocation's id until :func:`keep_cosmos_results` takes it."""
    info = event.info
    if info.name != "NodeFinished":
        return
    node, result = event.data.node_info, event.data.run_result
    entry = {
        "unique_id": node.unique_id,
        "status": result.status,
        "message": result.message or None,
        "execution_time": result.execution_time,
        "failures": result.num_failures if node.resource_type == "test" else None,
    }
    with _collected_lock:
        _collected.setdefault(info.invocation_id, []).append(entry)


def collected_run_results() -> dict | None:
    """The latest dbt invocation's collected results, shaped like run_results.json (or None)."""
    from dbt_common.invocation import get_invocation_id

    with _collected_lock:
        results = _collected.pop(get_invocation_id(), None)
        _collected.clear()  # older invocations' leftovers: never read again
    if results is None:
        return None
    return {"metadata": {"generated_at": datetime.now(UTC).isoformat()}, "results": results}


def keep_cosmos_results(project_dir: str, context=None, source: str | None = None, **_) -> None:
    """Cosmos's ``callback``: called after each dbt invocation (failed ones too, before the task
    fails) with the temporary project folder; keeps its results for ``source``: dbt's
    ``target/run_results.json``, or what :func:`collect_node_results` gathered when dbt wrote none."""
    path = Path(project_dir) / "target" / "run_results.json"
    try:
        run_results = json.loads(path.read_text())
    except FileNotFoundError:
        run_results = collected_run_results()
    except (OSError, ValueError) as error:
        log.warning("unreadable dbt run results %s: %s", path, error)
        run_results = None
    if run_results is None:  # dbt failed before running any node: nothing to keep
        log.info("no dbt run results to keep")
        return
    ti = (context or {}).get("ti")
    keep_results(source, run_results, run_id=getattr(ti, "run_id", None), task_id=getattr(ti, "task_id", None))


def read_kept(folder, source: str, what: str) -> dict | None:
    """A per-source JSON file a DAG task kept for the dashboard (``<folder>/<source>.json``: dbt
    results, source freshness), or None when there is none; an unreadable one is logged as ``what``."""
    if folder is None:
        return None
    path = Path(folder) / f"{source}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("unreadable %s %s: %s", what, path, error)
        return None


def read_results(folder, source: str) -> dict | None:
    """The source's kept results (``keep_results``), or None."""
    return read_kept(folder, source, "dbt results")
