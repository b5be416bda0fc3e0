"""ArcGIS REST feature-service endpoints for the replay server, for any dataset served as hosted layers.

A *layer family* is one dataset served as one hosted layer per year, under the real path after
the host, so a client only swaps the base URL::

    /afSMGVsC7QlRK1kZ/arcgis/rest/services/Public_311_{year}/FeatureServer/0

(``/ArcGIS/`` is accepted as well). For each year of the dataset it serves

    GET  <service>?f=json|pjson             service description (``layers``, ``maxRecordCount``)
    GET  <layer>?f=json|pjson               layer metadata: ``maxRecordCount``, ``editingInfo``
                                            (``lastEditDate``, ``schemaLastEditDate``,
                                            ``dataLastEditDate``), ``fields``, ``objectIdField`` ...
    GET|POST <layer>/query                  ``where``, ``outFields``, ``orderByFields``,
                                            ``resultOffset``, ``resultRecordCount``,
                                            ``returnCountOnly``, ``returnIdsOnly``, ``objectIds``,
                                            ``returnGeometry``, ``outSR`` (4326 or 102100/3857), ``f``

Errors use ArcGIS's envelope on HTTP 200: ``{"error": {"code": 400, "message": ..., "details":
[...]}}`` (a bad ``where``, an unknown field, a bad parameter, an unknown service/layer). The reason
the replay rejected a request is also in the ``X-Replay-Error`` header (the body stays ArcGIS's).

Faults. The core's ``Faults`` has a fixed list, so the query endpoint applies the generic ones
itself, and only to ``/query`` requests (layer metadata is never faulted): ``status_429``
(``Retry-After``, ArcGIS's error envelope), ``status_503``, ``status_500``, ``status_502`` (a
proxy's HTML page), ``status_401`` (as ArcGIS answers a bad or expired token: HTTP 200 with the
envelope code 498 ``Invalid token.``), ``delay``, ``reset_mid_page``, ``malformed_row`` (a
feature without OBJECTID and one whose OPENEDDATETIME is ``"not-a-date"``), ``duplicate_row``
(the page's first feature again with a LastUpdateDate one hour later), and on feature pages:
``empty_month`` (no features, no ``exceededTransferLimit``), ``page_overlap`` (offset paging
while features are inserted ahead of the cursor: the page at a non-zero ``resultOffset`` and every
later page of the same query start :data:`OVERLAP_ROWS` features early, until the query starts
again at offset 0), ``drop_field`` (the attribute ``field``, default the layer's date field, gone
from the features and the answer's ``fields``), ``new_field`` (an editor-tracking ``EditDate``
date attribute, as when a publisher turns editor tracking on) and ``retype_field`` (the attribute
``field``, default the first numeric attribute that is not the object id, sent as a JSON string
and declared ``esriFieldTypeString``). ``status_202`` does not apply to ArcGIS. The
ArcGIS-specific ``arcgis_error`` (the next n queries answer the error envelope on HTTP 200) is set
with ``POST /_replay/config {"arcgis": {"arcgis_error": n}}`` and cleared by ``/_replay/reset``.

Configuration per family (``POST /_replay/config {"<family name>": {...}}``): ``late_edits``
(``{"month": "2024-02", "n": 5}`` or a list), ``rows_per_month``, ``max_record_count``,
``accept_epoch_dates``, ``first_year``, ``last_year``, ``layer_time_zone`` (the publisher's rule
for filing a request in a year's layer: ``UTC``, the default, by its UTC year; an IANA zone such as
``America/Chicago`` by its local year, so a UTC month at a year edge spans two layers).

``where`` subset (field names case-insensitive): comparisons ``= <> != < <= > >=``, ``AND``,
``OR``, ``NOT``, parentheses, ``IS [NOT] NULL``, ``[NOT] BETWEEN .. AND ..``, ``[NOT] IN (..)``,
``[NOT] LIKE '..'``; literals: numbers, ``'strings'``, ``DATE 'YYYY-MM-DD[ HH:MM:SS]'``,
``TIMESTAMP 'YYYY-MM-DD HH:MM:SS[.fff]'`` (UTC), ``CURRENT_TIMESTAMP``, ``CURRENT_DATE``,
``INTERVAL 'n' DAY|HOUR|MINUTE|SECOND``, ``+``/``-`` arithmetic, ``NULL``. Comparing a date field
with a bare number (epoch ms) is rejected unless the family's ``accept_epoch_dates`` is on.
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl

import orjson

from civic_pipelines.replay.arcgis_layers import CURRENT_VERSION, DEFAULT_MAX_RECORD_COUNT, NEW_FIELD, LayerFamily  # noqa: F401 - re-exported: the names' old import path
from civic_pipelines.replay.arcgis_where import (  # noqa: F401 - re-exported: the names' old import path
    CHECK_PARAMETERS,
    INVALID_QUERY,
    ArcGisError,
    Where,
    WhereError,
    error_envelope,
    parse_date_literal,
)
from civic_pipelines.replay.page_overlap import OVERLAP_ROWS  # noqa: F401 - re-exported: its old import path
from civic_pipelines.replay.server import Request, Response, check_config_keys, fault_response, json_response

ARCGIS_FAULT_MESSAGES = {
    400: "Unable to complete operation.",
    500: "Error performing query operation",
    503: "Service Unavailable",
    504: "Your request has timed out.",
}


class _NoProcessing:
    """The core's faults without ``status_202``: ArcGIS has no "still processing" answer."""

    def __init__(self, faults) -> None:
        self._faults = faults

    def take(self, name: str, n: int = 1) -> int:
        return 0 if name == "status_202" else self._faults.take(name, n)

    def __getattr__(self, name):
        return getattr(self._faults, name)


def _arcgis_fault_answer(name: str, response: Response) -> Response:
    """The core's HTTP faults in the shapes ArcGIS Online answers them."""
    if name == "status_429":
        return json_response(
            429,
            error_envelope(429, "Too many requests. Please try again later."),
            {"Retry-After": response.headers["Retry-After"]},
        )
    if name == "status_503":
        return json_response(503, error_envelope(503, "Service Unavailable"))
    if name == "status_500":
        return json_response(500, error_envelope(500, ARCGIS_FAULT_MESSAGES[500]))
    if name == "status_401":  # an expired or revoked token: HTTP 200 and code 498, as ArcGIS sends it
        return json_response(200, error_envelope(498, "Invalid token.", ["Invalid token."]))
    return response  # 502: the proxy's HTML page


# ---------------------------------------------------------------- the service


class _ArcGisFaults:
    """ArcGIS-only fault counters (the core's list is fixed): ``arcgis_error``."""

    NAMES = ("arcgis_error",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {name: 0 for name in self.NAMES}
        self.fired = {name: 0 for name in self.NAMES}
        self.error_code = 500

    def take(self, name: str) -> bool:
        with self._lock:
            if self.counts[name] > 0:
                self.counts[name] -= 1
                self.fired[name] += 1
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            for name in self.NAMES:
                self.counts[name] = self.fired[name] = 0
            self.error_code = 500

    def configure(self, config: dict) -> dict:
        known = set(self.NAMES) | {"arcgis_error_code"}
        check_config_keys("arcgis", config, known)
        with self._lock:
            for name in self.NAMES:
                if name in config:
                    value = config[name]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name} needs a count >= 0")
                    self.counts[name] = value
            if "arcgis_error_code" in config:
                code = config["arcgis_error_code"]
                if code not in ARCGIS_FAULT_MESSAGES:
                    raise ValueError(f"arcgis_error_code must be one of {sorted(ARCGIS_FAULT_MESSAGES)}")
                self.error_code = code
        return self.describe()

    def describe(self) -> dict:
        with self._lock:
            return {**self.counts, "arcgis_error_code": self.error_code, "fired": dict(self.fired)}


class ArcGisApi:
    """The ArcGIS REST service: any number of layer families, each a dataset served one layer per
    year. ``add_layer_family(dataset, path_pattern)`` then ``server.install(api)``."""

    name = "arcgis"

    def __init__(self) -> None:
        self.families: list[LayerFamily] = []
        self.faults = _ArcGisFaults()
        self._installed = False

    def add_layer_family(self, dataset, path_pattern: str, **options) -> LayerFamily:
        """Serve ``dataset`` under ``path_pattern``; ``options`` are :class:`LayerFamily`'s
        (``name``, ``max_record_count``, ``accept_epoch_dates``)."""
        if self._installed:
            raise RuntimeError("add layer families before installing the API")
        family = LayerFamily(dataset, path_pattern, **options)
        self.families.append(family)
        return family

    def family(self, name: str) -> LayerFamily:
        return next(f for f in self.families if f.name == name)

    def install(self, server) -> None:
        prefixes = sorted({p for family in self.families for p in family.prefixes})
        for prefix in prefixes:
            # not ``faultable``: the core would fault metadata requests too; /query applies them here
            server.add_route(prefix, self.handle, methods=("GET", "POST"))
        for family in self.families:
            server.add_config_handler(family.name, family.configure, family.describe)
            server.add_data_reset_hook(family.reset_data)
        server.add_config_handler("arcgis", self.faults.configure, self.faults.describe)
        server.state.add_reset_hook(self.faults.clear)
        for family in self.families:
            server.state.add_reset_hook(family.page_overlap.clear)
        self._installed = True

    # ------------------------------------------------------------ handler

    def handle(self, request: Request) -> Response:
        params = _params(request)
        fmt = params.get("f", "").strip().lower()
        for family in self.families:
            hit = family.match(request.path)
            if hit is None:
                continue
            year, rest = hit
            if rest and rest[-1] == "":
                rest = rest[:-1]
            if not family.dataset.has_year(year):
                return _invalid_url(fmt, f"no layer for year {year}")
            if not rest:
                return self._document(fmt, lambda: family.service_json(year))
            if rest[0] != str(family.layer_id) or len(rest) > 2 or (len(rest) == 2 and rest[1].lower() != "query"):
                return _invalid_url(fmt, f"no such layer or operation: {'/'.join(rest)}")
            if len(rest) == 1:
                return self._document(fmt, lambda: family.layer_json(year))
            return self._query(family, year, params, fmt, request)
        return _invalid_url(fmt, f"no ArcGIS service at {request.path}")

    def _document(self, fmt: str, build) -> Response:
        if fmt not in ("json", "pjson"):
            return _format_response(fmt)
        return _render(build(), fmt)

    def _query(self, family: LayerFamily, year: int, params: dict, fmt: str, request: Request) -> Response:
        faults = request.state.faults
        answer = fault_response(_NoProcessing(faults), on_fault=_arcgis_fault_answer)
        if answer is not None:
            return answer
        if fmt not in ("json", "pjson"):
            return _format_response(fmt)
        if self.faults.take("arcgis_error"):
            code = self.faults.error_code
            return _render(
                error_envelope(code, ARCGIS_FAULT_MESSAGES[code]), fmt, {"X-Replay-Error": "fault: arcgis_error"}
            )
        try:
            document, data_page = family.query(year, params, faults)
        except ArcGisError as exc:
            return _render(
                error_envelope(exc.code, exc.message, exc.details), fmt, {"X-Replay-Error": _header_safe(exc.reason)}
            )
        response = _render(document, fmt, data_page=data_page)
        if data_page and faults.take("reset_mid_page"):
            response.abort_half = True
        return response


def _params(request: Request) -> dict[str, str]:
    """Query-string and form-body parameters, names lower-cased (ArcGIS REST ignores their case)."""
    pairs = list(request.params)
    if request.method == "POST" and request.body:
        content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
        if "application/x-www-form-urlencoded" in content_type:
            pairs.extend(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return {key.lower(): value for key, value in pairs}


def _render(document: dict, fmt: str, headers: dict | None = None, data_page: bool = False) -> Response:
    if fmt == "pjson":
        return Response(
            200,
            orjson.dumps(document, option=orjson.OPT_INDENT_2),
            headers or {},
            content_type="text/plain; charset=utf-8",
            data_page=data_page,
        )
    return Response(200, orjson.dumps(document), headers or {}, data_page=data_page)


def _invalid_url(fmt: str, reason: str) -> Response:
    return _render(
        error_envelope(400, "Invalid URL", ["Invalid URL"]),
        "pjson" if fmt == "pjson" else "json",
        {"X-Replay-Error": _header_safe(reason)},
    )


def _format_response(fmt: str) -> Response:
    if fmt in ("", "html"):  # the REST services directory: a browser page, not JSON
        body = b"<html><head><title>ArcGIS REST Services Directory</title></head><body>replay</body></html>"
        return Response(
            200, body, {"X-Replay-Error": "f=json or f=pjson expected"}, content_type="text/html; charset=utf-8"
        )
    return _render(
        error_envelope(400, "Unable to complete operation.", ["Invalid format"]),
        "json",
        {"X-Replay-Error": _header_safe(f"the replay serves f=json and f=pjson, not f={fmt}")},
    )


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:300]


def __getattr__(name: str):
    # Dataset-specific names that moved beside their dataset keep this old import path.
    from civic_pipelines.replay.moved_names import moved_name

    return moved_name(__name__, name)
