"""The replay server core: a small threaded HTTP server with a route table, fault switches, a
request log and control endpoints. API-specific behaviour lives in one module per API
(``soda.py`` for Socrata); each installs its routes and its config handler here.

Control endpoints (JSON in, JSON out)::

    GET  /_replay/health                  {"ok": true, "routes": [...], "config": [...]}
    GET  /_replay/faults                  current fault counts, retry_after, and how often each fired
    POST /_replay/faults   {"status_429": 2, "retry_after": 1, ...}   set counts (others unchanged)
    POST /_replay/reset    {} or {"data": true}                       clear faults + request log
                                                                      (+ data config when "data")
    GET  /_replay/config                  each API's current configuration
    POST /_replay/config   {"seattle_crime": {"schema": "B"}}         per-API configuration
    GET  /_replay/requests [?detail=1]    the requests received (path + raw query), in order; with
                                          detail, each with its status and arrival time ("at", epoch s)

The fault switches and what each does are listed in :mod:`civic_pipelines.replay.fault_state`;
the request, response and route types, and the core's fault answers, live in
:mod:`civic_pipelines.replay.http_messages`. This module is the HTTP server, its dispatch and
control endpoints, and ``make_server()``, which installs every API.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import orjson

from civic_pipelines.replay.fault_state import FAULTS, Faults, ReplayState  # noqa: F401 - re-exported
from civic_pipelines.replay.http_messages import (  # noqa: F401 - re-exported
    Request,
    Response,
    Route,
    fault_response,
    json_response,
    reset_connection,
    socrata_error,
)

CONTROL_PREFIX = "/_replay/"


# ---------------------------------------------------------------- the server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    replay: ReplayServer

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its read timeout during a ``delay`` fault, a retry after a reset)
        # is what the faults are for, not a server error worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "civic-replay/0.1"
    timeout = 300  # idle keep-alive connections end eventually

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm holds the
        # body until the client's delayed ACK, about 40 ms per request (MDS walks ~1,400 a block).
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = Request(
            method=method,
            path=split.path,
            query=split.query,
            params=parse_qsl(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            state=self.server.replay.state,
            client=tuple(self.client_address[:2]),
        )
        try:
            response = self.server.replay.dispatch(request)
        except Exception as exc:  # a bug in a handler must not kill the connection silently
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, {"code": "internal", "error": True, "message": repr(exc)})
        self._send(response)

    def _send(self, response: Response) -> None:
        body = response.body
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if response.abort_half:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            reset_connection(self)
            return
        self.wfile.write(body)


def check_config_keys(section: str, config: dict, known: set[str]) -> None:
    """Refuse a ``/_replay/config`` section with keys its emulator does not know (ValueError: a 400)."""
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown {section} config key(s) {sorted(unknown)}; known: {sorted(known)}")


class ReplayServer:
    """Generic core: ``add_route(prefix, handler)``; APIs install themselves with ``install(server)``.

    ``url``, ``start()`` (a daemon thread), ``stop()``, ``state`` (:class:`ReplayState`),
    ``faults`` (:class:`Faults`), ``apis`` (name -> installed API object)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ReplayState()
        self.faults = self.state.faults
        self.apis: dict[str, object] = {}
        self._routes: list[Route] = []
        self._config_handlers: dict[str, tuple[Callable[[dict], dict], Callable[[], dict]]] = {}
        self._data_reset_hooks: list[Callable[[], None]] = []
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.replay = self
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ extension points

    def add_route(
        self,
        prefix: str,
        handler: Callable[[Request], Response],
        methods=("GET",),
        faultable: bool = False,
        processing_body: bytes = b"[]",
        on_fault: Callable[[str, Response], Response] | None = None,
    ) -> None:
        self._routes.append(Route(prefix, handler, tuple(methods), faultable, processing_body, on_fault))
        self._routes.sort(key=lambda r: len(r.prefix), reverse=True)  # longest prefix wins

    def add_config_handler(self, name: str, apply: Callable[[dict], dict], describe: Callable[[], dict]) -> None:
        """``POST /_replay/config {name: {...}}`` calls ``apply({...})``; GET shows ``describe()``."""
        self._config_handlers[name] = (apply, describe)

    def add_data_reset_hook(self, hook: Callable[[], None]) -> None:
        self._data_reset_hooks.append(hook)

    def install(self, api) -> None:
        """Install an API module object (it has ``name`` and ``install(server)``)."""
        api.install(self)
        self.apis[api.name] = api

    # ------------------------------------------------------------ lifecycle

    def start(self) -> ReplayServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="replay-server", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ dispatch

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        started = time.perf_counter()
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "params": request.params,
            "status": None,
            "at": round(time.time(), 4),
            "client_port": request.client[1] if len(request.client) > 1 else None,
        }
        self.state.log(entry)
        route = next((r for r in self._routes if request.path.startswith(r.prefix)), None)
        if route is None:
            response = socrata_error(404, "not_found", f"no replay route for {request.path}")
        elif request.method not in route.methods:
            response = socrata_error(405, "method_not_allowed", f"{request.method} not allowed on {route.prefix}")
        else:
            response = self._fault_response(route) if route.faultable else None
            if response is None:
                response = route.handler(request)
                if route.faultable and response.data_page and response.status == 200:
                    if self.faults.take("reset_mid_page"):
                        response.abort_half = True
        entry["status"] = response.status
        entry["ms"] = round((time.perf_counter() - started) * 1000, 3)
        return response

    def _fault_response(self, route: Route) -> Response | None:
        return fault_response(self.faults, route.processing_body, route.on_fault)

    def _control(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            payload = orjson.loads(request.body) if request.body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return json_response(400, {"error": True, "message": f"body is not JSON: {exc}"})
        if request.method == "POST" and not isinstance(payload, dict):
            return json_response(400, {"error": True, "message": "body must be a JSON object"})
        try:
            if action == "faults":
                if request.method == "POST":
                    self.faults.update(payload)
                return json_response(200, self.faults.snapshot())
            if action == "reset" and request.method == "POST":
                self.state.reset()
                if payload.get("data"):
                    for hook in self._data_reset_hooks:
                        hook()
                return json_response(200, {"ok": True})
            if action == "config":
                if request.method == "POST":
                    unknown = [name for name in payload if name not in self._config_handlers]
                    if unknown:
                        raise ValueError(f"unknown config section(s) {unknown}; known: {sorted(self._config_handlers)}")
                    result = {name: self._config_handlers[name][0](section or {}) for name, section in payload.items()}
                    return json_response(200, result)
                return json_response(200, {name: h[1]() for name, h in self._config_handlers.items()})
            if action == "requests" and request.method == "GET":
                if request.param("detail"):
                    return json_response(200, self.state.request_details())
                return json_response(200, self.state.requests)
            if action == "health":
                return json_response(
                    200,
                    {"ok": True, "routes": [r.prefix for r in self._routes], "config": sorted(self._config_handlers)},
                )
        except (ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": True, "message": str(exc)})
        return json_response(
            404, {"error": True, "message": f"unknown control endpoint {request.method} {request.path}"}
        )


# ---------------------------------------------------------------- factories


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    months: list[str] | None = None,
    schema: str = "A",
    seed: int = 20240101,
    rows_per_month: int | None = None,
    rows_updated_at: int = 1767225600,
) -> ReplayServer:
    """A replay server with every API installed (Seattle crime over SODA, Minneapolis 311 over
    ArcGIS REST, Toronto 311 over CKAN). Not started.

    ``months``: what a query with no bounds on the report time may cover (default: every month
    2008-01..2026-12, which is slow to generate). ``server.dataset`` is the SeattleCrimeDataset,
    ``server.minneapolis`` the Minneapolis311Dataset, ``server.toronto`` the Toronto311Dataset, ``server.generated[name]`` each dataset the replay
    generates from its dataset file alone."""
    from civic_pipelines.replay.seattle import SeattleCrimeDataset
    from civic_pipelines.replay.soda import SodaApi

    server = ReplayServer(host, port)
    dataset = SeattleCrimeDataset(
        schema=schema, seed=seed, rows_per_month=rows_per_month, rows_updated_at=rows_updated_at
    )
    soda = SodaApi()
    soda.add_seattle(dataset, months=months)
    from civic_pipelines.replay.generated import generated_sources

    server.generated = {}
    for source in generated_sources():  # datasets added by configuration alone
        soda.add_source(source)
        server.generated[source.name] = source.dataset
    server.install(soda)
    server.dataset = dataset
    from civic_pipelines.replay.minneapolis_layers import install_minneapolis

    server.minneapolis = install_minneapolis(server)
    from civic_pipelines.replay.toronto_ckan import install_toronto

    server.toronto = install_toronto(server)
    from civic_pipelines.replay.srwr import install_srwr

    server.srwr = install_srwr(server)  # SRWR export API (``server.srwr``: the SrwrDataset)
    from civic_pipelines.replay.street_manager import install_street_manager

    # Street Manager archives (``server.street_manager``: StreetManagerArchives; adds HEAD and streamed bodies)
    server.street_manager = install_street_manager(server)
    from civic_pipelines.replay.mds import install_mds

    server.mds = install_mds(server)  # MDS provider APIs, several providers and versions (``server.mds``: MdsReplay)
    return server


def serve_forever(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Foreground server for ``civic replay``, serving the bundled and generated data."""
    server = make_server(host, port)
    print(f"civic replay serving on {server.url} (Seattle crime: {server.url}/resource/tazs-3rd5.json)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
