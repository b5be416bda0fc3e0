"""A throwaway Redis server of its own (Debian's ``redis-server``) on a free loopback port.

Used by the CeleryExecutor test as the Celery broker. No persistence (no RDB snapshots, no AOF:
a broker that lives for one test has nothing to keep), a random password, listening on
127.0.0.1 only, its folder in a temp directory deleted on the way out.

    with redis_server() as server:
        server["url"]    # redis://:<password>@127.0.0.1:<port>/0, for [celery] broker_url
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from civic_pipelines.devtools.apt import require

START_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def redis_server(database: int = 0) -> Iterator[dict]:
    """Start ``redis-server``, wait until it answers PING, yield host, port, password, url, pid and
    root (its folder, with ``redis.log``); stop it and delete its folder on the way out."""
    require("redis-server")  # never installed from here: `make setup` installs it before the tests
    import redis

    root = Path(tempfile.mkdtemp(prefix="civic-redis-"))
    password = "pw-" + secrets.token_urlsafe(18)
    port = _free_port()
    # The password goes in a config file, not on the command line, where `ps` would show it.
    config = root / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "protected-mode yes",
                f"requirepass {password}",
                f"dir {root}",
                f"logfile {root / 'redis.log'}",
                'save ""',
                "appendonly no",
                "daemonize no",
                "",
            ]
        )
    )
    config.chmod(0o600)
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(config)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "redis.log").read_text(errors="replace")[-2000:] if (root / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}: {log}")
            time.sleep(0.1)
        yield {
            "host": "127.0.0.1",
            "port": port,
            "password": password,
            "pid": process.pid,
            "root": root,
            "url": f"redis://:{password}@127.0.0.1:{port}/{database}",
        }
    finally:
        client.close()
        if process.poll() is None:
            process.terminate()  # SIGTERM: with `save ""` Redis exits at once, writing nothing
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
