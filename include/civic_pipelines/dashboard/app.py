"""The dashboard's web app (FastAPI): HTML pages, their JSON twins and the static assets.

Mounted by the Airflow plugin (plugins/civic_dashboard.py) at ``/civic/`` on the API server, and
served alone by ``civic dashboard --port N`` (``serve()``), at the same ``/civic/`` path. Every
link is relative, so the app works under any prefix (and inside the Airflow UI's iframe, whose
``<base href>`` is the Airflow base URL).

| path | what |
|---|---|
| `./` | overview: one data-health card per source |
| `crime`, `311`, `street-works`, `mobility` | the source pages |
| `api/overview`, `api/<page>` | the same data as JSON (503 with Retry-After while the warehouse is busy and no snapshot exists) |
| `api/status` | the warehouse snapshot's state |
| `models/<name>` | a dbt model's description and columns (every chart links to the model feeding it) |
| `static/...` | CSS, JS, icon, and plotly.min.js from the installed plotly package (no CDN) |

All query parameters: ``start``/``end`` (YYYY-MM) and ``source`` (repeated or comma-separated).

Every route, the static files included, requires a user the configured Airflow auth manager
authenticates and authorizes for the "Civic data" view (``auth.py``): 401/403 and no data
otherwise. The pages name no server path and show no raw error text (a viewer needs neither);
those go to the server's log, which is where an operator looks.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from civic_pipelines.dashboard import health, pages
from civic_pipelines.dashboard.auth import refusal, require_dashboard_access
from civic_pipelines.dashboard.boundaries import BoundaryFiles
from civic_pipelines.dashboard.catalog import Catalog
from civic_pipelines.dashboard.config import DashboardConfig
from civic_pipelines.dashboard.warehouse import WarehouseBusy, WarehouseMissing, WarehouseReader
from civic_pipelines.dbt_results import read_results

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
QUERY_FAILED = "This page could not read the warehouse (the error is in the server's log)."
STATIC = HERE / "static"
SOURCE_LABELS = {
    "overview": "Sources",
    "crime": "Source",
    "311": "Cities",
    "street-works": "Sources",
    "mobility": "Providers",
}
# Models listed with their row counts on the overview's warehouse panel.
WAREHOUSE_TABLES = [
    "fct_crime_offenses",
    "mart_crime_monthly",
    "mart_crime_by_area",
    "fct_service_requests",
    "mart_requests_by_category_month",
    "mart_requests_by_area",
    "mart_time_to_close",
    "mart_works_by_month",
    "mart_street_impact",
    "mart_srwr_activity_summary",
    "fct_mobility_trips",
    "mart_mobility_trips_daily",
]


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(payload) -> bytes:
    return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(to_json(payload), status_code=status, media_type="application/json", headers=headers)


def plotly_js() -> tuple[str, Path]:
    """plotly.js as the installed plotly package ships it, and its version (from the file's header
    comment: importing plotly itself would cost half a second on the first request)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed (requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    with open(path, "rb") as handle:
        found = re.search(rb"plotly\.js v([0-9][0-9A-Za-z.\-]*)", handle.read(512))
    return (found.group(1).decode() if found else hashlib.sha1(path.read_bytes()).hexdigest()[:10]), path


class Dashboard:
    """Everything the routes share: the warehouse reader, the dbt catalog, the lake manifests,
    the boundary files and the templates."""

    def __init__(self, config: DashboardConfig):
        import jinja2

        self.config = config
        self.reader = WarehouseReader(config.warehouse)
        self.catalog = Catalog(config.dbt_manifest, config.dbt_run_results)
        self.manifests = health.LakeManifests(config.lake)
        self.boundaries = BoundaryFiles(config.boundaries)
        self.plotly_version, self.plotly_path = plotly_js()
        self._plotly_gzip: bytes | None = None
        self._plotly_lock = threading.Lock()
        # compressed once, off the request path (about 0.3 s); until then the file goes uncompressed
        threading.Thread(target=self.plotly_gzip, name="civic-plotly-gzip", daemon=True).start()
        self.asset_version = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(STATIC.glob("*")))).hexdigest()[:10]
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(number=_number, when=_when, tojson_script=_tojson_script)

    # -- helpers -----------------------------------------------------------------------------

    def plotly_gzip(self) -> bytes:
        with self._plotly_lock:
            if self._plotly_gzip is None:
                self._plotly_gzip = gzip.compress(self.plotly_path.read_bytes(), compresslevel=6)
            return self._plotly_gzip

    def registered(self) -> list[health.RegisteredSource]:
        try:
            return health.registry_sources()
        except Exception as error:  # noqa: BLE001 - the registry itself failed: cards from the lake
            log.warning("source registry unavailable: %s", error)
            return []

    def render(self, template: str, request: Request, started: float, **context) -> HTMLResponse:
        root = _root(request)
        keep = {k: request.query_params[k] for k in ("start", "end") if request.query_params.get(k)}
        context.setdefault("extent", (None, None))
        context.setdefault("source_options", [])
        context.setdefault("selected", [])
        context.setdefault("notes", [])
        html = self.templates.get_template(template).render(
            root=root,
            keep_range=("?" + "&".join(f"{k}={v}" for k, v in keep.items())) if keep else "",
            nav=list(pages.PAGES.items()),
            asset_version=self.asset_version,
            plotly_version=self.plotly_version,
            filter_start=request.query_params.get("start") or context.get("range_start"),
            filter_end=request.query_params.get("end") or context.get("range_end"),
            render_ms="{render_ms}",
            models=self.catalog.models(),
            **context,
        )
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        html = html.replace("{render_ms}", str(elapsed), 2)
        return HTMLResponse(html, headers={"Server-Timing": f"render;dur={elapsed}", "Cache-Control": "no-store"})


def _root(request: Request) -> str:
    """The relative path from this page back to the app's root (links stay relative)."""
    path = request.scope.get("path", "/")
    root_path = request.scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _when(value: str | None) -> str:
    if not value:
        return "–"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _tojson_script(value) -> str:
    from markupsafe import Markup

    # inside <script>, "</" would end the element: escape it (JSON allows "\/")
    return Markup(to_json(value).decode().replace("</", "<\\/"))


def create_app(config: DashboardConfig | None = None) -> FastAPI:
    """The app; cheap to create (nothing is read until the first request)."""
    # The dependency runs before every route (a mounted plugin app gets none of Airflow's).
    app = FastAPI(
        title="Civic data dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(require_dashboard_access)],
    )
    app.add_exception_handler(HTTPException, refusal)
    lazy: dict[str, Dashboard] = {}
    lock = threading.Lock()

    def dash() -> Dashboard:
        with lock:
            if "d" not in lazy:
                lazy["d"] = Dashboard(config or DashboardConfig.from_env())
            return lazy["d"]

    app.state.dashboard = dash

    # -- static ------------------------------------------------------------------------------

    @app.get("/static/plotly-{version}.min.js", include_in_schema=False)
    def plotly_script(version: str, request: Request):
        d = dash()
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        compressed = d._plotly_gzip
        if compressed is not None and "gzip" in request.headers.get("accept-encoding", ""):
            return Response(
                compressed, media_type="application/javascript", headers={**headers, "Content-Encoding": "gzip"}
            )
        return Response(d.plotly_path.read_bytes(), media_type="application/javascript", headers=headers)

    # A route rather than a StaticFiles mount: a mount would bypass the app's dependencies. The
    # files are listed once, so no request path reaches the file system.
    static_files = {p.name: p for p in STATIC.iterdir() if p.is_file()}

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in static_files:
            raise HTTPException(404, "Not Found")
        return FileResponse(static_files[name], headers={"Cache-Control": "no-cache"})

    # -- pages -------------------------------------------------------------------------------

    def overview_data(d: Dashboard, filters: pages.Filters) -> dict:
        registered = d.registered()
        names = [s.name for s in registered]
        selected = filters.selected(names)
        tests = d.catalog.test_results()
        start = filters.start.strftime("%Y-%m") if filters.start else None
        end = filters.end.strftime("%Y-%m") if filters.end else None
        cards = []
        for source in registered:
            if source.name not in selected:
                continue
            blocks = d.manifests.blocks(source.name)
            freshness = health.read_source_freshness(d.config.dbt_freshness, source.name)
            results = read_results(d.config.dbt_results, source.name)
            cards.append(
                health.source_health(
                    source,
                    pages.page_of(source.name),
                    blocks,
                    tests,
                    start,
                    end,
                    freshness=freshness,
                    dbt_results=results,
                )
            )
        order = list(pages.PAGES)
        cards.sort(key=lambda c: (order.index(c.page) if c.page in order else len(order), c.source))
        months = sorted({m for c in cards for m in c.months})
        return {
            "names": names,
            "selected": selected,
            "cards": cards,
            "tests_total": len(tests) + sum(c.tests_total for c in cards if c.tests_from == "dag"),
            "extent": (months[0], months[-1]) if months else (None, None),
        }

    def warehouse_panel(d: Dashboard) -> tuple[dict, str | None, dict]:
        try:
            with d.reader.read() as reading:
                return pages.table_counts(reading, WAREHOUSE_TABLES), None, _reading_meta(reading)
        except (WarehouseBusy, WarehouseMissing) as error:  # their texts name no path
            return {}, str(error), {"busy": isinstance(error, WarehouseBusy)}

    @app.get("/", response_class=HTMLResponse)
    def overview(
        request: Request, start: str | None = None, end: str | None = None, source: list[str] | None = Query(None)
    ):
        started = time.perf_counter()
        d = dash()
        filters = pages.Filters.parse(start, end, source)
        data = overview_data(d, filters)
        counts, error, meta = warehouse_panel(d)
        return d.render(
            "overview.html",
            request,
            started,
            title="Overview",
            page_id="overview",
            cards=data["cards"],
            tests_total=data["tests_total"],
            table_counts=counts,
            warehouse_error=error,
            source_options=data["names"],
            selected=data["selected"],
            source_label=SOURCE_LABELS["overview"],
            extent=data["extent"],
            notes=filters.notes,
            banner=_banner(meta),
            as_of=meta.get("as_of"),
            charts_on_page=False,
        )

    @app.get("/api/overview")
    def overview_json(start: str | None = None, end: str | None = None, source: list[str] | None = Query(None)):
        d = dash()
        filters = pages.Filters.parse(start, end, source)
        data = overview_data(d, filters)
        counts, error, meta = warehouse_panel(d)
        return json_response(
            {
                "page": "overview",
                "sources": data["names"],
                "selected": data["selected"],
                "range": {"start": start, "end": end},
                "cards": [c.as_dict() for c in data["cards"]],
                "warehouse": {"tables": counts, "error": error, **meta},
                "notes": filters.notes,
            }
        )

    def build_page(d: Dashboard, page_id: str, reading, filters: pages.Filters) -> pages.Page:
        if page_id == "crime":
            return pages.crime(reading, filters)
        if page_id == "311":
            registered = [s.name for s in d.registered()]
            if "fct_service_requests" in reading.tables:
                cities = reading.cursor.execute("select distinct city from fct_service_requests").fetchall()
                registered += [f"{c}_311" for (c,) in cities if f"{c}_311" not in registered]
            return pages.service_requests(reading, filters, registered, d.boundaries)
        if page_id == "street-works":
            return pages.street_works(reading, filters)
        return pages.mobility(reading, filters)

    def page_view(page_id: str):
        def view(
            request: Request, start: str | None = None, end: str | None = None, source: list[str] | None = Query(None)
        ):
            started = time.perf_counter()
            d = dash()
            filters = pages.Filters.parse(start, end, source)
            title = pages.PAGES[page_id]
            try:
                with d.reader.read() as reading:
                    page = build_page(d, page_id, reading, filters)
                    meta = _reading_meta(reading)
            except (WarehouseBusy, WarehouseMissing) as error:
                page = pages.Page(page_id, title, [], [], empty=str(error))
                meta = {"busy": isinstance(error, WarehouseBusy)}
            except duckdb_error():  # a model whose columns are not what the page reads
                log.exception("dashboard page %s failed", page_id)  # the error text: in the log only
                page = pages.Page(page_id, title, [], [], empty=QUERY_FAILED)
                meta = {}
            return d.render(
                "page.html",
                request,
                started,
                title=title,
                page_id=page_id,
                page=page,
                extent=page.extent,
                source_options=page.source_options,
                selected=page.selected,
                source_label=SOURCE_LABELS[page_id],
                notes=filters.notes + page.notes,
                banner=_banner(meta),
                as_of=meta.get("as_of"),
                range_start=page.start,
                range_end=page.end,
                charts_on_page=any(c.figure for c in page.charts),
            )

        def view_json(start: str | None = None, end: str | None = None, source: list[str] | None = Query(None)):
            d = dash()
            filters = pages.Filters.parse(start, end, source)
            try:
                with d.reader.read() as reading:
                    page = build_page(d, page_id, reading, filters)
                    meta = _reading_meta(reading)
            except WarehouseBusy as error:
                return json_response(
                    {"page": page_id, "error": "warehouse busy", "detail": str(error)},
                    503,
                    headers={"Retry-After": "5"},
                )
            except WarehouseMissing as error:
                page = pages.Page(page_id, pages.PAGES[page_id], [], [], empty=str(error))
                meta = {}
            except duckdb_error():
                log.exception("dashboard endpoint api/%s failed", page_id)
                return json_response({"page": page_id, "error": "query failed", "detail": QUERY_FAILED}, 500)
            payload = page.as_json()
            payload["notes"] = filters.notes + payload["notes"]
            payload["warehouse"] = meta
            return json_response(payload)

        return view, view_json

    for page_id in ("crime", "311", "street-works", "mobility"):
        view, view_json = page_view(page_id)
        app.add_api_route(f"/{page_id}", view, methods=["GET"], response_class=HTMLResponse, name=f"page_{page_id}")
        app.add_api_route(f"/api/{page_id}", view_json, methods=["GET"], name=f"api_{page_id}")

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model(request: Request, name: str):
        started = time.perf_counter()
        d = dash()
        found = d.catalog.model(name)
        response = d.render(
            "model.html",
            request,
            started,
            title=f"dbt model {name}",
            page_id="model",
            name=name,
            model=found,
            banner=None,
            as_of=None,
            charts_on_page=False,
            source_label="",
        )
        if found is None:
            response.status_code = 404
        return response

    @app.get("/api/status")
    def status():
        d = dash()
        try:
            with d.reader.read() as reading:
                meta = _reading_meta(reading)
                meta["tables"] = sorted(reading.tables)
        except (WarehouseBusy, WarehouseMissing) as error:
            meta = {"error": str(error), "busy": isinstance(error, WarehouseBusy)}
        meta.update(snapshots_taken=d.reader.copies, plotly=d.plotly_version)
        return json_response(meta)

    return app


def duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def _reading_meta(reading) -> dict:
    return {"as_of": reading.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC"), "stale": reading.stale, "busy": reading.stale}


def _banner(meta: dict) -> dict | None:
    if meta.get("stale"):
        return {
            "kind": "busy",
            "text": f"Warehouse busy: a dbt run is writing it now. Showing the snapshot of "
            f"{meta.get('as_of')}; figures may change when the run ends.",
        }
    if meta.get("busy"):
        return {
            "kind": "busy",
            "text": "Warehouse busy: a dbt run is writing it and no earlier snapshot exists "
            "in this server yet. This page fills in when the run ends.",
        }
    return None


def standalone_app(config: DashboardConfig | None = None) -> FastAPI:
    """The dashboard alone, at the same ``/civic/`` path as under Airflow."""
    outer = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    outer.mount("/civic", create_app(config))

    @outer.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("civic/")

    @outer.get("/civic", include_in_schema=False)
    def civic():
        return RedirectResponse("civic/")

    return outer


def serve(host: str = "127.0.0.1", port: int = 8050) -> None:
    import uvicorn

    from civic_pipelines.dashboard.auth import auth_manager

    # Every request is authenticated through Airflow's configured auth manager: set it up (and
    # import Airflow) before the first request rather than during it.
    auth_manager()
    import airflow.api_fastapi.core_api.security  # noqa: F401

    print(f"civic dashboard on http://{host}:{port}/civic/", flush=True)
    uvicorn.run(standalone_app(), host=host, port=port, log_level="warning")
