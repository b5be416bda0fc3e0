"""Steps 2 and 3 of ``scripts/astro_local.py``: the compose project the Astro CLI generates for
Airflow 3, rendered from its template with the CLI's defaults and run by podman-compose (``Stack``:
its files, environment, containers and the REST API v2), and ``airflow_settings.yaml`` imported into
it as the CLI's settings.go does (pools, variables, connections through the ``airflow`` command).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import container_setup  # noqa: E402

# ---------------------------------------------------------------- 2. the compose project


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def render_compose(
    name: str,
    airflow_image: str,
    postgres_image: str,
    postgres_port: int,
    api_port: int,
    settings_file: str = "airflow_settings.yaml",
) -> dict:
    """The Astro CLI's Airflow 3 compose file, as its generateConfig renders the template with the
    CLI's defaults (postgres.user/password "postgres", host "postgres", duplicate_volumes true,
    airflow.expose_port false, mount label z, no env file). Ports are the CLI's postgres.port and
    api-server.port settings, chosen free here so parallel runs do not collide."""
    home = str(ROOT)
    env = {
        "AIRFLOW__API__BASE_URL": "http://localhost:8080",
        "AIRFLOW__API__PORT": 8080,
        "AIRFLOW__API_AUTH__JWT_SECRET": name,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://api-server:8080/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__FERNET_KEY": "d6Vefz3G9U_ynXB3cr7y_Ak35tAHkEGAVxuz_B-jzWw=",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN": "postgresql://postgres:postgres@postgres:5432",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://postgres:postgres@postgres:5432",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": True,
        "AIRFLOW__WEBSERVER__SECRET_KEY": name,
        "AIRFLOW__WEBSERVER__RBAC": "True",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "True",
        "ASTRONOMER_ENVIRONMENT": "local",
    }
    labels = {"io.astronomer.docker": "true", "io.astronomer.docker.cli": "true"}
    mounts = [f"{home}/{folder}:/usr/local/airflow/{folder}:z" for folder in ("dags", "plugins", "include", "tests")]

    def airflow(component: str, command: list[str], volumes: list[str], **extra) -> dict:
        return {
            "depends_on": ["db-migration"],
            "image": airflow_image,
            "command": command,
            "restart": "unless-stopped",
            "networks": ["airflow"],
            "user": "astro",
            "labels": {**labels, "io.astronomer.docker.component": f"airflow-{component}"},
            "environment": dict(env),
            "volumes": [*volumes, "airflow_logs:/usr/local/airflow/logs"],
            **extra,
        }

    scheduler_mounts = list(mounts)
    if (ROOT / settings_file).exists():
        scheduler_mounts.append(f"{home}/{settings_file}:/usr/local/airflow/{settings_file}:z")
    return {
        "x-common-env-vars": env,
        "networks": {"airflow": {"driver": "bridge"}},
        "volumes": {"postgres_data": {"driver": "local"}, "airflow_logs": {"driver": "local"}},
        "services": {
            "postgres": {
                "image": postgres_image,
                "restart": "unless-stopped",
                "networks": ["airflow"],
                "labels": labels,
                "ports": [f"127.0.0.1:{postgres_port}:5432"],
                "volumes": ["postgres_data:/var/lib/postgresql/data"],
                "environment": {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "postgres"},
            },
            "db-migration": {
                "depends_on": ["postgres"],
                "image": airflow_image,
                "command": ["airflow", "db", "migrate"],
                "networks": ["airflow"],
                "labels": {**labels, "io.astronomer.docker.component": "airflow-db-migration"},
                "environment": dict(env),
            },
            "scheduler": airflow("scheduler", ["airflow", "scheduler"], scheduler_mounts),
            "dag-processor": airflow("dag-processor", ["airflow", "dag-processor"], mounts),
            "api-server": airflow(
                "api-server", ["airflow", "api-server"], mounts, ports=[f"127.0.0.1:{api_port}:8080"]
            ),
            "triggerer": airflow("triggerer", ["airflow", "triggerer"], mounts[:3]),
        },
    }


@dataclass
class Stack:
    """The compose project under podman-compose: files, environment, names, URLs."""

    name: str
    folder: Path
    env: dict
    api_port: int
    data: Path
    files: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def network(self) -> str:
        return f"{self.name}_airflow"

    def compose(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "podman_compose", "-p", self.name]
        for path in self.files:
            command += ["-f", str(path)]
        result = subprocess.run(
            [*command, *args], env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"podman-compose {' '.join(args)} failed ({result.returncode}): "
                f"{result.stdout[-2000:]} {result.stderr[-3000:]}"
            )
        return result

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def exec(self, service: str, command: str, check: bool = True, timeout: float = 300) -> str:
        """``bash -c command`` in the service's container, as the CLI's AirflowCommand does."""
        result = container_setup.podman(
            self.env, "exec", self.container(service), "bash", "-c", command, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{service}: {command[:120]} failed ({result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}"
            )
        return result.stdout

    # ------------------------------------------------ REST API (v2)

    def token(self) -> str:
        # The CLI's compose file sets SimpleAuthManager with every user admin: GET /auth/token
        # then gives a token without credentials.
        with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.token()}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")


def start_stack(env: dict, name: str, images: dict, socket_path: Path, data: Path, folder: Path) -> Stack:
    folder.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    rendered = render_compose(name, images["airflow"], images["postgres"], free_port(), api_port)
    compose_file = folder / "docker-compose.yaml"
    compose_file.write_text(yaml.safe_dump(rendered, sort_keys=False))
    stack_env = {**env, "CIVIC_HOST_DATA": str(data), "DOCKER_SOCK": str(socket_path), "DOCKER_GID": "0"}
    stack = Stack(
        name=name,
        folder=folder,
        env=stack_env,
        api_port=api_port,
        data=data,
        files=[compose_file, ROOT / "docker-compose.override.yml"],
    )
    stack.compose("down", "-v", check=False)
    stack.compose("up", "-d")
    return stack


def wait_healthy(stack: Stack, timeout: float = 600) -> float:
    """Until the api-server's health endpoint reports the metadatabase, scheduler, triggerer and
    DAG processor healthy (what `astro dev start` waits for, and a bit more)."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{stack.url}/api/v2/monitor/health", timeout=5) as response:
                health = json.loads(response.read())
            last = health
            if all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ):
                return time.monotonic() - started
        except (OSError, urllib.error.URLError, ValueError) as error:
            last = error
        time.sleep(1)  # a health read is cheap; a long interval only adds to the wait
    logs = stack.compose("logs", "--tail", "40", check=False)
    raise RuntimeError(f"the stack did not become healthy in {timeout:.0f} s: {last}; {logs.stdout[-4000:]}")


# ---------------------------------------------------------------- 3. airflow_settings.yaml


def import_settings(
    stack: Stack, settings_file: Path = ROOT / "airflow_settings.yaml", service: str = "scheduler"
) -> dict:
    """The CLI's ConfigSettings (settings/settings.go) for Airflow >= 2: pools, variables,
    connections, each an ``airflow`` command run with ``bash -c`` in the container; a connection
    already listed is deleted first; a connection without conn_type (or conn_uri) is skipped."""
    settings = (yaml.safe_load(settings_file.read_text()) or {}).get("airflow") or {}
    done = {"pools": [], "variables": [], "connections": []}
    for pool in settings.get("pools") or []:
        if pool.get("pool_name") and pool.get("pool_slot"):
            stack.exec(
                service,
                f"airflow pools set  {pool['pool_name']} {pool['pool_slot']} '{pool.get('pool_description') or ''}' ",
            )
            done["pools"].append(pool["pool_name"])
    for variable in settings.get("variables") or []:
        if variable.get("variable_name") and variable.get("variable_value") not in (None, ""):
            stack.exec(service, f"airflow variables set {variable['variable_name']} '{variable['variable_value']}'")
            done["variables"].append(variable["variable_name"])
    listed = stack.exec(service, "airflow connections list -o plain", check=False)
    for conn in settings.get("connections") or []:
        conn_id = conn.get("conn_id")
        if not conn_id:
            continue
        if conn_id in listed:
            stack.exec(service, f'airflow connections delete  "{conn_id}"', check=False)
        if not (conn.get("conn_type") or conn.get("conn_uri")):
            continue
        command = f"airflow connections add  '{conn_id}' "
        if conn.get("conn_type"):
            command += f"--conn-type '{conn['conn_type']}' "
        if conn.get("conn_extra"):
            command += f"--conn-extra '{json.dumps(conn['conn_extra'])}' "
        for key in ("host", "login", "password", "schema"):
            if conn.get(f"conn_{key}"):
                command += f"--conn-{key} '{conn[f'conn_{key}']}' "
        if conn.get("conn_port"):
            command += f"--conn-port {conn['conn_port']}"
        if conn.get("conn_uri") and not any(
            conn.get(f"conn_{k}") for k in ("type", "host", "login", "password", "schema", "port")
        ):
            command += f"--conn-uri '{conn['conn_uri']}' "
        stack.exec(service, command)
        done["connections"].append(conn_id)
    return done
