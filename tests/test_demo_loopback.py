"""`make demo` makes every user an admin (SimpleAuthManager's all-admins mode), which is acceptable
only because nobody else can reach what it starts. This starts the demo's replay server and Airflow
components exactly as scripts/demo.py does, waits until the scheduler and the triggerer heartbeat
(a log server of theirs would be listening by then), and reads the listening sockets of every
process in their sessions from the kernel (psutil): all on 127.0.0.1, none on Airflow's log-server
ports. The production settings (the Astro image and its compose override) never turn all-admins on.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_demo():
    spec = importlib.util.spec_from_file_location("civic_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.xdist_group("demo")
@pytest.mark.timeout(900)
def test_every_server_the_demo_starts_listens_on_loopback_only(tmp_path, reliability):
    reliability.row(
        fault="demo servers reachable from the network (all users admin)",
        source="demo",
        expected="API server, replay server and every Airflow component listen on 127.0.0.1 only; "
        "no log server on 8793/8794",
    )
    demo = load_demo()
    data, logs = tmp_path / "data", tmp_path / "logs"
    data.mkdir()
    logs.mkdir()
    api_port, replay_port = free_port(), free_port()
    env = demo.demo_environment(data, replay_port, api_port)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"  # why this test exists
    processes = {
        "replay": demo.start_group(
            [str(Path(sys.executable).parent / "civic"), "replay", "--port", str(replay_port)], env, logs / "replay.log"
        )
    }
    try:
        demo.airflow(env, "db", "migrate")
        processes.update(demo.start_airflow(env, logs, api_port))
        demo.wait_for(
            lambda: demo.http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"),
            300,
            "the API server",
            interval=1,
        )
        demo.wait_for(lambda: demo.components_healthy(api_port), 300, "the scheduler and the triggerer")
        time.sleep(5)  # a log server subprocess, had one been started, has bound its port by now
        sockets = demo.listening_sockets(processes)
        names = {name for name, *_ in sockets}
        assert ("api-server", "127.0.0.1", api_port) in sockets and ("replay", "127.0.0.1", replay_port) in sockets
        assert demo.loopback_only(sockets) == [], sockets
        assert not {port for *_, port in sockets} & {8793, 8794}, sockets
        # the check would see a log server: the scheduler's session holds its processes, which are alive
        assert all(demo.session_members(processes[name].pid) for name in ("scheduler", "triggerer", "dag-processor"))
        reliability.observed(
            f"{len(sockets)} listening sockets of {sorted(names)}, all on 127.0.0.1: "
            + ", ".join(f"{n} :{p}" for n, _, p in sockets)
        )
    finally:
        for name, process in reversed(processes.items()):
            demo.stop_group(process, name)
    for process in processes.values():
        assert not demo.session_members(process.pid)


def test_production_settings_never_make_every_user_an_admin():
    """All-admins is the demo's alone (it listens on loopback): the image, the compose override and
    the Airflow settings the Astro CLI loads leave Airflow's login on."""
    for name in ("Dockerfile", "docker-compose.override.yml", "airflow_settings.yaml", "requirements.txt"):
        text = (ROOT / name).read_text().lower()
        assert "all_admins" not in text, name
    # the demo's Airflow environment (scripts/demo.py starts its stack from it)
    assert "all_admins" in (ROOT / "include" / "civic_pipelines" / "devtools" / "local_airflow.py").read_text().lower()
    assert "local_airflow" in (ROOT / "scripts" / "demo.py").read_text()
