"""The dashboard served as it is run: while another process holds DuckDB's write lock (the last
snapshot, or a note that the warehouse is busy, and never a stopped writer), as the standalone
``civic dashboard`` command, and to whom (every route refuses anonymous and invalid tokens; a
viewer sees no server path or raw error). The same build as ``test_dashboard.py``
(tests/dashboard_warehouse.py), in the same pytest-xdist lane so the build is made once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dashboard_warehouse as dw
import duckdb
import pytest
from dashboard_warehouse import PAGES, api, boundaries, built, metadata_db, warehouse  # noqa: F401 - fixtures
from fastapi.testclient import TestClient

# The build lives in the lane's run folder: share test_dashboard's lane.
pytestmark = pytest.mark.xdist_group("test_dashboard")


# ---------------------------------------------------------------- the warehouse busy


@pytest.fixture
def private_warehouse(warehouse, tmp_path) -> Path:
    """A copy of the built warehouse this test may lock and write."""
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, target)
    return target


class LockHolder:
    """Another process holding DuckDB's write lock on a file (as a running dbt task does)."""

    def __init__(self, path: Path):
        code = (
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "sys.stdin.read(); con.close()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked", self.process.stderr.read()

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


def test_busy_warehouse_without_a_snapshot_says_so(built, private_warehouse, boundaries):
    from civic_pipelines.dashboard.app import standalone_app

    holder = LockHolder(private_warehouse)
    try:
        with dw.signed_in(
            TestClient(standalone_app(dw.dashboard_config(built, boundaries[0], private_warehouse)))
        ) as client:
            for page in PAGES:
                response = client.get(f"/civic/{page}")
                assert response.status_code == 200
                assert 'data-banner="busy"' in response.text and 'data-empty="page"' in response.text
                busy = client.get(f"/civic/api/{page}")
                assert busy.status_code == 503 and busy.json()["error"] == "warehouse busy"
                assert busy.headers["retry-after"] == "5"
            overview = client.get("/civic/api/overview").json()  # the cards read the lake: still there
            assert overview["cards"] and overview["warehouse"]["busy"] and overview["warehouse"]["error"]
            assert client.get("/civic/").status_code == 200
            holder.release()
            holder = None
            assert api(client, "crime")["figures"]["offenses"] > 0  # the run ended: the page fills in
    finally:
        if holder:
            holder.release()


def test_busy_warehouse_serves_the_last_snapshot(built, private_warehouse, boundaries):
    from civic_pipelines.dashboard.app import standalone_app

    with dw.signed_in(
        TestClient(standalone_app(dw.dashboard_config(built, boundaries[0], private_warehouse)))
    ) as client:
        before = api(client, "crime")
        assert before["warehouse"]["stale"] is False
        holder = LockHolder(private_warehouse)
        try:
            during = api(client, "crime")
            assert during["warehouse"]["stale"] is True
            assert during["figures"] == before["figures"]
            html = client.get("/civic/crime").text
            assert 'data-banner="busy"' in html and "data-chart=" in html
        finally:
            holder.release()
        assert api(client, "crime")["warehouse"]["stale"] is False


def test_the_dashboard_never_stops_a_writer(built, private_warehouse, boundaries):
    """A writer process opens the warehouse read-write 25 times, writing each time, while the
    dashboard is read in a loop: every open succeeds, and the dashboard follows the changes."""
    from civic_pipelines.dashboard.app import standalone_app

    writer = r"""
import sys, time, duckdb
path = sys.argv[1]
with duckdb.connect(path) as con:
    con.execute("create table dashboard_probe (i integer)")
for i in range(25):
    with duckdb.connect(path) as con:  # raises "Could not set lock on file" if anyone holds the lock
        con.execute("insert into dashboard_probe values (?)", [i])
    time.sleep(0.04)
print("ok", flush=True)
"""
    stop = threading.Event()
    errors, reads = [], []

    with dw.signed_in(
        TestClient(standalone_app(dw.dashboard_config(built, boundaries[0], private_warehouse)))
    ) as client:

        def read_loop():
            while not stop.is_set():
                response = client.get("/civic/api/crime")
                if response.status_code not in (200, 503):
                    errors.append(response.status_code)
                reads.append(response.status_code)

        reader = threading.Thread(target=read_loop)
        reader.start()
        try:
            result = subprocess.run(
                [sys.executable, "-c", writer, str(private_warehouse)], capture_output=True, text=True, timeout=120
            )
        finally:
            stop.set()
            reader.join()
        assert result.returncode == 0, result.stderr[-2000:]
        assert not errors and reads.count(200) > 5
        status = client.get("/civic/api/status").json()
        assert status["snapshots_taken"] >= 2  # it followed the writes
        assert "dashboard_probe" in status["tables"]


# ---------------------------------------------------------------- the standalone command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_civic_dashboard_command_serves_the_same_app(built, boundaries):
    import requests

    port = free_port()
    env = {
        **os.environ,
        "CIVIC_WAREHOUSE": str(built / "warehouse.duckdb"),
        "CIVIC_LAKE": str(built / "lake"),
        "CIVIC_DBT_MANIFEST": str(built / "dbt_target" / "manifest.json"),
        "CIVIC_DBT_RUN_RESULTS": str(built / "dbt_target"),
        "CIVIC_BOUNDARIES": str(boundaries[0]),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "civic"), "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # its first lines may be Airflow's (the auth manager it sets up before serving)
        address, lines = f"http://127.0.0.1:{port}/civic/", []
        while not lines or (lines[-1] and address not in lines[-1] and len(lines) < 200):
            lines.append(process.stdout.readline())
        assert address in lines[-1], lines
        deadline = time.monotonic() + 60
        while True:
            try:
                anonymous = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # alone too, the app answers only a user Airflow's auth manager signed in (the same
        # AIRFLOW_HOME, so the same [api_auth] jwt_secret as an API server there)
        assert anonymous.status_code == 401 and "data-source-card" not in anonymous.text
        cookies = {"_token": dw.token()}
        response = requests.get(f"http://127.0.0.1:{port}/", cookies=cookies, timeout=10)
        assert response.status_code == 200 and response.url.endswith("/civic/")
        assert "data-source-card" in response.text
        crime = requests.get(f"http://127.0.0.1:{port}/civic/api/crime", cookies=cookies, timeout=10).json()
        assert (
            crime["figures"]["offenses"]
            == dw.query(built / "warehouse.duckdb", "select count(*) from fct_crime_offenses")[0][0]
        )
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_health_expected_month_follows_the_cadence():
    from civic_pipelines.dashboard.health import expected_month

    assert expected_month("monthly", date(2026, 11, 23)) == "2026-10"
    assert expected_month("monthly", date(2026, 1, 1)) == "2025-12"


# ---------------------------------------------------------------- who may see it


def every_route(app, plotly_version: str) -> list[str]:
    """A URL for every route the app declares (path parameters filled with real values)."""
    from fastapi.routing import APIRoute

    urls = []
    for route in app.routes:
        assert isinstance(route, APIRoute), f"{route!r}: a mount or raw route would skip the auth dependency"
        urls.append(
            route.path.replace("{version}", plotly_version).replace("{name}", "fct_crime_offenses")
            if "{version}" in route.path or route.path.startswith("/models/")
            else route.path.replace("{name}", "icon.svg")
        )
    return urls


def test_every_route_refuses_anonymous_and_invalid_tokens_and_serves_a_viewer(built, boundaries, reliability):
    """The app alone, with the auth manager Airflow's configuration names (SimpleAuthManager, its
    login on: not all-admins): no token 401, a forged or expired token 403, a signed-in user
    without a role 403, all with no data; a viewer (cookie as the UI holds it, or Bearer) 200."""
    import jwt

    from civic_pipelines.dashboard.app import create_app

    reliability.row(
        fault="anonymous or invalid-token dashboard request",
        source="dashboard",
        expected="every route (pages, JSON, static) 401 without a token, 403 with a forged one or "
        "without access, no data; a viewer 200",
    )

    app = create_app(dw.dashboard_config(built, boundaries[0]))
    with TestClient(app) as client:
        version = app.state.dashboard().plotly_version
        urls = every_route(app, version)
        assert {
            "/",
            "/api/overview",
            "/crime",
            "/api/crime",
            "/api/status",
            "/models/fct_crime_offenses",
            "/static/icon.svg",
            f"/static/plotly-{version}.min.js",
        } <= set(urls)
        secret_rows = str(dw.query(built / "warehouse.duckdb", "select count(*) from fct_crime_offenses")[0][0])
        forged = jwt.encode(
            {"sub": "mallory", "role": "admin", "aud": "apache-airflow", "exp": 4102444800},
            "not-the-secret",
            algorithm="HS512",
        )
        refusals = {
            "anonymous": ({}, {}, 401),
            "forged bearer": ({"Authorization": f"Bearer {forged}"}, {}, 403),
            "forged cookie": ({}, {"_token": forged}, 403),
            "garbage cookie": ({}, {"_token": "not-a-jwt"}, 403),
            "user without a role": ({}, {"_token": dw.token("nobody", role=None)}, 403),
        }
        for who, (headers, cookies, expected) in refusals.items():
            client.cookies.clear()
            client.cookies.update(cookies)
            for url in urls:
                response = client.get(url, headers=headers)
                assert response.status_code == expected, (who, url, response.status_code, response.text[:200])
                assert "data-source-card" not in response.text and secret_rows not in response.text, (who, url)
                assert len(response.content) < 100, (who, url)  # Airflow's one-line refusal, nothing else
        # a browser without a token: still 401 and no data, with a link to Airflow's login page
        client.cookies.clear()
        page = client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "data-login" in page.text and "/auth/login" in page.text
        assert "data-source-card" not in page.text and len(page.content) < 400
        dw.signed_in(client)
        for url in urls:
            assert client.get(url).status_code == 200, url
        client.cookies.clear()
        bearer = {"Authorization": f"Bearer {dw.token('bob', 'viewer')}"}
        crime = client.get("/api/crime", headers=bearer)
        assert crime.status_code == 200 and crime.json()["figures"]["offenses"] == int(secret_rows)
    reliability.observed(
        f"{len(urls)} routes x {len(refusals)} refused callers: every answer 401/403 with no data; "
        f"a viewer 200 on all {len(urls)}"
    )


def test_viewers_see_no_server_paths_or_raw_errors(built, boundaries, tmp_path, monkeypatch, caplog):
    """The footer, the overview, the JSON twins and the failure states name no lake, warehouse or
    dbt path and carry no exception text; the log does."""
    from civic_pipelines import sources
    from civic_pipelines.dashboard.app import standalone_app

    config = dw.dashboard_config(built, boundaries[0])
    hidden = [str(built), str(boundaries[0]), config.warehouse, config.lake]
    real_spec = sources.spec

    def broken_spec(name):  # one source whose module fails, with a path in its error
        if name == "toronto_311":
            raise FileNotFoundError(f"[Errno 2] No such file: '{built}/secret-settings.yml'")
        return real_spec(name)

    monkeypatch.setattr(sources, "spec", broken_spec)
    with dw.signed_in(TestClient(standalone_app(config))) as client:
        shown = [client.get(f"/civic/{page}").text for page in ["", *PAGES, "models/nope"]]
        shown += [client.get(f"/civic/api/{page}").text for page in ["overview", "status", *PAGES]]
        cards = dw.overview_cards(client)
    assert "failed to load" in cards["toronto_311"]["error"] and "secret-settings" not in cards["toronto_311"]["error"]
    assert "data-card-error" in shown[0]
    for text in shown:
        for path in hidden:
            assert path not in text
        assert "secret-settings" not in text and "Errno" not in text
    assert "secret-settings.yml" in caplog.text  # the operator still finds it in the log

    # a missing warehouse and a failing query: a plain sentence, the details in the log
    missing = tmp_path / "missing.duckdb"
    with duckdb.connect(str(tmp_path / "odd.duckdb")) as con:
        con.execute("create table fct_crime_offenses (x integer)")
        con.execute("create table mart_crime_monthly (x integer)")
    for warehouse_path in (missing, tmp_path / "odd.duckdb"):
        with dw.client_without_build(tmp_path, warehouse_path) as client:
            texts = [
                client.get("/civic/crime").text,
                client.get("/civic/api/crime").text,
                client.get("/civic/").text,
                client.get("/civic/api/status").text,
            ]
        for text in texts:
            assert str(tmp_path) not in text and "Binder Error" not in text and "Catalog Error" not in text
