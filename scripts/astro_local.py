"""What `astro dev start` runs, run on a machine with no Docker engine and no Astro CLI.

The Astro CLI and the Astro Runtime and postgres images cannot be fetched here (only PyPI and
Debian are reachable), so this module stands in for them, each step as close to the real one as
this machine allows, and timed:

1. **Images** (podman, cached by a hash of their inputs under ``~/.cache/civic-pipelines``):
   the Debian base and the extractor image from ``scripts/container_setup.py``; a stand-in for
   the Runtime (``scripts/astro_standin/Dockerfile.runtime``: Airflow at the version the Runtime
   tag names, user astro, /usr/local/airflow, the Runtime's ONBUILD steps); a stand-in for the
   postgres image (``Dockerfile.postgres``); then the project's own ``Dockerfile`` built with
   nothing changed but its FROM line (a temporary copy). Python packages come from the host's uv
   cache, which `make setup` filled: the builds mount it with the host's uv and the lock (no index).
2. **The compose project** the CLI generates for Airflow 3 (postgres, db-migration, scheduler,
   dag-processor, api-server, triggerer), rendered here as the CLI renders its template
   ``airflow/include/airflow3/composeyml.go.tmpl`` with its default configuration (project name
   from .astro/config.yaml plus a hash of the path, postgres/postgres, LocalExecutor, ports on
   127.0.0.1; only the two image names are the stand-ins'), merged with the project's
   ``docker-compose.override.yml`` and run by podman-compose against podman. podman's Docker API
   socket (``container_setup.Service``) is what the override mounts as the Docker socket.
3. **airflow_settings.yaml imported as the CLI does** (``settings/settings.go``): pools, then
   variables, then connections, each with the ``airflow`` command inside the scheduler container.
4. **A run**: the source connections pointed at the replay server (on the host; containers reach
   it at host.containers.internal), ``civic_extract_mode=docker``; ``seattle_crime`` and
   ``street_manager`` (permits) triggered for two months each through the REST API (v2, a token
   from the api-server's /auth/token), each block landed by its own extractor container that the
   scheduler's DockerOperator starts through the socket.
5. **Checks**: one extractor container per block, the lake and the warehouse hold exactly what the
   same blocks land in-process from the same replay, no DAG import error, and the dashboard answers
   at /civic/ inside the api-server container.

This module runs the steps in order and owns step 4 (the run through the REST API); step 1 is
``scripts/astro_images.py``, steps 2 and 3 ``scripts/astro_stack.py``, step 5 ``scripts/astro_checks.py``.

Command line::

    .venv/bin/python scripts/astro_local.py run    # 1-5, then stop the stack (images kept); prints figures
    .venv/bin/python scripts/astro_local.py build  # step 1 only
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import astro_images  # noqa: E402
import container_setup  # noqa: E402
from astro_checks import compare_lakes, landed_blocks, local_landing, warehouse_counts  # noqa: E402
from astro_images import airflow_line, locked_airflow, log, project_name, runtime_tag  # noqa: E402,F401 (tests read them here)
from astro_stack import Stack, free_port, import_settings, render_compose, start_stack, wait_healthy  # noqa: E402,F401 - re-exported

SOURCES = {"seattle_crime": ["2024-01", "2024-02"], "street_manager": ["2024-02", "2024-03"]}
STREET_MANAGER_EVENTS = {"permit": 150, "activity": 20, "section_58": 10}
CONNECTIONS = {"seattle_crime": "civic_seattle_crime", "street_manager": "civic_street_manager"}


# ---------------------------------------------------------------- 4. a run through the REST API


def network_gateway(env: dict, network: str) -> str:
    """The compose network's gateway: the host as the containers on it see it (the replay
    listens there; podman's host.containers.internal names the same host)."""
    info = json.loads(container_setup.podman(env, "network", "inspect", network).stdout)[0]
    return info["subnets"][0]["gateway"]


def previous_month() -> str:
    now = time.gmtime()
    year, month = (now.tm_year, now.tm_mon - 1) if now.tm_mon > 1 else (now.tm_year - 1, 12)
    return f"{year:04d}-{month:02d}"


def point_sources_at_replay(stack: Stack, host: str, port: int) -> None:
    for conn_id in CONNECTIONS.values():
        stack.exec("scheduler", f'airflow connections delete "{conn_id}"', check=False)
        stack.exec(
            "scheduler",
            f"airflow connections add '{conn_id}' --conn-type http --conn-host '{host}' "
            f"--conn-port {port} --conn-schema http",
        )


def set_variables(stack: Stack, variables: dict[str, str]) -> None:
    for key, value in variables.items():
        stack.exec("scheduler", f"airflow variables set {key} '{value}'")


def wait_docker_mode(stack: Stack, dag_ids: list[str], timeout: float = 300) -> float:
    """Until the dag-processor has re-parsed the DAGs with civic_extract_mode=docker (the mode is
    read at parse time): extract_load is then the DockerOperator subclass."""
    started = time.monotonic()
    while True:
        token = stack.token()
        operators = {}
        for dag_id in dag_ids:
            try:
                operators[dag_id] = stack.api("GET", f"/dags/{dag_id}/tasks/extract_load", token=token).get(
                    "operator_name"
                )
            except urllib.error.HTTPError:
                operators[dag_id] = None
        if all(name == "CivicExtractDockerOperator" for name in operators.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the DAGs were not re-parsed in docker mode within {timeout:.0f} s: {operators}")
        time.sleep(1)


def trigger_and_wait(stack: Stack, runs: dict[str, dict], timeout: float = 1500) -> dict[str, dict]:
    """Unpause and trigger each DAG (conf: its months), wait for every run to finish; returns
    the runs with their task instances."""
    token = stack.token()
    started = {}
    for dag_id, conf in runs.items():
        stack.api("PATCH", f"/dags/{dag_id}", {"is_paused": False}, token=token)
        run = stack.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}, token=token)
        started[dag_id] = run["dag_run_id"]
        log(f"triggered {dag_id} {run['dag_run_id']} with {conf}")
    deadline = time.monotonic() + timeout
    finished: dict[str, dict] = {}
    while len(finished) < len(started):
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs not finished in {timeout:.0f} s: {set(started) - set(finished)}")
        time.sleep(2)  # a few API reads a poll; a long interval is idle lane time
        token = stack.token()
        for dag_id, run_id in started.items():
            if dag_id in finished:
                continue
            run = stack.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}", token=token)
            if run["state"] in ("success", "failed"):
                instances = stack.api(
                    "GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=500", token=token
                )
                finished[dag_id] = {**run, "task_instances": instances["task_instances"]}
                log(f"{dag_id} {run_id}: {run['state']}")
    # Unpausing also starts the scheduled (catchup) runs from the start month: wait for those too,
    # until none is left to create. A run made before the start-month Variable was re-parsed moves
    # the next one on, and the scheduler creates it only after the earlier one has finished: "every
    # listed run finished" alone can hold just before that run appears (its container then started
    # after the runs were listed, and the container count no longer matched them).
    while True:
        token = stack.token()
        # Read before the runs: a run the scheduler creates after this read is not due now.
        next_due = [
            dag_id
            for dag_id in started
            if (after := stack.api("GET", f"/dags/{dag_id}", token=token)["next_dagrun_run_after"])
            and datetime.fromisoformat(after.replace("Z", "+00:00")) <= datetime.now(UTC)
        ]
        listed = {
            dag_id: stack.api("GET", f"/dags/{dag_id}/dagRuns?limit=100", token=token)["dag_runs"] for dag_id in started
        }
        if not next_due and all(run["state"] in ("success", "failed") for runs_ in listed.values() for run in runs_):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"scheduled runs not finished in {timeout:.0f} s")
        time.sleep(2)  # a few API reads a poll; a long interval is idle lane time
    for dag_id, runs_ in listed.items():
        finished[dag_id]["all_runs"] = {run["dag_run_id"]: run["state"] for run in runs_}
        finished[dag_id]["all_task_instances"] = [
            ti
            for run in runs_
            for ti in stack.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}/taskInstances?limit=500",
                token=token,
            )["task_instances"]
        ]
    return finished


def extractor_containers(env: dict, image: str, since: str) -> list[dict]:
    """The extractor containers podman started since ``since`` (its event log)."""
    # Filtered here: podman 4.3's `events --filter image=` matches nothing with the file event log.
    result = container_setup.podman(
        env,
        "events",
        "--stream=false",
        "--since",
        since,
        "--filter",
        "event=start",
        "--format",
        "json",
        check=False,
        timeout=120,
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip().startswith("{")]
    return [event for event in events if event.get("Status") == "start" and event.get("Image") == image]


@dataclass
class Result:
    figures: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    lake_rows: dict = field(default_factory=dict)
    warehouse: dict = field(default_factory=dict)
    containers: list = field(default_factory=list)
    import_errors: int = -1
    dashboard: tuple = ()
    settings: dict = field(default_factory=dict)


def build_images(home: Path = container_setup.HOME) -> tuple[container_setup.Setup, dict, dict]:
    seconds = {}
    done = container_setup.setup(home)
    seconds.update({f"base+extractor ({k})": v for k, v in done.seconds.items() if k in ("base", "extractor")})
    postgres, seconds["postgres stand-in"] = astro_images.build_postgres_standin(done.env, done.base)
    runtime, seconds["runtime stand-in"] = astro_images.build_runtime_standin(done.env, done.base, home)
    airflow, seconds["project image"] = astro_images.build_project_image(done.env, runtime, home, project_name())
    extractor = astro_images.tag_project_extractor(done.env, done.image, project_name())
    return done, {"postgres": postgres, "runtime": runtime, "airflow": airflow, "extractor": extractor}, seconds


def run(work: Path, keep: bool = False) -> Result:
    """Steps 1-5 in ``work`` (the socket, the compose file, the host data folder); the stack
    is taken down at the end unless ``keep``. Raises on any failed check."""
    from civic_pipelines.replay.server import make_server

    result = Result()
    started = time.monotonic()
    if not Path("/usr/lib/cni/dnsname").exists():
        # podman 4.3 (CNI) resolves service names on a compose network only with this plugin.
        raise RuntimeError(
            "podman needs the CNI dnsname plugin for the compose network's names: "
            "run `make setup` (it installs golang-github-containernetworking-plugin-dnsname)"
        )
    done, images, result.figures["build seconds"] = build_images()
    result.figures["images"] = images
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    (data / "lake").mkdir(parents=True)
    os.chmod(data, 0o777)
    os.chmod(data / "lake", 0o777)
    service = container_setup.Service(work / "sock", done.env).start()
    os.chmod(service.socket, 0o660)  # the scheduler's astro user reaches it through group 0 (DOCKER_GID)
    server = make_server(host="0.0.0.0", port=0)
    server.street_manager.configure({"latest_month": "2024-06", "events_per_month": STREET_MANAGER_EVENTS})
    server.start()
    port = int(server.url.rsplit(":", 1)[1])
    stack = None
    try:
        up = time.monotonic()
        stack = start_stack(done.env, project_name(), images, service.socket, data, work / "compose")
        result.figures["compose up seconds"] = time.monotonic() - up
        result.figures["healthy after seconds"] = wait_healthy(stack) + result.figures["compose up seconds"]
        log(f"stack {stack.name} healthy at {stack.url} after {result.figures['healthy after seconds']:.1f} s")
        imported = time.monotonic()
        result.settings = import_settings(stack)
        result.figures["settings import seconds"] = time.monotonic() - imported
        gateway = network_gateway(done.env, stack.network)
        point_sources_at_replay(stack, gateway, port)
        set_variables(
            stack,
            {
                "civic_extract_mode": "docker",
                "civic_extractor_image": images["extractor"],
                "civic_docker_network": stack.network,
                "civic_docker_user": "50000:0",
                "civic_street_manager_parts": '["permit"]',
                # catchup from last month only (the settings' 2008-01 would queue ~200 runs)
                **{f"civic_{source}_start_month": previous_month() for source in SOURCES},
            },
        )
        result.figures["docker-mode reparse seconds"] = wait_docker_mode(stack, list(SOURCES))
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
        triggered = time.monotonic()
        result.runs = trigger_and_wait(
            stack, {dag_id: {"start_month": months[0], "end_month": months[-1]} for dag_id, months in SOURCES.items()}
        )
        result.figures["runs seconds"] = time.monotonic() - triggered
        result.containers = extractor_containers(done.env, images["extractor"], since)
        token = stack.token()
        result.import_errors = stack.api("GET", "/importErrors", token=token)["total_entries"]
        result.figures["dags"] = stack.api("GET", "/dags?limit=100", token=token)["total_entries"]
        page = stack.exec(
            "api-server",
            "python3 -c \"import urllib.request as u; r = u.urlopen('http://localhost:8080/civic/'); "
            'print(r.status); print(r.read().decode()[:20000])"',
        )
        status, _, body = page.partition("\n")
        result.dashboard = (int(status), body)
        local = work / "local_lake"
        shutil.rmtree(local, ignore_errors=True)
        result.figures["in-process block seconds"] = local_landing(
            server.url.replace("0.0.0.0", "127.0.0.1"), local, landed_blocks(data / "lake")
        )
        result.lake_rows = compare_lakes(data / "lake", local)
        result.warehouse = warehouse_counts(data / "warehouse.duckdb")
        extract_seconds = {}
        for dag_id, run_ in result.runs.items():
            for ti in run_["task_instances"]:
                if ti["task_id"] == "extract_load" and ti.get("duration") is not None:
                    extract_seconds[f"{dag_id}[{ti['map_index']}]"] = ti["duration"]
        result.figures["docker-mode extract_load seconds"] = extract_seconds
        result.figures["total seconds"] = time.monotonic() - started
        return result
    except Exception:
        if stack is not None:
            logs = stack.compose("logs", "--tail", "60", check=False)
            log("stack logs (tail):\n" + logs.stdout[-8000:] + logs.stderr[-2000:])
        raise
    finally:
        server.stop()
        if stack is not None and not keep:
            stack.compose("down", "-v", check=False)
        if not keep:
            service.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "build"])
    # Not under /root or a home folder: the data folder is mounted at the same absolute path in the
    # containers, where the astro user must be able to traverse its parents (the image's /root is 0700).
    parser.add_argument("--work", default="/tmp/civic-pipelines-astro-local")
    args = parser.parse_args(argv)
    if args.command == "build":
        _, images, seconds = build_images()
        print(json.dumps({"images": images, "seconds": {k: round(v, 1) for k, v in seconds.items()}}, indent=2))
        return 0
    result = run(Path(args.work))
    print(
        json.dumps(
            {
                "figures": result.figures,
                "lake_rows": result.lake_rows,
                "warehouse": result.warehouse,
                "extractor_containers": len(result.containers),
                "import_errors": result.import_errors,
                "runs": {k: v["state"] for k, v in result.runs.items()},
                "dashboard_status": result.dashboard[0] if result.dashboard else None,
            },
            indent=2,
            default=lambda value: round(value, 1) if isinstance(value, float) else str(value),
        )
    )
    ok = all(v["state"] == "success" for v in result.runs.values()) and result.import_errors == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
