"""CKAN (Open Data Toronto) endpoints for the replay server.

Paths are the real ones after the host, so a client only swaps the base URL
(``https://ckan0.cf.opendata.inter.prod-toronto.ca`` -> ``server.url``):

    GET|POST /api/3/action/package_show?id=<name or id>   the package and every resource
    GET|POST /api/3/action/resource_show?id=<resource id> one resource
    GET /dataset/<package id>/resource/<resource id>/download/sr<YYYY>.zip   the yearly zip
    GET /dataset/<package id>/resource/<resource id>/download/sr<YYYY>.csv   the bare CSV
    GET /data/311/opendata/servicerequest/SR<YYYY>.zip (or .csv)   the years that live outside
        CKAN (2020, 2021): toronto.ca's external URL shape, served here

(``/api/action/...`` works as well as ``/api/3/action/...``, as in CKAN.)

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

Configuration (``POST /_replay/config``), section ``toronto_311``::

    {"late_edits": {"year": 2024, "month": "2024-02", "n": 5}}   (or a list of them)
    {"rows_per_year": 1000}          rows per complete year (null: the real volumes)
    {"current_through": "2026-09-07"} last day in the current year's file
    {"resource_format": "CSV"}        list plain CSV resources instead of ZIP
    {"date_quirks": true}             rows dated outside the year and impossible dates (not in the contract)
    {"location_quirks": true}         rows with an empty Ward, or an empty postal prefix (requests without a location)
    {"size_policy": "eager"}          fill every resource's size in package_show ("auto", "eager", "lazy")
    {"prebuild": true}                build every year's file now (fills every size)
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from email.utils import format_datetime, parsedate_to_datetime

import orjson

from civic_pipelines.replay.http_stream import parse_range
from civic_pipelines.replay.server import Request, Response, json_response
from civic_pipelines.replay.toronto import PACKAGE_TITLE, Toronto311Dataset, build_zip, etag_for

CKAN_BASE = "https://ckan0.cf.opendata.inter.prod-toronto.ca"
ACTION_PREFIXES = ("/api/3/action/", "/api/action/")
DOWNLOAD_PREFIX = "/dataset/"
EXTERNAL_PREFIX = "/data/311/opendata/servicerequest/"
README_ID = "bb11ece8-a2b3-401a-92c0-fa115f867fff"
README_NAME = "311-service-requests-readme"
# Resource ids seen in real package_show output (2026 from a consumer's fixture, uncertain);
# other years, including every year after 2026 (a new SR<YYYY> resource each year, see horizon.py),
# get stable made-up ids: uuid5 of the package and year, generated here, not real ones.
KNOWN_RESOURCE_IDS = {
    2022: "f00a3313-f074-463e-89a7-26563084fbef",
    2023: "079766f3-815d-4257-8731-5ff6b0c84c13",
    2026: "99b7f283-7345-4f5a-a126-d078ed4f3419",
}
EXTERNAL_YEARS = (2020, 2021)  # resources whose url is toronto.ca's SR<YYYY>.zip, not CKAN
_ID_NAMESPACE = uuid.UUID("6f0f3a3e-1b3c-4f47-9d2a-3a1d0c311311")
_MIME = {"ZIP": "application/zip", "CSV": "text/csv",
         "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_README_MODIFIED = "2019-07-23T17:46:11.532718"
_SIZE_AUTO_LIMIT = 2_000_000  # "auto": fill every size when all years together are this small


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
    return format_datetime(value.replace(microsecond=0, tzinfo=_dt.timezone.utc), usegmt=True)


# ---------------------------------------------------------------- the Toronto 311 package


class TorontoCkanPackage:
    """Adapts a :class:`~civic_pipelines.replay.toronto.Toronto311Dataset` to a CKAN package."""

    name = "toronto_311"  # the config section

    def __init__(self, dataset: Toronto311Dataset, resource_format: str = "ZIP",
                 external_years=EXTERNAL_YEARS, size_policy: str = "auto") -> None:
        self.dataset = dataset
        self.package_name = dataset.package_name
        self.package_id = dataset.package_id
        self.resource_format = self._check_format(resource_format)
        self.external_years = tuple(external_years)
        self.size_policy = self._check_policy(size_policy)
        self._initial = (self.resource_format, self.size_policy)

    @staticmethod
    def _check_format(value: str) -> str:
        value = str(value).upper()
        if value not in ("ZIP", "CSV"):
            raise ValueError("resource_format must be ZIP or CSV")
        return value

    @staticmethod
    def _check_policy(value: str) -> str:
        if value not in ("auto", "eager", "lazy"):
            raise ValueError("size_policy must be auto, eager or lazy")
        return value

    # ------------------------------------------------------------ identity

    def matches(self, ident: str) -> bool:
        return ident in (self.package_name, self.package_id)

    def resource_id(self, year: int) -> str:
        return KNOWN_RESOURCE_IDS.get(year) or str(uuid.uuid5(_ID_NAMESPACE, f"{self.package_id}/SR{year}"))

    def year_for_resource(self, resource_id: str) -> int | None:
        for year in self.dataset.years():
            if self.resource_id(year) == resource_id:
                return year
        return None

    def kind(self) -> str:
        return self.resource_format.lower()

    def file_name(self, year: int, kind: str | None = None) -> str:
        kind = kind or self.kind()
        if year in self.external_years:
            return f"SR{year}.{kind}"
        return f"sr{year}.{kind}"

    def eager_sizes(self) -> bool:
        if self.size_policy != "auto":
            return self.size_policy == "eager"
        rows = self.dataset.rows_per_year
        return rows is not None and rows * len(self.dataset.years()) <= _SIZE_AUTO_LIMIT

    # ------------------------------------------------------------ metadata

    def resource(self, year: int, base: str, position: int) -> dict:
        ds = self.dataset
        kind = self.kind()
        rid = self.resource_id(year)
        external = year in self.external_years
        if external:
            url = f"{base}{EXTERNAL_PREFIX}{self.file_name(year)}"
            size = None  # a link: CKAN does not know its size
        else:
            url = f"{base}{DOWNLOAD_PREFIX}{self.package_id}/resource/{rid}/download/{self.file_name(year)}"
            if self.eager_sizes():
                ds.file(year, kind)
            size = ds.known_size(year, kind)
        modified = ds.last_modified(year)
        return {
            "cache_last_updated": None,
            "cache_url": None,
            "created": ds.created(year),
            "datastore_active": False,
            "format": self.resource_format,
            "hash": "",
            "id": rid,
            "is_datastore_cache_file": False,
            "is_preview": False,
            "last_modified": modified,
            "metadata_modified": modified,
            "mimetype": _MIME[self.resource_format],
            "mimetype_inner": None,
            "name": f"311 Service Requests {year}",
            "package_id": self.package_id,
            "position": position,
            "resource_type": None,
            "revision_id": str(uuid.uuid5(_ID_NAMESPACE, f"{rid}/{modified}/{self.resource_format}")),
            "size": size,
            "state": "active",
            "url": url,
            "url_type": None if external else "upload",
        }

    def readme(self, base: str) -> dict:
        return {
            "cache_last_updated": None,
            "cache_url": None,
            "created": _README_MODIFIED,
            "datastore_active": False,
            "format": "XLSX",
            "hash": "",
            "id": README_ID,
            "is_datastore_cache_file": False,
            "is_preview": False,
            "last_modified": _README_MODIFIED,
            "metadata_modified": _README_MODIFIED,
            "mimetype": _MIME["XLSX"],
            "mimetype_inner": None,
            "name": README_NAME,
            "package_id": self.package_id,
            "position": 0,
            "resource_type": None,
            "revision_id": str(uuid.uuid5(_ID_NAMESPACE, f"{README_ID}/{_README_MODIFIED}")),
            "size": None,
            "state": "active",
            "url": f"{base}{DOWNLOAD_PREFIX}{self.package_id}/resource/{README_ID}/download/{README_NAME}.xlsx",
            "url_type": "upload",
        }

    def resources(self, base: str) -> list[dict]:
        """The readme first, then one resource per year, newest first."""
        out = [self.readme(base)]
        for position, year in enumerate(sorted(self.dataset.years(), reverse=True), start=1):
            out.append(self.resource(year, base, position))
        return out

    def package(self, base: str) -> dict:
        resources = self.resources(base)
        return {
            "id": self.package_id,
            "name": self.package_name,
            "title": PACKAGE_TITLE,
            "metadata_modified": max(r["metadata_modified"] for r in resources),
            "num_resources": len(resources),
            "resources": resources,
        }

    def resource_by_id(self, resource_id: str, base: str) -> dict | None:
        if resource_id == README_ID:
            return self.readme(base)
        year = self.year_for_resource(resource_id)
        if year is None:
            return None
        position = sorted(self.dataset.years(), reverse=True).index(year) + 1
        return self.resource(year, base, position)

    # ------------------------------------------------------------ files

    def file(self, year: int, kind: str) -> tuple[bytes, str]:
        return self.dataset.file(year, kind)

    def faulted_file(self, year: int, kind: str, malformed: int, duplicate: int, changes: dict | None = None,
                     field: str | None = None) -> tuple[bytes, str]:
        """The file with fault lines added or its columns changed (a fresh body; its ETag is its own).
        ``changes``: which of empty_month, drop_field, new_field, retype_field fired."""
        changes = changes or {}
        text = self.dataset.csv_bytes(year)
        lines = text.split(b"\r\n")
        trailer = lines.pop() if lines and lines[-1] == b"" else None
        header, data = lines[:1], lines[1:]
        if duplicate and data:
            data = _with_duplicate(data)
        if malformed and data:
            first = data[len(data) // 3]
            extra = first + b","  # one field more than the header
            bad_date = b"not-a-date" + data[(2 * len(data)) // 3][27:]
            data.insert(len(data) // 3 + 1, extra)
            data.insert((2 * len(data)) // 3 + 1, bad_date)
        if changes.get("empty_month"):
            data = []
        if changes.get("drop_field") or changes.get("new_field") or changes.get("retype_field"):
            header, data = _column_faults(header, data, changes, field)
        body = b"\r\n".join(header + data) + (b"\r\n" if trailer is not None else b"")
        if kind == "zip":
            body = build_zip(f"SR{year}.csv", body, self.dataset.last_modified_dt(year))
        return body, etag_for(body)

    # ------------------------------------------------------------ configuration over HTTP

    def configure(self, config: dict) -> dict:
        known = {"rows_per_year", "late_edits", "resource_format", "current_through", "date_quirks", "prebuild",
                 "size_policy", "location_quirks"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown toronto_311 config key(s) {sorted(unknown)}; known: {sorted(known)}")
        ds = self.dataset
        result: dict = {}
        if "resource_format" in config:
            self.resource_format = self._check_format(config["resource_format"])
        if "size_policy" in config:
            self.size_policy = self._check_policy(config["size_policy"])
        if "rows_per_year" in config:
            ds.set_rows_per_year(config["rows_per_year"])
        if "current_through" in config:
            ds.set_current_through(config["current_through"])
        if "date_quirks" in config:
            ds.set_date_quirks(bool(config["date_quirks"]))
        if "location_quirks" in config:
            ds.set_location_quirks(bool(config["location_quirks"]))
        if "late_edits" in config:
            edits = config["late_edits"]
            edits = edits if isinstance(edits, list) else [edits]
            done = []
            for edit in edits:
                if not isinstance(edit, dict) or "month" not in edit:
                    raise ValueError('late_edits needs {"month": "YYYY-MM", "n": N} (year optional)')
                month = edit["month"]
                year = edit.get("year")
                if year is None:
                    if not isinstance(month, str):
                        raise ValueError("late_edits: give year with a numeric month")
                    year = int(month[:4])
                rows = ds.apply_late_edits(int(year), month, int(edit.get("n", 1)))
                done.append({"year": int(year), "month": month, "n": len(rows), "rows": rows,
                             "last_modified": ds.last_modified(int(year))})
            result["late_edits"] = done
        if config.get("prebuild"):
            for year in ds.years():
                ds.file(year, self.kind())
        return {**self.describe(), **result}

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "package": self.package_name,
            "package_id": self.package_id,
            "seed": ds.seed,
            "rows_per_year": ds.rows_per_year,
            "current_through": ds.current_through,
            "date_quirks": ds.date_quirks,
            "location_quirks": ds.location_quirks,
            "resource_format": self.resource_format,
            "size_policy": self.size_policy,
            "external_years": list(self.external_years),
            "years": [ds.years()[0], ds.years()[-1]],
            "last_modified": {str(y): ds.last_modified(y) for y in ds.years()},
            "edited_months": ds.late_edits(),
        }

    def reset_data(self) -> None:
        self.resource_format, self.size_policy = self._initial
        self.dataset.reset()


NEW_COLUMN = "Service Request Location"  # the contract's possible newer schema names it


def _column_faults(header: list[bytes], data: list[bytes], changes: dict, field: str | None):
    """drop_field / new_field / retype_field over the CSV lines (latin-1, CRLF, minimal quoting)."""
    import csv
    import io

    def split(line: bytes) -> list[str]:
        return next(csv.reader([line.decode("latin-1")]), [])

    def join(values: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(values)
        return out.getvalue().encode("latin-1")

    names = split(header[0])
    rows = [split(line) for line in data]
    if changes.get("retype_field"):
        name = field or names[0]
        if name in names:
            at = names.index(name)
            for row in rows:
                value = row[at] if at < len(row) else ""
                if len(value) >= 19 and value[10] == " ":
                    row[at] = value[:10] + "T" + value[11:19] + "." + (value[20:23] or "000").ljust(3, "0")
    if changes.get("new_field"):
        postal = names.index("First 3 Chars of Postal Code") if "First 3 Chars of Postal Code" in names else None
        names = names + [NEW_COLUMN]
        rows = [row + [row[postal] if postal is not None and postal < len(row) else ""] for row in rows]
    if changes.get("drop_field"):
        name = field or "Ward"
        if name in names:
            at = names.index(name)
            names = names[:at] + names[at + 1:]
            rows = [row[:at] + row[at + 1:] for row in rows]
    return [join(names)], [join(row) for row in rows]


def _damaged(data: bytes, truncate: int, corrupt: int) -> bytes:
    """truncate_archive (the first 60 %) and corrupt_archive (64 garbage bytes in the middle)."""
    if corrupt:
        middle = len(data) // 2
        data = data[:middle] + bytes((0xA5 ^ i) & 0xFF for i in range(64)) + data[middle + 64:]
    if truncate:
        data = data[: len(data) * 3 // 5]
    return data


def _with_duplicate(data: list[bytes]) -> list[bytes]:
    """The first data row again, an hour later (same month), at its sorted place."""
    first = data[0]
    try:
        when = _dt.datetime.strptime(first[:19].decode(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return data + [first]
    later = when + _dt.timedelta(hours=1)
    if later.month != when.month:
        later = when
    stamp = later.strftime("%Y-%m-%d %H:%M:%S").encode() + first[19:27]
    dup = stamp + first[27:]
    index = next((i for i in range(1, len(data)) if data[i][:27] > stamp), len(data))
    return data[:index] + [dup] + data[index:]


# ---------------------------------------------------------------- the CKAN service


class CkanApi:
    """The CKAN service: any number of packages (Toronto 311 today)."""

    name = "ckan"

    def __init__(self) -> None:
        self.packages: list = []
        self._server_url = ""

    def add_package(self, package) -> None:
        self.packages.append(package)

    def add_toronto(self, dataset: Toronto311Dataset, **kwargs) -> TorontoCkanPackage:
        package = TorontoCkanPackage(dataset, **kwargs)
        self.add_package(package)
        return package

    def install(self, server) -> None:
        self._server_url = server.url
        for prefix in ACTION_PREFIXES:
            server.add_route(prefix, self.handle_action, methods=("GET", "POST"))
        server.add_route(DOWNLOAD_PREFIX, self.handle_download, faultable=True, processing_body=b"")
        server.add_route(EXTERNAL_PREFIX, self.handle_external, faultable=True, processing_body=b"")
        for package in self.packages:
            self.register_config(server, package)

    @staticmethod
    def register_config(server, package) -> None:
        server.add_config_handler(package.name, package.configure, package.describe)
        server.add_data_reset_hook(package.reset_data)

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self._server_url

    # ------------------------------------------------------------ /api/3/action/<action>

    def handle_action(self, request: Request) -> Response:
        base = self._base(request)
        prefix = next(p for p in ACTION_PREFIXES if request.path.startswith(p))
        action = request.path[len(prefix):].strip("/")
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
            return ckan_error(base, action, 404, {"__type": "Not Found Error",
                                                  "message": "Not found: Resource was not found."})
        return ckan_error(base, action, 400, {"__type": "Bad request",
                                              "message": f"Bad request - Action name not known: {action}"})

    # ------------------------------------------------------------ downloads

    def handle_download(self, request: Request) -> Response:
        parts = request.path[len(DOWNLOAD_PREFIX):].split("/")
        # <package id>/resource/<resource id>/download/<file name>
        if len(parts) != 5 or parts[1] != "resource" or parts[3] != "download":
            return _not_found_page("Resource not found")
        package = next((p for p in self.packages if p.matches(parts[0])), None)
        if package is None:
            return _not_found_page("Dataset not found")
        if parts[2] == README_ID:
            return _not_found_page("The readme workbook is not replayed")
        year = package.year_for_resource(parts[2])
        if year is None or year in package.external_years:
            return _not_found_page("Resource not found")
        kind = parts[4].rsplit(".", 1)[-1].lower()
        if kind not in ("zip", "csv"):
            return _not_found_page("Resource data not found")
        return self._serve(request, package, year, kind)

    def handle_external(self, request: Request) -> Response:
        name = request.path[len(EXTERNAL_PREFIX):]
        match = re.fullmatch(r"(?i)sr(\d{4})\.(zip|csv)", name)
        for package in self.packages:
            if match and int(match.group(1)) in package.external_years \
                    and int(match.group(1)) in package.dataset.years():
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
                    since = since.replace(tzinfo=_dt.timezone.utc)
                if modified.replace(microsecond=0, tzinfo=_dt.timezone.utc) <= since:
                    return Response(304, b"", headers, content_type=content_type)
            except (TypeError, ValueError, IndexError):
                pass

        if range_header and self._if_range_ok(request.headers.get("if-range"), etag, modified):
            parsed = parse_range(range_header, len(data))
            if parsed == "unsatisfiable":
                return Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"},
                                content_type=content_type)
            if parsed is not None:
                start, end = parsed
                return Response(206, data[start:end + 1],
                                {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"},
                                content_type=content_type)
        return Response(200, data, headers, content_type=content_type, data_page=True)

    @staticmethod
    def _if_range_ok(if_range: str | None, etag: str, modified: _dt.datetime) -> bool:
        if if_range is None:
            return True
        value = if_range.strip()
        if value.startswith('"') or value.startswith("W/"):
            return value == etag
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return False
        return when == modified.replace(microsecond=0, tzinfo=_dt.timezone.utc)


# ---------------------------------------------------------------- factory


def install_toronto(server, dataset: Toronto311Dataset | None = None, **package_kwargs) -> Toronto311Dataset:
    """Create the Toronto 311 dataset (unless given) and serve it over the CKAN API on ``server``.

    Reuses an installed :class:`CkanApi` if the server has one. Returns the dataset."""
    dataset = dataset if dataset is not None else Toronto311Dataset()
    api = server.apis.get(CkanApi.name)
    if isinstance(api, CkanApi):
        package = api.add_toronto(dataset, **package_kwargs)
        api.register_config(server, package)
    else:
        api = CkanApi()
        api.add_toronto(dataset, **package_kwargs)
        server.install(api)
    return dataset

