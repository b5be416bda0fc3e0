"""The dashboard in a real browser, and inside a real Airflow API server.

Headless Chromium from Debian's packages (installed by `make setup`, never by a test),
driven by Playwright with that browser (``executable_path``; Playwright's own browser download is
never used). Each page must draw every chart it announces with no console error and no request
leaving the machine; the month and source filters must change what is drawn; a full-page
screenshot of each page goes to test-output/screenshots/, with the measured load times in
test-output/screenshots/load_times.json; bench/dashboard_load.py prints those against the speed
target (a test checks what is drawn, not how fast).

The plugin test (first, so the browser timings after it run on an idle machine) starts
`airflow api-server` on the session's metadata database with this project's plugins folder and
SimpleAuthManager's login on (users alice:admin, bob:viewer and carol without a role; not
all-admins): anonymous and invalid-token requests to /civic/ are refused with no data, carol is
refused, bob's token (POST /auth/token) is served, the plugin and its menu entry are listed by the
REST API, and in the browser an anonymous visit is refused while bob, signed in through Airflow's
login page, opens the dashboard from the "Civic data" link inside the UI. The other browser tests
read the app alone, signed in with the UI's cookie.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_warehouse as dw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"overview": "", "crime": "crime", "311": "311", "street-works": "street-works", "mobility": "mobility"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium, which `make setup` installs (a test never installs a system package)."""
    from civic_pipelines.devtools.apt import require

    require("chromium")
    return shutil.which("chromium")


@pytest.fixture(scope="module", autouse=True)
def _metadata_db(airflow_db):
    """Airflow's auth manager checks tokens against the metadata database's revoked tokens."""
    return airflow_db


@pytest.fixture(scope="module")
def built(run_dir) -> Path:
    return dw.ensure_built(run_dir / "dashboard")


@pytest.fixture(scope="module")
def boundaries(tmp_path_factory, built) -> Path:
    folder = tmp_path_factory.mktemp("boundaries")
    dw.write_boundaries(built / "warehouse.duckdb", folder, "toronto")
    return folder


class AirflowApiServer:
    """`airflow api-server` with the project's plugins folder, in its own process group."""

    def __init__(self, logs: Path, env: dict):
        self.logs, self.env = logs, env
        self.port = free_port()
        self.env["AIRFLOW__API__PORT"] = str(self.port)
        airflow = str(Path(sys.executable).parent / "airflow")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [airflow, "api-server", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def log(self) -> Path:
        return self.logs / "api-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 240) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


USERS = {"alice": "admin", "bob": "viewer", "carol": ""}  # carol signs in but has no role


@pytest.fixture
def airflow_server(airflow_db, built, boundaries, tmp_path):
    """The API server on the session's Airflow metadata database (conftest's airflow_db), with
    this project's plugins folder and SimpleAuthManager's login on (passwords drawn for this run);
    stopped as soon as its test ends (the browser timings that follow are measured on an idle
    machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__API")}
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    (tmp_path / "passwords.json").write_text(json.dumps(passwords))
    env.update(
        {
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "CIVIC_WAREHOUSE": str(built / "warehouse.duckdb"),
            "CIVIC_LAKE": str(built / "lake"),
            "CIVIC_DBT_MANIFEST": str(built / "dbt_target" / "manifest.json"),
            "CIVIC_DBT_RUN_RESULTS": str(built / "dbt_target"),
            "CIVIC_BOUNDARIES": str(boundaries),
            "PYTHONPATH": str(ROOT / "include"),
        }
    )
    server = AirflowApiServer(tmp_path, env)
    server.passwords = passwords
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dashboard_url(built, boundaries):
    """The standalone app (the same one the plugin mounts) on a free port, in this process."""
    import uvicorn

    from civic_pipelines.dashboard.app import standalone_app

    port = free_port()
    from civic_pipelines.dashboard.auth import auth_manager

    auth_manager()  # set up before the first page, as `civic dashboard` does
    server = uvicorn.Server(
        uvicorn.Config(
            standalone_app(dw.dashboard_config(built, boundaries)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/civic/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


def new_context(browser, url: str):
    """A browser context signed in as a viewer: the `_token` cookie the Airflow UI sets at login."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": dw.token(), "url": url}])
    return context


@pytest.fixture(scope="module")
def screenshots(run_dir) -> Path:
    folder = run_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Watched:
    """A page whose console errors, page errors, failed requests and off-machine requests are kept."""

    def __init__(self, context, allowed_host: str = "127.0.0.1"):
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        self.page.on(
            "request",
            lambda r: (
                self.problems.append(f"off-machine request: {r.url}")
                if urlparse(r.url).hostname not in (allowed_host, None) and not r.url.startswith("data:")
                else None
            ),
        )

    def open(self, url: str) -> tuple[float, float]:
        """Navigate and wait until every chart is drawn; returns (first screen ready, all charts
        drawn), in seconds from the navigation's start (the page's own clock)."""
        self.page.goto(url)
        return self.wait_ready()

    def wait_ready(self) -> tuple[float, float]:
        self.page.wait_for_selector("body[data-all-drawn='1']", timeout=20_000)
        timings = self.page.evaluate("() => window.civicTimings")
        return timings["readyMs"] / 1000, timings["allMs"] / 1000


def charts_state(page) -> dict:
    return page.evaluate("""() => ({
        announced: document.querySelectorAll('[data-chart]').length,
        drawn: document.querySelectorAll('[data-chart].js-plotly-plot').length,
        withData: Array.from(document.querySelectorAll('[data-chart]')).filter(d => d.data && d.data.length).length,
        rendered: Number(document.body.dataset.chartsRendered),
        empty: document.querySelectorAll('[data-empty]').length,
    })""")


def login(base: str, user: str, password: str) -> str:
    import requests

    response = requests.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def test_the_plugin_loads_in_a_real_airflow_api_server(airflow_server, browser, built, screenshots, reliability):
    import requests

    reliability.row(
        fault="anonymous dashboard request (Airflow login on)",
        source="dashboard",
        expected="the plugin's /civic/ pages, JSON and static files refuse anonymous (401), "
        "invalid-token (403) and role-less (403) callers with no data; a viewer's "
        "token and the UI's login cookie are served",
    )
    airflow_server.wait()
    base = airflow_server.url
    offenses = dw.query(built / "warehouse.duckdb", "select count(*) from fct_crime_offenses")[0][0]
    routes = [
        "/civic/",
        "/civic/api/overview",
        "/civic/crime",
        "/civic/api/crime",
        "/civic/api/status",
        "/civic/models/fct_crime_offenses",
        "/civic/static/icon.svg",
        "/civic/static/dashboard.js",
    ]
    # Airflow's login is on: its own API refuses an anonymous token request
    assert requests.get(f"{base}/auth/token", timeout=30).status_code == 403
    carol = login(base, "carol", airflow_server.passwords["carol"])
    refused = {
        "anonymous": ({}, 401),
        "forged": ({"Authorization": "Bearer not-a-token"}, 403),
        "carol, no role": ({"Authorization": f"Bearer {carol}"}, 403),
    }
    for who, (headers, status) in refused.items():
        for route in routes:
            response = requests.get(base + route, headers=headers, timeout=30)
            assert response.status_code == status, (who, route, response.status_code, response.text[:300])
            assert "data-source-card" not in response.text and str(offenses) not in response.text, (who, route)
    bob = login(base, "bob", airflow_server.passwords["bob"])
    for route in routes:
        assert requests.get(base + route, headers={"Authorization": f"Bearer {bob}"}, timeout=30).status_code == 200
    page = requests.get(f"{base}/civic/", cookies={"_token": bob}, timeout=30)  # the cookie the UI holds
    assert page.status_code == 200 and "data-source-card" in page.text
    crime = requests.get(f"{base}/civic/api/crime", cookies={"_token": bob}, timeout=30).json()
    assert crime["figures"]["offenses"] == offenses
    token = login(base, "alice", airflow_server.passwords["alice"])
    plugins = requests.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    ours = [p for p in plugins["plugins"] if p["name"] == "civic_dashboard"]
    assert ours, plugins
    assert ours[0]["fastapi_apps"][0]["url_prefix"] == "/civic"
    view = ours[0]["external_views"][0]
    assert view["name"] == "Civic data" and view["href"] == "civic/" and view["destination"] == "nav"

    # in the browser: an anonymous visit to the dashboard is refused, with no data
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    ui = context.new_page()
    refused_page = ui.goto(base + "/civic/")
    assert refused_page.status == 401 and ui.locator("[data-source-card]").count() == 0
    assert "/auth/login" in ui.get_attribute("a[data-login]", "href")  # a way to sign in, and nothing else
    assert str(offenses) not in ui.content()
    # bob signs in through Airflow's login page; the menu entry then opens the dashboard inside the UI
    ui.goto(base + "/")
    ui.wait_for_url("**/auth/login**", timeout=60_000)
    ui.locator("input[name='username']").fill("bob")
    ui.locator("input[name='password']").fill(airflow_server.passwords["bob"])
    ui.locator("button[type='submit']").click()
    link = ui.get_by_role("link", name="Civic data")
    link.wait_for(timeout=30_000)
    link.click()
    ui.wait_for_url("**/plugin/civic-data**", timeout=30_000)
    frame = ui.frame_locator("iframe[title='Civic data']")
    frame.locator("h1").wait_for(timeout=30_000)
    assert frame.locator("h1").inner_text().startswith("Overview")
    frame.locator("nav a[data-nav='crime']").click()
    frame.locator("body[data-all-drawn='1'] [data-chart='crime-trend']").wait_for(timeout=30_000)
    ui.screenshot(path=str(screenshots / "airflow-menu.png"))
    assert any(c["name"] == "_token" for c in context.cookies())  # what the iframe sent
    context.close()
    reliability.observed(
        f"{len(routes)} routes: anonymous 401, forged 403, role-less 403, none with data; "
        f"bob (viewer) 200 by token and cookie, and by the UI's menu after the login page"
    )


def test_every_page_draws_its_charts_with_no_console_error(browser, dashboard_url, screenshots, built):
    context = new_context(browser, dashboard_url)
    watched = Watched(context)
    times = {}
    for name, path in PAGES.items():
        cold, cold_all = watched.open(dashboard_url + path)
        warm, warm_all = watched.open(dashboard_url + path)  # plotly.js now cached, as for every page after the first
        state = charts_state(watched.page)
        if name != "overview":
            assert state["announced"] >= 4, (name, state)
        assert state["drawn"] == state["announced"] == state["withData"] == state["rendered"], (name, state)
        watched.page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        server_ms = float(watched.page.get_attribute("[data-render-ms]", "data-render-ms"))
        times[name] = {
            "first_visit_ready_s": round(cold, 3),
            "first_visit_all_charts_s": round(cold_all, 3),
            "ready_s": round(warm, 3),
            "all_charts_s": round(warm_all, 3),
            "server_ms": server_ms,
            "charts": state["drawn"],
        }
    # a model page (every chart links to one)
    watched.page.click("[data-model-link]")
    watched.page.wait_for_selector("[data-description]")
    watched.page.screenshot(path=str(screenshots / "model.png"), full_page=True)
    assert not watched.problems, watched.problems
    (screenshots / "load_times.json").write_text(json.dumps(times, indent=2))
    print("\npage load times (s):", json.dumps(times))
    context.close()


def stat(page, label: str) -> int | None:
    locator = page.locator(f"[data-stat='{label}'] .value")
    return int(locator.inner_text().replace(",", "")) if locator.count() else None


def test_filters_change_what_is_shown(browser, dashboard_url, built, screenshots):
    warehouse = built / "warehouse.duckdb"
    context = new_context(browser, dashboard_url)
    watched = Watched(context)
    page = watched.page
    watched.open(dashboard_url + "311")
    total = dw.query(warehouse, "select count(*) from fct_service_requests")[0][0]
    assert stat(page, "requests") == total
    assert page.evaluate("() => document.querySelector('[data-chart=\"311-volume\"]').data[0].x") == [
        "2024-01",
        "2024-02",
        "2024-03",
    ]

    # the month range: March only
    page.fill("input[name=start]", "2024-03")
    page.fill("input[name=end]", "2024-03")
    with page.expect_navigation():
        page.click("form[data-filters] button[type=submit]")
    watched.wait_ready()
    march = dw.query(warehouse, "select count(*) from fct_service_requests where opened_month = DATE '2024-03-01'")[0][
        0
    ]
    assert stat(page, "requests") == march < total
    assert page.evaluate("() => document.querySelector('[data-chart=\"311-volume\"]').data[0].x") == ["2024-03"]

    # the source filter: unticking a city applies at once, and its map goes
    assert page.locator("[data-chart='311-map-nyc']").count() == 1
    with page.expect_navigation():
        page.uncheck("input[name=source][value=nyc_311]")
    watched.wait_ready()
    assert page.locator("[data-chart='311-map-nyc']").count() == 0
    assert stat(page, "nyc") is None
    assert (
        stat(page, "requests")
        == dw.query(
            warehouse,
            "select count(*) from fct_service_requests where opened_month = DATE '2024-03-01' and city <> 'nyc'",
        )[0][0]
    )
    assert "start=2024-03" in page.url  # the month range is kept
    page.screenshot(path=str(screenshots / "311-filtered.png"), full_page=True)

    # crime: one month reads the areas from the fact instead of the all-months mart
    watched.open(dashboard_url + "crime?start=2024-03&end=2024-03")
    assert page.get_attribute("#chart-crime-areas [data-model-link]", "data-model-link") == "fct_crime_offenses"
    watched.open(dashboard_url + "crime")
    assert page.get_attribute("#chart-crime-areas [data-model-link]", "data-model-link") == "mart_crime_by_area"
    # the navigation keeps the month range
    watched.open(dashboard_url + "crime?start=2024-03&end=2024-03")
    with page.expect_navigation():
        page.click("nav a[data-nav='street-works']")
    watched.wait_ready()
    assert page.input_value("input[name=start]") == "2024-03"
    assert not watched.problems, watched.problems
    context.close()


def test_the_choropleth_draws_the_drop_in_boundaries(browser, dashboard_url, built, screenshots):
    context = new_context(browser, dashboard_url)
    watched = Watched(context)
    watched.open(dashboard_url + "311?source=toronto_311")
    areas = dw.query(
        built / "warehouse.duckdb",
        "select count(distinct area) from fct_service_requests where city = 'toronto' and area is not null",
    )[0][0]
    # one filled trace per feature (the areas with requests and the one without), plus the colour bar
    traces = watched.page.evaluate(
        "() => document.querySelector('[data-chart=\"311-choropleth-toronto\"]').data.length"
    )
    assert traces == areas + 1 + 1
    watched.page.locator("#chart-311-choropleth-toronto").screenshot(path=str(screenshots / "311-choropleth.png"))
    assert not watched.problems, watched.problems
    context.close()
