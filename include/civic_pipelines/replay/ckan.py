"""CKAN endpoints for the replay server, for any dataset served as a CKAN package.

Paths are the real ones after the host, so a client only swaps the base URL::

    GET|POST /api/3/action/package_show?id=<name or id>   the package and every resource
    GET|POST /api/3/action/resource_show?id=<resource id> one resource
    GET /dataset/<package id>/resource/<resource id>/download/<file>.zip   a resource's file
    GET /dataset/<package id>/resource/<resource id>/download/<file>.csv   the bare CSV
    GET <the package's external_prefix><file>.zip (or .csv)   the years a publisher keeps
        outside CKAN (a package's ``external_years``), at its own URL shape, served here

(``/api/action/...`` works as well as ``/api/3/action/...``, as in CKAN.) The packages, with their
configuration sections, live beside the datasets they adapt.

Responses use the CKAN envelope ``{"help": ..., "success": true, "result": ...}``; errors are
``{"help": ..., "error": {"__type": ..., "message": ...}, "success": false}`` with CKAN's statuses
(404 not found, 409 validation error, 400 unknown action). Downloads carry ``Content-Length``,
``Last-Modified``, a content ``ETag`` and ``Accept-Ranges: bytes``; they answer single byte
ranges (206 / 416, ``If-Range``) and ``If-None-Match`` / ``If-Modified-Since`` (304). The body is
sent in one piece with its full length, so streaming clients (``stream=True``,
``iter_content``) read it as it arrives.

Faults: the download routes are ``faultable`` (``status_429``/``500``/``502``/``503``/``202``,
``delay`` and ``reset_mid_page`` come from the core); ``malformed_row`` adds two contract-breaking
lines to the next n full downloads (one with an extra field, one whose Creation Date is
``not-a-date``) and ``duplicate_row`` repeats the first data row an hour later, at its sorted
place. On the next n full downloads, the file itself changes (a new body with its own ETag,
under the same resource metadata):

* ``empty_month``: the header line only (a file with no rows);
* ``drop_field``: the column ``field`` (default ``Ward``) gone from the header and every line;
* ``new_field``: a column the contract's possible newer schema names, ``Service Request
  Location`` (the row's postal prefix), added at the end of the header and every line;
* ``retype_field``: the column ``field`` (default ``Creation Date``) written another way, ISO
  8601 with a ``T`` and milliseconds (``2024-02-01T10:00:00.000``), as a DataStore export does;
* ``truncate_archive``: the download ends at 60 % of the file, as a complete HTTP answer (its
  ``Content-Length`` is the cut length);
* ``corrupt_archive``: 64 bytes in the middle of the file are garbage (same length).

The action API is not faultable (as SODA's metadata route is not).
"""

from __future__ import annotations

import datetime as _dt
from email.utils import format_datetime, parsedate_to_datetime

import orjson

from civic_pipelines.replay.http_stream import bytes_answer, if_range_ok
from civic_pipelines.replay.server import Request, Response, json_response
from civic_pipelines.replay.zip_files import etag_for

ACTION_PREFIXES = ("/api/3/action/", "/api/action/")
DOWNLOAD_PREFIX = "/dataset/"


def _envelope_help(base: str, action: str) -> str:
    return f"{base}/api/3/action/help_show?name={action}"


def ckan_ok(base: str, action: str, result) -> Response:
    return json_response(200, {"help": _envelope_help(base, action), "success": True, "result": result})


def ckan_error(base: str, action: str, status: int, error: dict) -> Response:
    return json_response(status, {"help": _envelope_help(base, action), "error": error, "success": False})


def _not_found_page(what: str) -> Response:
    body = f"<html><body><h1>404 Not Found</h1><p>{what}</p></body></html>".encode()
    return Response(404, body, {}, content_type="text/html; charset=utf-8")


def http_date(value: _dt.datetime) -> str:
    return format_datetime(value.replace(microsecond=0, tzinfo=_dt.UTC), usegmt=True)


def _damaged(data: bytes, truncate: int, corrupt: int) -> bytes:
    """truncate_archive (the first 60 %) and corrupt_archive (64 garbage bytes in the middle)."""
    if corrupt:
        middle = len(data) // 2
        data = data[:middle] + bytes((0xA5 ^ i) & 0xFF for i in range(64)) + data[middle + 64 :]
    if truncate:
        data = data[: len(data) * 3 // 5]
    return data


# ---------------------------------------------------------------- the CKAN service


class CkanApi:
    """The CKAN service: any number of packages (each a dataset's adapter, installed beside it).

    A package has ``name`` (its config section), ``matches(id)``, ``package(base)``,
    ``resource_by_id(id, base)``, ``year_for_resource(id)``, ``file(year, kind)``,
    ``faulted_file(...)``, ``dataset`` (``years()``, ``last_modified_dt(year)``), ``external_years``
    with ``external_prefix`` and ``external_file`` (a pattern giving a file's year and kind) for the
    years served outside CKAN, ``unserved_resources`` (id -> why it is not served), ``configure``,
    ``describe`` and ``reset_data``."""

    name = "ckan"

    def __init__(self) -> None:
        self.packages: list = []
        self._server_url = ""
        self._external_prefixes: set[str] = set()

    def add_package(self, package) -> None:
        self.packages.append(package)

    def install(self, server) -> None:
        self._server_url = server.url
        for prefix in ACTION_PREFIXES:
            server.add_route(prefix, self.handle_action, methods=("GET", "POST"))
        server.add_route(DOWNLOAD_PREFIX, self.handle_download, faultable=True, processing_body=b"")
        for package in self.packages:
            self.register_config(server, package)

    def register_config(self, server, package) -> None:
        """Register a package's config section, data reset and external download route."""
        if package.external_prefix not in self._external_prefixes:
            self._external_prefixes.add(package.external_prefix)
            server.add_route(package.external_prefix, self.handle_external, faultable=True, processing_body=b"")
        server.add_config_handler(package.name, package.configure, package.describe)
        server.add_data_reset_hook(package.reset_data)

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self._server_url

    # ------------------------------------------------------------ /api/3/action/<action>

    def handle_action(self, request: Request) -> Response:
        base = self._base(request)
        prefix = next(p for p in ACTION_PREFIXES if request.path.startswith(p))
        action = request.path[len(prefix) :].strip("/")
        params = dict(request.params)
        if request.method == "POST" and request.body.strip():
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                return ckan_error(base, action, 400, {"__type": "Bad request", "message": "Bad request - JSON Error"})
            if isinstance(body, dict):
                params.update({k: v for k, v in body.items() if isinstance(v, str)})
        if action == "package_show":
            ident = params.get("id") or params.get("name_or_id")
            if not ident:
                return ckan_error(base, action, 409, {"__type": "Validation Error", "id": ["Missing value"]})
            package = next((p for p in self.packages if p.matches(ident)), None)
            if package is None:
                return ckan_error(base, action, 404, {"__type": "Not Found Error", "message": "Not found"})
            return ckan_ok(base, action, package.package(base))
        if action == "resource_show":
            ident = params.get("id")
            if not ident:
                return ckan_error(base, action, 409, {"__type": "Validation Error", "id": ["Missing value"]})
            for package in self.packages:
                resource = package.resource_by_id(ident, base)
                if resource is not None:
                    return ckan_ok(base, action, resource)
            return ckan_error(
                base, action, 404, {"__type": "Not Found Error", "message": "Not found: Resource was not found."}
            )
        return ckan_error(
            base, action, 400, {"__type": "Bad request", "message": f"Bad request - Action name not known: {action}"}
        )

    # ------------------------------------------------------------ downloads

    def handle_download(self, request: Request) -> Response:
        parts = request.path[len(DOWNLOAD_PREFIX) :].split("/")
        # <package id>/resource/<resource id>/download/<file name>
        if len(parts) != 5 or parts[1] != "resource" or parts[3] != "download":
            return _not_found_page("Resource not found")
        package = next((p for p in self.packages if p.matches(parts[0])), None)
        if package is None:
            return _not_found_page("Dataset not found")
        if parts[2] in package.unserved_resources:
            return _not_found_page(package.unserved_resources[parts[2]])
        year = package.year_for_resource(parts[2])
        if year is None or year in package.external_years:
            return _not_found_page("Resource not found")
        kind = parts[4].rsplit(".", 1)[-1].lower()
        if kind not in ("zip", "csv"):
            return _not_found_page("Resource data not found")
        return self._serve(request, package, year, kind)

    def handle_external(self, request: Request) -> Response:
        for package in self.packages:
            if not request.path.startswith(package.external_prefix):
                continue
            match = package.external_file.fullmatch(request.path[len(package.external_prefix) :])
            if (
                match
                and int(match.group(1)) in package.external_years
                and int(match.group(1)) in package.dataset.years()
            ):
                return self._serve(request, package, int(match.group(1)), match.group(2).lower())
        return _not_found_page("The requested URL was not found on this server.")

    def _serve(self, request: Request, package, year: int, kind: str) -> Response:
        modified = package.dataset.last_modified_dt(year)
        content_type = "application/zip" if kind == "zip" else "text/csv"
        range_header = request.headers.get("range")
        faults = request.state.faults
        data = etag = None
        conditional = any(request.headers.get(h) for h in ("if-none-match", "if-modified-since"))
        if not range_header and not conditional and faults.get("reset_mid_page") == 0:
            malformed, duplicate = faults.take("malformed_row"), faults.take("duplicate_row")
            changes = {name: faults.take(name) for name in ("empty_month", "drop_field", "new_field", "retype_field")}
            if malformed or duplicate or any(changes.values()):
                data, etag = package.faulted_file(year, kind, malformed, duplicate, changes, faults.field)
            truncate, corrupt = faults.take("truncate_archive"), faults.take("corrupt_archive")
            if truncate or corrupt:
                if data is None:
                    data, etag = package.file(year, kind)
                data = _damaged(data, truncate, corrupt)
                etag = etag_for(data)
        if data is None:
            data, etag = package.file(year, kind)
        headers = {"ETag": etag, "Last-Modified": http_date(modified), "Accept-Ranges": "bytes"}

        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
            if "*" in tags or etag in tags:
                return Response(304, b"", headers, content_type=content_type)
        elif request.headers.get("if-modified-since"):
            try:
                since = parsedate_to_datetime(request.headers["if-modified-since"])
                if since.tzinfo is None:
                    since = since.replace(tzinfo=_dt.UTC)
                if modified.replace(microsecond=0, tzinfo=_dt.UTC) <= since:
                    return Response(304, b"", headers, content_type=content_type)
            except (TypeError, ValueError, IndexError):
                pass

        if range_header and not if_range_ok(
            request.headers.get("if-range"), etag, lambda value: self._modified_at(value, modified)
        ):
            range_header = None  # the body changed since the client's first part: send it whole
        return bytes_answer(data, headers, content_type, range_header)

    @staticmethod
    def _modified_at(value: str, modified: _dt.datetime) -> bool:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return False
        return when == modified.replace(microsecond=0, tzinfo=_dt.UTC)


def __getattr__(name: str):
    # Dataset-specific names that moved beside their dataset keep this old import path.
    from civic_pipelines.replay.moved_names import moved_name

    return moved_name(__name__, name)
