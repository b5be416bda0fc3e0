"""A small warehouse for the dashboard's tests: two months of every source, landed through the
replay server and the real extractors (one month of two MDS providers: an MDS block walks every
hour of its month), then one `dbt build` of every source's selection.

The build runs in a child process (``python tests/dashboard_warehouse.py OUT``): dbt-duckdb keeps
its DuckDB handle open for the life of the process that ran it, and the dashboard under test must
see the file as any other process would. The result is kept under test-output/dashboard/<key>/,
where the key hashes the dbt project, the package's code and this file, so the two dashboard test
modules (and re-runs with nothing changed) share one build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from replay_env import replay_connection

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt"
MONTHS = ["2024-02", "2024-03"]
TODAY = "2026-11-23"  # SRWR's "today": both months are published
STREET_MANAGER_EVENTS = {"permit": 300, "activity": 40, "section_58": 15}
SRWR_ACTIVITIES = 30
SELECT = [
    "tag:seattle_crime+",
    "tag:minneapolis_311+",
    "tag:toronto_311+",
    "tag:nyc_311+",
    "tag:chicago_311+",
    "tag:street_manager+",
    "tag:srwr+",
]
# The mobility models are optional: built (with two months of MDS landed) when the project has them.
MOBILITY_TAG = "tag:mds+"
MDS_PROVIDERS = ["dott", "voi"]  # the replay's default providers (MDS 0.4 and 2.0)
MDS_MONTH = MONTHS[-1]
MDS_NOW = "2024-03-08T00:00:00Z"  # a week of the month has ended: the block lands incomplete, as a current month does
MDS_VOLUME = {"trips_per_hour": 1, "events_per_hour": 1, "fleet_size": 30}


def _has_mobility_models() -> bool:
    return any(DBT_DIR.glob("models/**/mart_mobility_*.sql"))


def build_key() -> str:
    digest = hashlib.sha256()
    files = [Path(__file__), *(Path(__file__).with_name(helper) for helper in ("replay_env.py", "dbt_helpers.py"))]
    files += sorted(
        p
        for p in DBT_DIR.rglob("*")
        if p.is_file()
        and p.suffix in (".sql", ".yml", ".csv", ".md")
        and "target" not in p.parts
        and "logs" not in p.parts
    )
    files += sorted((ROOT / "include" / "civic_pipelines").rglob("*.py"))
    files += sorted((ROOT / "include" / "civic_pipelines" / "datasets").glob("*.toml"))
    for path in files:
        if "dashboard" in path.relative_to(ROOT).parts:
            continue  # the dashboard does not change what is built
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_built(base: Path) -> Path:
    """The folder of a finished build for the current code (building it if needed): holds `lake/`,
    `warehouse.duckdb`, `dbt_target/run_results.json` and `built.json`."""
    out = base / build_key()
    if (out / "built.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    for stale in base.glob("*"):  # builds of older code
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, __file__, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"dashboard warehouse build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return out


def _timed(run_block, block) -> dict:
    started = time.monotonic()
    manifest = run_block(block[0], block[1], part=block[2])
    return {**manifest, "build_seconds": round(time.monotonic() - started, 1)}


def _build(out: Path) -> None:
    """Land the months and run dbt (this is the child process)."""
    sys.path.insert(0, str(ROOT / "include"))
    lake, warehouse = out / "lake", out / "warehouse.duckdb"
    os.environ.update(
        {
            "CIVIC_LAKE": str(lake),
            "CIVIC_WAREHOUSE": str(warehouse),
            "CIVIC_NO_AIRFLOW_LOOKUP": "1",
            "CIVIC_HTTP_BACKOFF": "0.05",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": "*",
        }
    )
    from civic_pipelines.extract import run_block
    from civic_pipelines.replay.server import make_server

    started = time.monotonic()
    server = make_server(host="127.0.0.1", port=0, months=MONTHS)
    server.start()
    try:
        server.toronto.set_rows_per_year(20_000)
        server.street_manager.configure({"latest_month": "2024-06", "events_per_month": STREET_MANAGER_EVENTS})
        server.srwr.set_today(TODAY)
        server.srwr.set_activities_per_month(SRWR_ACTIVITIES)
        for source in ("seattle_crime", "minneapolis_311", "toronto_311", "nyc_311", "chicago_311", "street_manager"):
            os.environ[f"AIRFLOW_CONN_CIVIC_{source.upper()}"] = replay_connection(server)
        os.environ["AIRFLOW_CONN_CIVIC_SRWR"] = replay_connection(server, extra={"today": TODAY})
        blocks = [
            (source, month, None)
            for month in MONTHS
            for source in ("seattle_crime", "minneapolis_311", "toronto_311", "nyc_311", "chicago_311", "srwr")
        ]
        blocks += [("street_manager", month, part) for month in MONTHS for part in STREET_MANAGER_EVENTS]
        mobility = _has_mobility_models()
        if mobility:
            server.mds.configure({"now": MDS_NOW, **MDS_VOLUME})
            # The extractor asks only for hours that have ended on its clock: set it to the replay's,
            # so the block walks one week (about 340 requests) instead of every hour of the month.
            from civic_pipelines.sources.mds import fetch as mds_source

            if callable(getattr(mds_source, "_now", None)):
                mds_source._now = lambda: datetime.fromisoformat(MDS_NOW.replace("Z", "+00:00"))
            os.environ["AIRFLOW_VAR_CIVIC_MDS_PROVIDERS"] = json.dumps(list(MDS_PROVIDERS))
            for provider in MDS_PROVIDERS:
                os.environ[f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"] = json.dumps(server.mds.connection(provider))
            # one month: an MDS block walks every hour of its month (about 1,500 requests)
            blocks = [("mds", MDS_MONTH, provider) for provider in MDS_PROVIDERS] + blocks
        # blocks are independent (each its own lake folder): land them side by side
        with ThreadPoolExecutor(max_workers=6) as pool:
            manifests = list(pool.map(lambda b: _timed(run_block, b), blocks))
        landed = time.monotonic() - started
    finally:
        server.stop()

    from dbt.cli.main import dbtRunner
    from dbt_helpers import dbt_build_args

    def dbt_build(select: list[str]) -> tuple[bool, dict]:  # noqa: E306
        result = dbtRunner().invoke(dbt_build_args(out, select, "--threads", "4"))
        if result.exception is not None:
            raise result.exception
        statuses = {r.node.unique_id: str(r.status) for r in result.result.results}
        return result.success, statuses

    ok, statuses = dbt_build(SELECT + ([MOBILITY_TAG] if mobility else []))
    bad = {k: v for k, v in statuses.items() if v not in ("success", "pass", "warn")}
    # The mobility models are new: a failure there leaves the mobility page empty, not the build broken.
    mobility_error = {
        k: v
        for k, v in bad.items()
        if k.split(".")[2].startswith(("stg_mds", "fct_mobility", "mart_mobility")) or "mds" in k or "mobility" in k
    }
    if set(bad) - set(mobility_error):
        raise RuntimeError(f"dbt build failed: {bad}")
    summary = {
        "months": MONTHS,
        "blocks": [
            {k: m.get(k) for k in ("source", "month", "part", "rows", "quarantined", "skipped", "build_seconds")}
            for m in manifests
        ],
        "dbt_statuses": statuses,
        "mobility": {"built": mobility and not mobility_error, "error": mobility_error or None},
        "seconds": {"land": round(landed, 1), "total": round(time.monotonic() - started, 1)},
    }
    (out / "built.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    _build(Path(sys.argv[1]).resolve())


# ---------------------------------------------------------------- helpers for the dashboard tests


def dashboard_config(out: Path, boundaries: Path, warehouse: Path | None = None):
    """The dashboard pointed at a build (its own boundaries folder, so each test module decides)."""
    from civic_pipelines.dashboard.config import DashboardConfig

    return DashboardConfig(
        warehouse=str(warehouse or out / "warehouse.duckdb"),
        lake=str(out / "lake"),
        dbt_manifest=out / "dbt_target" / "manifest.json",
        dbt_run_results=out / "dbt_target",
        boundaries=boundaries,
    )


def config_without_build(root: Path, warehouse: Path | None = None, **fields):
    """The dashboard with no dbt build behind it: ``warehouse`` (by default a missing file) and
    every other path in ``root``, there only if the test wrote it; ``fields``: further
    DashboardConfig fields (``dbt_freshness``, ``dbt_results``)."""
    from civic_pipelines.dashboard.config import DashboardConfig

    return DashboardConfig(
        warehouse=str(warehouse or root / "none.duckdb"),
        lake=str(root / "lake"),
        dbt_manifest=root / "none.json",
        dbt_run_results=root / "none",
        boundaries=root / "boundaries",
        **fields,
    )


def client_without_build(root: Path, warehouse: Path | None = None, **fields):
    """A viewer's TestClient of ``config_without_build`` (use it in a ``with``, as any TestClient)."""
    from fastapi.testclient import TestClient

    from civic_pipelines.dashboard.app import standalone_app

    return signed_in(TestClient(standalone_app(config_without_build(root, warehouse, **fields))))


def overview_cards(client) -> dict[str, dict]:
    """The overview's health cards by source."""
    return {card["source"]: card for card in client.get("/civic/api/overview").json()["cards"]}


def query(warehouse: Path, sql: str, params: dict | None = None) -> list[tuple]:
    """A read-only query of the built warehouse (no writer exists once the build is done)."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or {}).fetchall()


def write_boundaries(warehouse: Path, folder: Path, city: str = "toronto") -> dict[str, int]:
    """A small generated boundary file for the city's areas: one square per area with requests
    (a grid around the city), plus one area with no requests; returns {area: requests}."""
    counts = dict(
        query(
            warehouse,
            "select area, count(*) from fct_service_requests where city = $city "
            "and area is not null group by area order by area",
            {"city": city},
        )
    )
    features = []
    for i, area in enumerate([*counts, "Nowhere Ward (99)"]):
        x, y = -79.6 + (i % 6) * 0.05, 43.6 + (i // 6) * 0.05
        ring = [[x, y], [x + 0.045, y], [x + 0.045, y + 0.045], [x, y + 0.045], [x, y]]
        features.append(
            {"type": "Feature", "properties": {"area": area}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{city}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return counts


# ---------------------------------------------------------------- signing in (the dashboard requires it)

VIEWER = "dashboard-viewer"


def token(username: str = VIEWER, role: str | None = "viewer") -> str:
    """A JWT signed by this process's configured Airflow auth manager (SimpleAuthManager, as
    Airflow's default configuration has it; the key is the test AIRFLOW_HOME's
    ``[api_auth] jwt_secret``), exactly what POST /auth/token returns to a user of that role."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from civic_pipelines.dashboard.auth import auth_manager

    return auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def signed_in(client, role: str | None = "viewer"):
    """A TestClient (or requests.Session) carrying the Airflow UI's cookie for a user of ``role``."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    client.cookies.set(COOKIE_NAME_JWT_TOKEN, token(role=role))
    return client


# ---------------------------------------------------------------- the dashboard modules' fixtures
# (imported by test_dashboard.py and test_dashboard_serving.py, which share one build)

PAGES = ["crime", "311", "street-works", "mobility"]


@pytest.fixture(scope="module", autouse=True)
def metadata_db(airflow_db):
    """Every request is authenticated through Airflow's auth manager, which checks a token against
    the metadata database's revoked tokens."""
    return airflow_db


@pytest.fixture(scope="module")
def built(run_dir) -> Path:
    return ensure_built(run_dir / "dashboard")


@pytest.fixture(scope="module")
def warehouse(built) -> Path:
    return built / "warehouse.duckdb"


@pytest.fixture(scope="module")
def boundaries(tmp_path_factory, warehouse) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("boundaries")
    return folder, write_boundaries(warehouse, folder, "toronto")


@pytest.fixture(scope="module")
def client(built, boundaries):
    from fastapi.testclient import TestClient

    from civic_pipelines.dashboard.app import standalone_app

    app = standalone_app(dashboard_config(built, boundaries[0]))
    with signed_in(TestClient(app)) as test_client:
        yield test_client


def api(client, page: str, **params) -> dict:
    response = client.get(f"/civic/api/{page}", params=params)
    assert response.status_code == 200, response.text[:2000]
    return response.json()
