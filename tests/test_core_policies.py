"""The core's one retry policy and its layering: every retry reads one backoff, and only the
orchestration layer touches Airflow (the layers below ask core.variables)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from civic_pipelines import http
from civic_pipelines.core import secrets, variables

PACKAGE = Path(http.__file__).resolve().parent


def modules(exclude: tuple[str, ...] = ()):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(exclude):
            yield relative, path.read_text()


def test_one_backoff_drives_urllib3_and_the_sources_own_retries(monkeypatch):
    monkeypatch.setenv("CIVIC_HTTP_BACKOFF", "0.25")
    policy = http.retry_policy()
    assert policy.backoff_factor == 0.25
    assert policy.delay(0) == 0.25 and policy.delay(3) == 2.0
    assert policy.delay(10, cap=5.0) == 5.0 and policy.delay(20) == policy.backoff_max == 60.0
    assert policy.delay(2, scale=0.4, cap=10.0) == pytest.approx(0.4)  # Street Manager's resumed download
    with http.make_session() as session:
        retry = session.get_adapter("http://127.0.0.1").max_retries
    assert retry.backoff_factor == 0.25 and retry.backoff_max == 60.0
    monkeypatch.delenv("CIVIC_HTTP_BACKOFF")
    assert http.retry_policy().backoff_factor == http.DEFAULT_BACKOFF == 0.5


def test_no_module_reads_the_backoff_setting_but_the_policy():
    readers = [name for name, text in modules() if "CIVIC_HTTP_BACKOFF" in text or "_backoff_factor" in text]
    assert readers == ["http.py"]


def test_only_orchestration_imports_orchestration_or_airflow():
    crossing = []
    for name, text in modules(exclude=("orchestration/", "dashboard/")):
        for node in ast.walk(ast.parse(text)):
            imported = []
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = [node.module]
            elif isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            crossing += [
                (name, module) for module in imported if module.startswith(("civic_pipelines.orchestration", "airflow"))
            ]
    # connections.py and sinks/postgres.py still ask Airflow for a connection themselves (lazily).
    assert {name for name, _ in crossing} <= {"connections.py", "sinks/postgres.py"}, crossing


def test_a_variable_comes_from_the_environment_then_the_registered_lookup(monkeypatch):
    monkeypatch.delenv("CIVIC_NO_AIRFLOW_LOOKUP", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_CIVIC_TEST_KEY", raising=False)
    asked = []
    monkeypatch.setattr(
        variables, "_lookup", lambda key: asked.append(key) or ("from airflow" if key == "civic_test_key" else None)
    )
    assert variables.get_variable("civic_test_key", "default") == "from airflow"
    assert variables.get_variable("civic_other_key", "default") == "default"
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_TEST_KEY", "from env")
    assert variables.get_variable("civic_test_key", "default") == "from env"
    assert asked == ["civic_test_key", "civic_other_key"]
    monkeypatch.delenv("AIRFLOW_VAR_CIVIC_TEST_KEY")
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    assert variables.get_variable("civic_test_key", "default") == "default"


def test_importing_orchestration_registers_airflows_variables_and_masker(monkeypatch):
    import civic_pipelines.orchestration  # noqa: F401
    from civic_pipelines.orchestration.variables import airflow_mask_secret, airflow_variable

    assert variables._lookup is airflow_variable and secrets._masker is airflow_mask_secret
    masked = []
    monkeypatch.setattr(secrets, "_masker", masked.append)
    secrets.mask("token-123")
    secrets.mask("")
    assert masked == ["token-123"]


def test_a_lean_get_asks_and_fails_as_a_session_get_does():
    """``CivicSession.lean_get`` (MDS's ~1,500 requests a block) skips the session's merging but
    not its behaviour: the session's headers with the call's on top, the query string, urllib3's
    retries on a 503, a redirect followed, and an unreachable host named as one."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, str]] = []
    failures = {"left": 1}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Accept", ""), self.headers.get("User-Agent", "")))
            if self.path.startswith("/old"):
                self.send_response(307)
                self.send_header("Location", "/new?hour=2024-03-01T05")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.startswith("/busy") and failures["left"]:
                failures["left"] -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with http.make_session(conn_id="civic_test") as session:
            answer = session.lean_get(f"{base}/page", params={"hour": "2024-03-01T05"}, headers={"Accept": "x/y"})
            assert (answer.status_code, http.read_whole_body(answer)) == (200, b'{"ok": true}')
            assert seen[-1] == ("/page?hour=2024-03-01T05", "x/y", session.headers["User-Agent"])
            moved = session.lean_get(f"{base}/old", timeout=(5, 5))
            assert (moved.status_code, http.read_whole_body(moved)) == (200, b'{"ok": true}')
            assert [path for path, _, _ in seen[-2:]] == ["/old", "/new?hour=2024-03-01T05"]
            busy = session.lean_get(f"{base}/busy", timeout=(5, 5))
            assert busy.status_code == 200 and [path for path, _, _ in seen[-2:]] == ["/busy", "/busy"]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        with (
            http.make_session(conn_id="civic_test") as session,
            pytest.raises(http.SourceUnreachable, match="civic_test"),
        ):
            session.lean_get(f"http://127.0.0.1:{port}/page", timeout=(5, 5))
    finally:
        server.shutdown()
        server.server_close()
