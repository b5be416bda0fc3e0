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

Fault switches (each a count, decremented as it fires, only on routes marked ``faultable``, i.e.
the data endpoints such as ``/resource/``):

    status_429      429 with ``Retry-After: <retry_after>`` and a JSON error body
    status_503      503 (a burst of n)
    status_202      202 with the route's "still processing" body (``[]`` for SODA)
    reset_mid_page  the full Content-Length, half the body, then the socket is reset
    malformed_row   the next n data pages each get two contract-breaking rows (one without the
                    key, one with an unparsable timestamp; the API module makes them)
    duplicate_row   the page's first row repeated with a later timestamp (API module applies it)
    status_500      500 (a burst of n)
    status_502      502 with an HTML body, as a load balancer sends it (a burst of n)
    status_401      401 ``invalid_token``: an expired or revoked credential (API modules whose
                    real service answers otherwise, e.g. ArcGIS's 498, replace the body)
    delay           the next n data requests wait ``delay_seconds`` before answering, so a client
                    with a shorter read timeout times out

Fault switches an API module implements where its API has the notion (the module's docstring says
which; ``fired`` shows whether one did):

    empty_month     the next n block queries find no records (or an archive with none)
    page_overlap    the next n pages start with the last rows of the previous page, as offset
                    paging does when rows are inserted ahead of the cursor while it walks
    drop_field      the next n pages lose one contract field entirely
    new_field       the next n pages carry a field the contract lacks
    retype_field    the next n pages carry one field as another JSON type (a number as text)
    truncate_archive  the next n archive downloads end early (a complete HTTP response of a
                    truncated file)
    corrupt_archive   the next n archive downloads have garbage bytes in the middle

``field`` (``POST /_replay/faults {"drop_field": 1, "field": "beat"}``) names the wire field that
``drop_field`` / ``retype_field`` act on; unset (null), each API module picks its own default
(its docstring says which). An API whose real service answers a core fault in another shape
(ArcGIS's 498 for a bad token, Socrata's 403 ``permission_denied`` for a bad app token) passes
``on_fault`` to ``add_route``, or calls :func:`fault_response` itself with one.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import orjson

FAULTS = (
    "status_429",
    "status_503",
    "status_202",
    "reset_mid_page",
    "malformed_row",
    "duplicate_row",
    "status_500",
    "status_502",
    "status_401",
    "delay",
    "empty_month",
    "page_overlap",
    "drop_field",
    "new_field",
    "retype_field",
    "truncate_archive",
    "corrupt_archive",
)
CONTROL_PREFIX = "/_replay/"


# ---------------------------------------------------------------- state


class Faults:
    """Thread-safe fault counters. ``faults.set(status_429=2)``, ``faults["status_503"] = 3``,
    ``faults.take("status_429")`` (fires: returns how many were taken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {name: 0 for name in FAULTS}
        self.fired = {name: 0 for name in FAULTS}
        self.retry_after: float = 1
        self.delay_seconds: float = 2
        self.field: str | None = None  # the wire field drop_field / retype_field act on (None: the API's choice)

    def set(self, **values) -> None:
        self.update(values)

    def update(self, values: dict) -> None:
        with self._lock:
            for name, value in values.items():
                if name in ("retry_after", "delay_seconds"):
                    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                        raise ValueError(f"{name} must be a number of seconds >= 0")
                    setattr(self, name, value)
                    continue
                if name == "field":
                    if value is not None and (not isinstance(value, str) or not value):
                        raise ValueError("field must be a wire field name or null")
                    self.field = value
                    continue
                if name not in self._counts:
                    raise ValueError(
                        f"unknown fault {name!r}; known: {', '.join(FAULTS)}, retry_after, delay_seconds, field"
                    )
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"fault {name} needs a count >= 0")
                self._counts[name] = value

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def __setitem__(self, name: str, value: int) -> None:
        self.update({name: value})

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    def take(self, name: str, n: int = 1) -> int:
        with self._lock:
            taken = min(self._counts[name], n)
            self._counts[name] -= taken
            self.fired[name] += taken
            return taken

    def clear(self) -> None:
        with self._lock:
            for name in FAULTS:
                self._counts[name] = 0
                self.fired[name] = 0
            self.retry_after = 1
            self.delay_seconds = 2
            self.field = None

    def snapshot(self) -> dict:
        with self._lock:
            return {
                **self._counts,
                "retry_after": self.retry_after,
                "delay_seconds": self.delay_seconds,
                "field": self.field,
                "fired": dict(self.fired),
            }


class ReplayState:
    """What a test can see and steer in-process: fault switches and the request log."""

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._reset_hooks: list[Callable[[], None]] = []

    def add_reset_hook(self, hook: Callable[[], None]) -> None:
        """An API's own switches, cleared with the core's by every reset."""
        self._reset_hooks.append(hook)

    def log(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[str]:
        """Paths with raw query strings, in arrival order (control requests excluded)."""
        with self._lock:
            return [e["path"] + ("?" + e["query"] if e["query"] else "") for e in self._requests]

    def request_details(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._requests]

    def reset(self) -> None:
        self.faults.clear()
        for hook in self._reset_hooks:
            hook()
        with self._lock:
            self._requests.clear()


# ---------------------------------------------------------------- request / response


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: str  # raw query string
    params: list[tuple[str, str]]  # decoded, in order
    headers: dict
    body: bytes
    state: ReplayState
    client: tuple = ()  # (host, port) of the client connection

    def param(self, name: str, default=None):
        for key, value in self.params:
            if key == name:
                return value
        return default


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    data_page: bool = False  # a 200 data page: reset_mid_page may fire on it
    abort_half: bool = False


def json_response(status: int, payload, headers: dict | None = None, **kwargs) -> Response:
    return Response(status, orjson.dumps(payload), headers or {}, **kwargs)


def socrata_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"code": code, "error": True, "message": message})


@dataclass
class Route:
    prefix: str
    handler: Callable[[Request], Response]
    methods: tuple = ("GET",)
    faultable: bool = False
    processing_body: bytes = b"[]"  # the body of a 202 "still processing" reply
    on_fault: Callable[[str, Response], Response] | None = None  # the API's own shape of a core fault


def fault_response(
    faults: Faults, processing_body: bytes = b"[]", on_fault: Callable[[str, Response], Response] | None = None
) -> Response | None:
    """The core's HTTP-level faults (429, 503, 202, 500, 502, 401, then ``delay``), in that order:
    the answer of the first that fires, or None (after any delay) to answer normally.
    ``on_fault(name, response)`` lets an API reshape the answer the way its real service sends it."""
    name, response = None, None
    if faults.take("status_429"):
        retry_after = faults.retry_after
        value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        name, response = (
            "status_429",
            json_response(
                429,
                {
                    "code": "too_many_requests",
                    "error": True,
                    "message": "Too many requests; throttled. Retry later or use an app token.",
                },
                {"Retry-After": value},
            ),
        )
    elif faults.take("status_503"):
        name, response = (
            "status_503",
            json_response(
                503, {"code": "service_unavailable", "error": True, "message": "Service temporarily unavailable"}
            ),
        )
    elif faults.take("status_202"):
        name, response = (
            "status_202",
            Response(202, processing_body, {"X-SODA2-Warning": "processing; retry the same request"}),
        )
    elif faults.take("status_500"):
        name, response = (
            "status_500",
            json_response(500, {"code": "internal_error", "error": True, "message": "Internal server error"}),
        )
    elif faults.take("status_502"):
        name, response = (
            "status_502",
            Response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {}, content_type="text/html"),
        )
    elif faults.take("status_401"):
        name, response = (
            "status_401",
            json_response(
                401,
                {"code": "invalid_token", "error": True, "message": "The access token expired or was revoked"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ),
        )
    elif faults.take("delay"):
        time.sleep(faults.delay_seconds)
    if response is not None and on_fault is not None:
        response = on_fault(name, response)
    return response


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


def reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """End the handler's connection with a TCP reset, like a dropped upstream connection."""
    handler.close_connection = True
    try:  # SO_LINGER 0: close sends a reset instead of a FIN
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


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
