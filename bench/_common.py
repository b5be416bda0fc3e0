"""Helpers shared by the per-source block benchmarks (not tests: nothing here asserts a speed).

The pattern: the replay server runs in the bench's own process (``make_server`` on a free loopback
port, no network), and each measured phase runs in a child process of its own, so the child's
peak RSS is the extractor's and not the emulator's (the server caches whole months and files).

Peak RSS is the child's ``VmHWM`` from ``/proc/self/status`` (the RSS high-water mark of its
address space), not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux ``ru_maxrss`` keeps the
*parent's* peak across fork + exec, so a child of a bench process that holds the replay server's
caches would report the server's memory. Between runs of one child the mark is reset by writing
``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0: it drops to the current RSS), so each run's
figure is that run's own peak, interpreter, imports and whatever earlier runs left allocated
included. Without ``/proc`` the figure falls back to ``ru_maxrss`` and the output says so.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))


# ---------------------------------------------------------------- memory


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM, else getrusage ru_maxrss (see the module docstring)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_method() -> str:
    return "VmHWM of /proc/self/status" if _status_mb("VmHWM") is not None else "getrusage ru_maxrss"


def current_rss_mb() -> float | None:
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Drop the RSS high-water mark to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- replay server


def start_replay():
    """The replay server (every API installed), started in this process on 127.0.0.1:<free port>."""
    from civic_pipelines.replay.server import make_server

    return make_server(host="127.0.0.1", port=0).start()


def start_seattle_replay_process(port: int, rows_per_month: int, env: dict | None = None) -> subprocess.Popen:
    """The replay server in a process of its own on 127.0.0.1:``port``, answering, with Seattle
    crime configured to ``rows_per_month`` rows (for benches that measure in this process).
    The caller terminates it; if it never answers or refuses the configuration it is stopped here."""
    import requests

    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "civic_pipelines.cli", "replay", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        for _ in range(100):
            try:
                requests.get(f"{base_url}/api/views/tazs-3rd5.json", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        requests.post(
            f"{base_url}/_replay/config", json={"seattle_crime": {"rows_per_month": rows_per_month}}, timeout=10
        ).raise_for_status()
    except BaseException:
        server.terminate()
        server.wait(timeout=10)
        raise
    return server


def configure(base_url: str, section: str, body: dict) -> dict:
    import requests

    response = requests.post(f"{base_url}/_replay/config", json={section: body}, timeout=600)
    if response.status_code != 200:
        raise SystemExit(f"replay config {section} {body}: {response.status_code} {response.text[:500]}")
    return response.json()[section]


def replay_log(base_url: str) -> list[dict]:
    """The data requests the server saw since the last reset (method, path, query, status, ms)."""
    import requests

    return requests.get(f"{base_url}/_replay/requests", params={"detail": 1}, timeout=60).json()


def clear_replay_log(base_url: str) -> None:
    """Clear the request log (and fault switches); the data configuration is kept."""
    import requests

    requests.post(f"{base_url}/_replay/reset", json={}, timeout=60).raise_for_status()


def point_connection(conn_id: str, base_url: str) -> None:
    """Point an Airflow connection at the replay server through the environment, as tests do."""
    host_port = base_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
    )
    os.environ["CIVIC_NO_AIRFLOW_LOOKUP"] = "1"


# ---------------------------------------------------------------- phases in child processes


def run_child(script: str, args: list[str], timeout: float = 300) -> dict:
    """Run ``script --phase ...`` in a fresh interpreter; its last stdout line is a JSON result."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    result = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    if result.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def measured() -> Iterator[dict]:
    """Wall seconds and memory around the ``with`` body, filled into the dict it yields when the body
    ends: ``seconds``, ``rss_before_mb``, ``peak_rss_mb`` and ``peak_is_per_run`` (False where the
    kernel keeps the process's high-water mark from before the body)."""
    figures = {"peak_is_per_run": reset_peak_rss(), "rss_before_mb": current_rss_mb()}
    started = time.perf_counter()
    yield figures
    figures["seconds"] = time.perf_counter() - started
    figures["peak_rss_mb"] = peak_rss_mb()


def timed_block(source: str, month: str, lake: str, force: bool, base_url: str) -> dict:
    """One ``run_block`` (the function behind ``civic extract`` and the Airflow task), measured:
    wall seconds, the run's own peak RSS, and the data requests the replay server logged."""
    from civic_pipelines.extract import run_block

    clear_replay_log(base_url)
    with measured() as figures:
        manifest = run_block(source, month, lake=lake, force=force)
    requests_seen = replay_log(base_url)
    return {
        **figures,
        "peak_method": peak_rss_method(),
        "requests": [
            {"path": r["path"], "query": r["query"], "status": r["status"], "ms": r.get("ms")} for r in requests_seen
        ],
        "manifest": manifest,
    }


def repeated_blocks(source: str, conn_id: str, base_url: str, month: str, runs: int) -> dict:
    """``runs`` timed blocks of one month into a fresh lake (the first lands, the rest are forced),
    then one unforced run that should skip, and Arrow's pool after them."""
    import tempfile

    point_connection(conn_id, base_url)
    import civic_pipelines.extract  # noqa: F401 - imports outside the timed runs

    results = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{source}-") as lake:
        for i in range(runs):
            results.append(timed_block(source, month, lake, force=i > 0, base_url=base_url))
        skip = timed_block(source, month, lake, force=False, base_url=base_url)
    return {"runs": results, "skip": skip, "arrow": arrow_pool()}


def arrow_pool() -> dict:
    """What Arrow's default memory pool holds now and held at most (to tell it from the rest of RSS)."""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    return {
        "backend": pool.backend_name,
        "allocated_mb": pool.bytes_allocated() / 2**20,
        "max_mb": (pool.max_memory() or 0) / 2**20,
    }


def mb(nbytes: float) -> float:
    return nbytes / 1e6


def print_memory_notes(runs: list[dict], arrow: dict) -> None:
    """How to read the runs' peak RSS figures, and what Arrow's pool held after them."""
    print(
        f"peak RSS: {runs[0]['peak_method']} of the child process, "
        + (
            "reset per run via /proc/self/clear_refs (each run's own peak)"
            if runs[0]["peak_is_per_run"]
            else "cumulative over the runs (/proc/self/clear_refs refused)"
        )
        + "; RSS before: the child's VmRSS as the run starts (interpreter, imports, what earlier runs kept)"
    )
    print(
        f"after the runs: Arrow's {arrow['backend']} pool holds {arrow['allocated_mb']:.1f} MB "
        f"(its peak {arrow['max_mb']:.0f} MB); the rest is the interpreter, lazily imported libraries "
        f"(duckdb, on the first forced re-run, for rows_changed) and the allocators' free lists"
    )
