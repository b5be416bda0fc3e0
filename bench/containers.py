"""Benchmark: the extractor in a container (podman's Docker API) against the same blocks in-process.

Prints (nothing here asserts a speed):
  * setup: the container engine and images (scripts/container_setup.py), first and cached;
    ``--fresh`` makes the first one from nothing in a temporary folder (debootstrap, wheels,
    image build: a few minutes), else the first figure is whatever this machine's cache needed;
  * per block, the same Seattle months landed three ways, each forced, against a warmed replay:
      - in-process ``run_block`` (what local mode's task runs, interpreter and imports warm),
      - the ``civic extract`` command in a fresh host process (a cold interpreter, no container),
      - a container of the extractor image through the Docker API (create, start -> exit, remove),
    with the extract time the manifest reports, so the overhead of each way is wall - extract;
  * what a container costs doing nothing (``true``) and importing the extractor;
  * peak memory: the container's cgroup peak (memory.peak on cgroup v2, memory.max_usage_in_bytes
    on v1: page cache included) and the extractor process's own VmHWM, beside the host process's.
The three landings of a block must agree (same sha256).

    .venv/bin/python bench/containers.py [--months 3] [--rows-per-month 20000] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import _common as common  # noqa: E402
import container_setup  # noqa: E402

# Run inside the container and in the host process alike: the CLI, then the process's peaks.
WRAP = """
import json, sys
from civic_pipelines.cli import main
rc = main(["extract", "--source", sys.argv[1], "--month", sys.argv[2], "--lake", sys.argv[3], "--force"])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
peak = None
for path in ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"):
    try:
        peak = int(open(path).read())
        break
    except (OSError, ValueError):
        pass
print(json.dumps({"vmhwm_kb": hwm, "cgroup_peak_bytes": peak}), flush=True)
sys.exit(rc)
"""


def parse_output(text: str) -> tuple[dict, dict]:
    """The manifest line and the peaks line from the wrapped CLI's output."""
    lines = [line for line in text.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-2]), json.loads(lines[-1])


def run_container(client, image: str, command: list[str], env: dict, lake: str, user: str | None = None) -> dict:
    from docker.types import Mount

    created = time.perf_counter()
    container = client.create_container(
        image=image,
        command=command,
        environment=env,
        user=user,
        host_config=client.create_host_config(
            network_mode="host", mounts=[Mount(target="/lake", source=lake, type="bind")]
        ),
    )
    started = time.perf_counter()
    client.start(container["Id"])
    status = client.wait(container["Id"])["StatusCode"]
    ended = time.perf_counter()
    output = client.logs(container["Id"], stdout=True, stderr=True).decode(errors="replace")
    client.remove_container(container["Id"])
    removed = time.perf_counter()
    if status != 0:
        raise SystemExit(f"container {command[:3]} exited {status}: {output[-2000:]}")
    return {"create": started - created, "run": ended - started, "remove": removed - ended, "output": output}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--rows-per-month", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=18766)
    parser.add_argument("--fresh", action="store_true", help="time the first setup from nothing, in a temporary folder")
    args = parser.parse_args()
    months = [f"2023-{m:02d}" for m in range(1, args.months + 1)]

    home = Path(tempfile.mkdtemp(prefix="civic-containers-fresh-")) if args.fresh else container_setup.HOME
    work = Path(tempfile.mkdtemp(prefix="civic-bench-containers-"))
    server = service = None
    try:
        started = time.monotonic()
        first = container_setup.setup(home)
        first_seconds = time.monotonic() - started
        started = time.monotonic()
        cached = container_setup.setup(home)
        cached_seconds = time.monotonic() - started
        service = container_setup.Service(work / "sock", cached.env)
        started = time.monotonic()
        service.start()
        service_seconds = time.monotonic() - started

        import docker

        from civic_pipelines.extract import run_block

        server = common.start_seattle_replay_process(
            args.port, args.rows_per_month, env={**os.environ, "PYTHONPATH": str(ROOT / "include")}
        )
        conn = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": args.port, "schema": "http"})
        os.environ["AIRFLOW_CONN_CIVIC_SEATTLE_CRIME"] = conn
        os.environ["CIVIC_NO_AIRFLOW_LOOKUP"] = "1"  # as bench/extract_seattle.py: the connection is the variable
        env = {"AIRFLOW_CONN_CIVIC_SEATTLE_CRIME": conn, "CIVIC_NO_AIRFLOW_LOOKUP": "1"}
        lakes = {name: work / name for name in ("warm", "inprocess", "host", "container")}
        for lake in lakes.values():
            lake.mkdir(parents=True)
        print(f"warming the replay server: {len(months)} months x {args.rows_per_month:,} rows ...", flush=True)
        for month in months:  # every page generated and cached once: all three ways see the same server
            run_block("seattle_crime", month, lake=str(lakes["warm"]), force=True)

        client = docker.APIClient(base_url=service.url, version="auto")
        image = cached.image
        idle = run_container(client, image, ["true"], {}, str(lakes["container"]))
        imports = run_container(
            client,
            image,
            ["python", "-c", "import civic_pipelines.extract, civic_pipelines.cli"],
            {},
            str(lakes["container"]),
        )
        host_import = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import civic_pipelines.extract, civic_pipelines.cli"],
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "include")},
        )
        host_import = time.perf_counter() - host_import

        rows = []
        for month in months:
            started = time.perf_counter()
            inproc = run_block("seattle_crime", month, lake=str(lakes["inprocess"]), force=True)
            inproc_wall = time.perf_counter() - started

            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", WRAP, "seattle_crime", month, str(lakes["host"])],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "include")},
            )
            host_wall = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"host civic extract failed: {result.stderr[-2000:]}")
            host_manifest, host_peaks = parse_output(result.stdout)

            ran = run_container(
                client, image, ["python", "-c", WRAP, "seattle_crime", month, "/lake"], env, str(lakes["container"])
            )
            box_manifest, box_peaks = parse_output(ran["output"])
            same = inproc["sha256"] == host_manifest["sha256"] == box_manifest["sha256"]
            rows.append(
                {
                    "month": month,
                    "rows": inproc["rows"],
                    "same": same,
                    "inproc": (inproc_wall, inproc["seconds"]),
                    "host": (host_wall, host_manifest["seconds"], host_peaks["vmhwm_kb"] / 1024),
                    "box": (
                        ran["run"],
                        box_manifest["seconds"],
                        box_peaks["vmhwm_kb"] / 1024,
                        (box_peaks["cgroup_peak_bytes"] or 0) / 2**20,
                        ran["create"],
                        ran["remove"],
                    ),
                }
            )
        left = client.containers(all=True)
        client.close()
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        if service:
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
        if args.fresh:
            env = container_setup.write_config(home)
            container_setup.podman(env, "system", "reset", "--force", check=False)
            shutil.rmtree(home, ignore_errors=True)

    def fmt(seconds: dict) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")

    print(
        f"\nsetup, first {'(--fresh: from nothing)' if args.fresh else '(this machine as it was)'}: "
        f"{first_seconds:.1f} s ({fmt(first.seconds)})"
    )
    print(f"setup, cached: {cached_seconds:.1f} s; API service up in {service_seconds:.2f} s; image {cached.image}")
    print(
        f"empty container (`true`): create {idle['create']:.2f} s, start -> exit {idle['run']:.2f} s, remove {idle['remove']:.2f} s"
    )
    print(
        f"import the extractor: in a container {imports['run']:.2f} s (start -> exit), in a host process {host_import:.2f} s"
    )
    print(
        f"\nseattle_crime, {args.rows_per_month:,} rows a month, every block forced; wall / extract (manifest) / overhead, seconds"
    )
    print(
        f"{'block':<9} {'rows':>7} | {'in-process':^20} | {'host process':^26} | {'container (start -> exit)':^40} | same"
    )
    print(
        f"{'':<9} {'':>7} | {'wall  extract  over':^20} | {'wall  extract  over  VmHWM':^26} | "
        f"{'wall  extract  over  VmHWM  cgroup  create':^40} |"
    )
    for row in rows:
        i, h, b = row["inproc"], row["host"], row["box"]
        print(
            f"{row['month']:<9} {row['rows']:>7,} | {i[0]:>4.2f}  {i[1]:>7.2f} {i[0] - i[1]:>5.2f} | "
            f"{h[0]:>4.2f}  {h[1]:>7.2f} {h[0] - h[1]:>5.2f} {h[2]:>5.0f}M | "
            f"{b[0]:>4.2f}  {b[1]:>7.2f} {b[0] - b[1]:>5.2f} {b[2]:>5.0f}M {b[3]:>6.0f}M {b[4]:>6.2f} | {row['same']}"
        )
    n = len(rows)
    over = {key: sum(r[key][0] - r[key][1] for r in rows) / n for key in ("inproc", "host", "box")}
    print(
        f"\nmean overhead per block: in-process {over['inproc']:.2f} s, host process {over['host']:.2f} s, "
        f"container {over['box']:.2f} s (+ create {sum(r['box'][4] for r in rows) / n:.2f} s, "
        f"remove {sum(r['box'][5] for r in rows) / n:.2f} s)"
    )
    print(
        f"container peak memory: cgroup {max(r['box'][3] for r in rows):.0f} MB (page cache included), "
        f"extractor VmHWM {max(r['box'][2] for r in rows):.0f} MB; host process VmHWM {max(r['host'][2] for r in rows):.0f} MB"
    )
    print(f"containers left behind: {len(left)}")
    return 0 if all(r["same"] for r in rows) and not left else 1


if __name__ == "__main__":
    sys.exit(main())
