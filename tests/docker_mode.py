"""What a test needs to run a DAG's blocks in docker mode for real: the extractor image and
podman's Docker API (``scripts/container_setup.py``: built once, then cached under
``~/.cache/civic-pipelines/containers``), the Variables that send docker mode there, and a
recorder of what the operator asks the engine for.

Modules that check local mode's landings import ``container_engine`` and run the same assertions
with ``extract_mode="docker"``; ``test_containers_e2e`` adds the container-only checks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import container_setup  # noqa: E402

# Every docker-mode test runs in one pytest-xdist lane ("containers"), in collection order: one
# image build and one podman service at a time, and a module's ordered tests stay together.
CONTAINERS = pytest.mark.xdist_group("containers")
MODES = ["local", pytest.param("docker", marks=CONTAINERS)]
# Setup and per-block figures, printed by test_containers_e2e's last test (and kept per process).
FIGURES: list[str] = []


@pytest.fixture(scope="module")
def container_engine(tmp_path_factory):
    """The extractor image (built once, then cached) and the Docker API on a socket of this module."""
    done = container_setup.setup()
    FIGURES.append(
        "setup: "
        + ("cached" if done.cached else "built")
        + ", "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in done.seconds.items())
        + f"; image {done.image}"
    )
    service = container_setup.Service(tmp_path_factory.mktemp("podman"), done.env)
    started = time.monotonic()
    service.start()
    FIGURES.append(f"API service up in {time.monotonic() - started:.1f} s on {service.url}")
    try:
        yield {"setup": done, "service": service}
    finally:
        service.stop()


def docker_settings(engine) -> dict[str, str]:
    """The Variables (as AIRFLOW_VAR_*) that send docker mode to the engine: host networking, since
    the replay server (and moto's S3) listen on the host's loopback, and the test's uid:gid, so
    the lake's files stay the test user's."""
    return {
        "AIRFLOW_VAR_CIVIC_EXTRACTOR_IMAGE": engine["setup"].image,
        "AIRFLOW_VAR_CIVIC_DOCKER_URL": engine["service"].url,
        "AIRFLOW_VAR_CIVIC_DOCKER_NETWORK": "host",
        "AIRFLOW_VAR_CIVIC_DOCKER_USER": f"{os.geteuid()}:{os.getegid()}",
    }


def use_mode(request, patch: pytest.MonkeyPatch, mode: str) -> dict | None:
    """Set up ``mode`` for a test or module: nothing for local; for docker, the engine (from the
    ``container_engine`` fixture, which the calling module imports) and its Variables."""
    assert mode in ("local", "docker"), mode
    if mode == "local":
        return None
    engine = request.getfixturevalue("container_engine")
    for key, value in docker_settings(engine).items():
        patch.setenv(key, value)
    return engine


def record_engine_calls(monkeypatch) -> list[dict]:
    """What the operator asks the engine for (command, environment, host config) and when each
    container starts and ends, recorded on the way through docker-py's APIClient."""
    import docker

    calls: list[dict] = []
    create, start, wait = docker.APIClient.create_container, docker.APIClient.start, docker.APIClient.wait

    def record_create(self, *args, **kwargs):
        container = create(self, *args, **kwargs)
        calls.append(
            {
                "id": container["Id"],
                "command": kwargs.get("command"),
                "environment": kwargs.get("environment"),
                "host_config": kwargs.get("host_config"),
                "image": kwargs.get("image"),
                "user": kwargs.get("user"),
                "created": time.monotonic(),
            }
        )
        return container

    def record_start(self, container, *args, **kwargs):
        for call in calls:
            if call["id"] == container:
                call["started"] = time.monotonic()
        return start(self, container, *args, **kwargs)

    def record_wait(self, container, *args, **kwargs):
        result = wait(self, container, *args, **kwargs)
        for call in calls:
            if call["id"] == container:
                call["ended"] = time.monotonic()
                call["exit_code"] = result.get("StatusCode")
        return result

    monkeypatch.setattr(docker.APIClient, "create_container", record_create)
    monkeypatch.setattr(docker.APIClient, "start", record_start)
    monkeypatch.setattr(docker.APIClient, "wait", record_wait)
    return calls


def overhead_figure(label: str, call: dict, manifest: dict) -> str:
    """One block's container cost: create, start -> exit, and what of it was not the extraction."""
    container = call["ended"] - call["started"]
    return (
        f"{label}: {manifest.get('rows')} rows; container create {call['started'] - call['created']:.2f} s, "
        f"start -> exit {container:.2f} s, of which extract {manifest['seconds']:.2f} s "
        f"(overhead {container - manifest['seconds']:.2f} s: runtime + interpreter + imports)"
    )


def assert_extract_mode(dag, mode: str) -> None:
    """The DAG's extract_load really is the mode's operator (no silent fallback to in-process)."""
    operator = dag.get_task("extract_load").operator_class
    name = getattr(operator, "__name__", operator)
    assert name == {"local": "_PythonDecoratedOperator", "docker": "CivicExtractDockerOperator"}[mode], name
