"""SRWR (Scottish Road Works Register) export API for the replay server.

Owns both the *data* (deterministic, generated: no SRWR CSV rows exist in any public repository,
contract *Volumes*) and the two-step export API (``shared/contracts/street_manager.md``, SRWR)::

    GET /export/api/v1/file/{identifier}.zip  -> 200 JSON {"url": "<pre-signed URL>"}
    GET /export/api/v1/daily                  -> 200 JSON {"url": ...} (the latest day file)
    GET <pre-signed URL>                      -> 200 application/zip, one headerless CSV

``identifier`` is a past year (``2023``), a month of the current year as an upper-case three-letter
code (``MAR``) or a day of the current month as two digits (``01``). "Current" follows the
replay's *today* (configurable; default the real date in UTC). What exists:

- a year ``Y`` with ``FIRST_YEAR <= Y < today.year``;
- a month code of the current year for a month that has ended (``JAN`` .. the month before
  today's; the current month is covered by day files only: the replay's choice, the contract is
  silent);
- a day ``DD`` of the current month before today (a day file appears after the day).

Anything else (an unknown or lower-case identifier, a future period) is a 404 with a small JSON
body: the real API's error behaviour is not documented.

**Pre-signed URLs** look like S3 SigV4 query signing on this same server
(``/srwr-exports/{identifier}.zip?X-Amz-Algorithm=...&X-Amz-Date=...&X-Amz-Expires=...&
X-Amz-Signature=...``). The signature is an HMAC over the path, the date and the lifetime; a
tampered or missing signature is a 403 ``SignatureDoesNotMatch``, an expired one a 403
``AccessDenied`` ("Request has expired"), with S3's XML error body. The URL lifetime is not
documented (contract: fetch it right away, never cache it); here it is ``url_ttl_seconds``. The
download answers ``ETag`` (MD5 of the body, S3 style), ``Last-Modified``, ``Content-Length``,
``Accept-Ranges`` and one byte range (206/416); ``HEAD`` is not offered (an S3 URL pre-signed for
GET does not accept HEAD either). The download route is ``faultable``: the core's ``status_*``, ``delay``
and ``reset_mid_page`` apply to it (step 1 is not faultable).

**Fault switches this module implements** (``POST /_replay/faults``), each taken by the next n
*full* downloads (not while a ``reset_mid_page`` is pending, so the download that a reset cuts
is not the faulted one)::

    malformed_row     two broken lines for the file's first activity: a ``007`` cut to six
                      fields and an ``008`` whose start date is ``not-a-date``
    empty_month       the zip holds the CSV with no line at all
    drop_field        one column is gone from every record of one type: the fields after it move
                      left, as in a headerless CSV they would (``fault_options.drop_field``
                      ``{"record_type": "001", "position": 5}`` by default: the activity's
                      promoter id)
    new_field         every record gains a trailing field the contract lacks
    retype_field      the ``008`` dates and times change format: ``DD/MM/YYYY`` and ``HHMM``
                      instead of ``YYYY-MM-DD`` and ``HH:MM`` (in a CSV every value is text; a
                      type change shows as a new format)
    truncate_archive  the zip ends at 60 % of its bytes, inside the CSV member (a complete HTTP
                      response of a truncated file)
    corrupt_archive   16 bytes in the middle of the zip (the CSV's deflate data) overwritten

While one is pending, a ranged ``GET`` (the probe's first byte) already describes the faulted file
(its bytes, ``ETag`` and length) without taking it, as it would if SRWR had published that file.
The export API needs no credential (contract), so the core's ``status_401`` has no SRWR meaning
(it answers the core's 401 on step 2); the credential-like thing here is the pre-signed URL, whose
expiry is ``expire_next_urls`` (S3's 403 ``AccessDenied``, "Request has expired").

**The file.** One CSV member named ``{identifier}.csv``, UTF-8, CRLF, no header, record type in
``row[1]`` and the activity id in ``row[2]`` on every line (contract). An activity is written as
``001``, then ``007`` + ``008`` per phase, ``010`` sites, one ``099`` district, and sometimes a line
of a record type the decoder does not know (``002``, ``036``, ``041``: listed by the contract's
consumer but undecoded; ``555``: in no list). Only the positions the contract documents carry
values; the rest are empty, except ``row[0]`` (undocumented), which the replay fills with the
line's ordinal within its activity. Record widths (``RECORD_WIDTHS``) are the replay's choice.
Codes are two digits from the contract's lists; with ``one_digit_share`` a code below 10 is
written with one digit (``6`` for ``06``; contract quirk). Dates are ``YYYY-MM-DD`` and times
``HH:MM`` (the real formats are not documented). A share of activities (``undated_share``) has no
``008`` (no undertaker phase: works by a roads authority, an assumption), so a client cannot date
them.

An activity is listed in the month it is generated for; its first phase starts that month, except
for a share ``late_start_share`` (default 0) whose works start 1 to 75 days after the month ends
(the real files list such activities: about a third of a month file's, issue 14). A year file is
its twelve months in order, a month file one month, a day file the activities of the current
month listed that day. Every month is generated from ``(seed, year, month)`` alone, so a late edit in one month
leaves every other month unchanged.

**Watermarks.** A file's ``Last-Modified`` is 03:00 UTC on the day after its period (published
overnight) plus one minute per late edit in its months; its ``ETag`` changes with its bytes.

Configuration (``POST /_replay/config``), section ``srwr``::

    {"activities_per_month": 120}      activities generated per month (clears late edits)
    {"today": "2026-11-23"}           the replay's today (null: the real date)
    {"late_edits": {"month": "2023-05", "n": 3}}   (or a list) change n activities of a month
    {"url_ttl_seconds": 300}          lifetime of a pre-signed URL
    {"expire_next_urls": 2}           the next n pre-signed URLs are issued already expired
    {"one_digit_share": 0.25, "undated_share": 0.03, "unknown_share": 0.15, "late_start_share": 0.0}
    {"fault_options": {"drop_field": {"record_type": "008", "position": 20}}}
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import threading
import time
from urllib.parse import quote, urlencode

from civic_pipelines.replay.ckan import http_date
from civic_pipelines.replay.config_values import late_edit_list, whole_number
from civic_pipelines.replay.http_stream import bytes_answer
from civic_pipelines.replay.server import Request, Response, check_config_keys, json_response
from civic_pipelines.replay.srwr_data import (  # noqa: F401 - re-exported: the names' old import path
    COUNCILS,
    DEFAULT_ACTIVITIES,
    DEFAULT_DROP,
    DEFAULT_SEED,
    FIRST_YEAR,
    MODULE_FAULTS,
    MONTH_CODES,
    NEW_FIELD_VALUE,
    PROMOTERS,
    RECORD_WIDTHS,
    SITE_LOCATIONS,
    STATUSES,
    STREETS,
    TRAFFIC_MANAGEMENT,
    UNKNOWN_TYPES,
    WORK_CATEGORIES,
    SrwrDataset,
)

API_PREFIX = "/export/api/v1/"
DOWNLOAD_PREFIX = "/srwr-exports/"
_SECRET = b"civic-replay-srwr"
# config keys: the dataset's shares of odd records, and the API's signed-URL settings
_SHARES = ("one_digit_share", "undated_share", "unknown_share", "late_start_share")
_URL_SETTINGS = ("url_ttl_seconds", "expire_next_urls")

# ---------------------------------------------------------------- the export API


def _not_found(identifier: str) -> Response:
    return json_response(404, {"error": "Not Found", "message": f"No export file for identifier {identifier!r}"})


def _s3_error(code: str, message: str, **extra) -> Response:
    parts = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"{parts}<RequestId>REPLAY</RequestId></Error>"
    ).encode()
    return Response(403, body, {}, content_type="application/xml")


def _amz_date(moment: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(moment))


def _signature(path: str, amz_date: str, expires: str) -> str:
    return hmac.new(_SECRET, f"GET\n{path}\n{amz_date}\n{expires}".encode(), hashlib.sha256).hexdigest()


class SrwrApi:
    """The export API over a :class:`SrwrDataset`."""

    name = "srwr"

    def __init__(self, dataset: SrwrDataset, url_ttl_seconds: int = 300) -> None:
        self.dataset = dataset
        self._initial_ttl = url_ttl_seconds
        self.url_ttl_seconds = url_ttl_seconds
        self.expire_next_urls = 0
        self.issued = 0
        self.fault_options: dict = {}
        self._lock = threading.Lock()
        self._server_url = ""

    def install(self, server) -> None:
        self._server_url = server.url
        server.add_route(API_PREFIX, self.handle_api)
        server.add_route(DOWNLOAD_PREFIX, self.handle_download, faultable=True, processing_body=b"")
        server.add_config_handler(self.name, self.configure, self.describe)
        server.add_data_reset_hook(self.reset_data)
        server.state.add_reset_hook(self.reset_switches)

    def reset_switches(self) -> None:
        """Cleared by every ``/_replay/reset`` (like the core's fault switches)."""
        with self._lock:
            self.expire_next_urls = 0

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self._server_url

    # ------------------------------------------------------------ step 1

    def presign(self, base: str, identifier: str) -> str:
        with self._lock:
            expired = self.expire_next_urls > 0
            if expired:
                self.expire_next_urls -= 1
            self.issued += 1
            ttl = self.url_ttl_seconds
        moment = time.time() - (ttl + 60 if expired else 0)
        amz_date = _amz_date(moment)
        path = f"{DOWNLOAD_PREFIX}{identifier}.zip"
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"REPLAYKEY/{amz_date[:8]}/eu-west-2/s3/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(ttl),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": _signature(path, amz_date, str(ttl)),
        }
        return f"{base}{path}?{urlencode(query, quote_via=quote)}"

    def handle_api(self, request: Request) -> Response:
        rest = request.path[len(API_PREFIX) :]
        base = self._base(request)
        if rest.rstrip("/") == "daily":
            today = self.dataset.today
            if today.day == 1:
                return _not_found("daily")
            return json_response(200, {"url": self.presign(base, f"{today.day - 1:02d}")})
        if not rest.startswith("file/") or not rest.endswith(".zip"):
            return json_response(404, {"error": "Not Found", "message": f"No route for {request.path}"})
        identifier = rest[len("file/") : -len(".zip")]
        if self.dataset.resolve(identifier) is None:
            return _not_found(identifier)
        return json_response(200, {"url": self.presign(base, identifier)})

    # ------------------------------------------------------------ step 2

    def check_signature(self, request: Request) -> Response | None:
        amz_date = request.param("X-Amz-Date")
        expires = request.param("X-Amz-Expires")
        signature = request.param("X-Amz-Signature")
        if not (amz_date and expires and signature):
            return _s3_error(
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            )
        if not hmac.compare_digest(signature, _signature(request.path, amz_date, expires)):
            return _s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            signed_at = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.UTC)
            lifetime = int(expires)
        except ValueError:
            return _s3_error("AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed")
        now = _dt.datetime.now(_dt.UTC)
        if now > signed_at + _dt.timedelta(seconds=lifetime):
            return _s3_error(
                "AccessDenied",
                "Request has expired",
                **{
                    "X-Amz-Expires": lifetime,
                    "Expires": (signed_at + _dt.timedelta(seconds=lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
        return None

    def handle_download(self, request: Request) -> Response:
        name = request.path[len(DOWNLOAD_PREFIX) :]
        denied = self.check_signature(request)
        if denied is not None:
            return denied
        identifier = name[: -len(".zip")] if name.endswith(".zip") else None
        if identifier is None or self.dataset.resolve(identifier) is None:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                b"<Message>The specified key does not exist.</Message></Error>"
            )
            return Response(404, body, {}, content_type="application/xml")
        range_header = request.headers.get("range")
        data = None
        faults = request.state.faults
        if range_header:  # the probe: the file the next full download gets, not taking the faults
            pending = tuple(name for name in MODULE_FAULTS if faults.get(name))
        elif faults.get("reset_mid_page") == 0:
            pending = tuple(name for name in MODULE_FAULTS if faults.take(name))
        else:
            pending = ()
        if pending:
            data, etag, modified = self.dataset.faulted_file(identifier, pending, self.fault_options.get("drop_field"))
        if data is None:
            data, etag, modified = self.dataset.file(identifier)
        headers = {"ETag": etag, "Last-Modified": http_date(modified), "Accept-Ranges": "bytes"}
        return bytes_answer(data, headers, "application/zip", range_header)

    # ------------------------------------------------------------ configuration

    def configure(self, config: dict) -> dict:
        check_config_keys(
            "srwr", config, {"activities_per_month", "today", "late_edits", "fault_options", *_SHARES, *_URL_SETTINGS}
        )
        ds = self.dataset
        result: dict = {}
        if "activities_per_month" in config:
            ds.set_activities_per_month(config["activities_per_month"])
        for name in _SHARES:
            if name in config:
                ds.set_share(name, config[name])
        if "today" in config:
            ds.set_today(config["today"])
        for name in _URL_SETTINGS:
            if name in config:
                value = whole_number(name, config[name])
                with self._lock:
                    setattr(self, name, value)
        if "fault_options" in config:
            options = dict(config["fault_options"] or {})
            if set(options) - {"drop_field"}:
                raise ValueError("fault_options knows drop_field only")
            drop = options.get("drop_field")
            if drop is not None:
                drop = {**DEFAULT_DROP, **drop}
                if set(drop) != set(DEFAULT_DROP) or not isinstance(drop["position"], int) or drop["position"] < 3:
                    raise ValueError('fault_options.drop_field is {"record_type": "001", "position": n >= 3}')
                options["drop_field"] = drop
            with self._lock:
                self.fault_options = options
        if "late_edits" in config:
            done = []
            for edit in late_edit_list(config["late_edits"]):
                if not isinstance(edit["month"], str) or len(edit["month"]) != 7:
                    raise ValueError('late_edits needs {"month": "YYYY-MM", "n": N}')
                year, month = int(edit["month"][:4]), int(edit["month"][5:7])
                ids = ds.apply_late_edits(year, month, int(edit.get("n", 1)))
                done.append({"month": edit["month"], "n": len(ids), "activity_ids": ids})
            result["late_edits"] = done
        return {**self.describe(), **result}

    def describe(self) -> dict:
        urls = {name: getattr(self, name) for name in _URL_SETTINGS}
        return {**self.dataset.describe(), **urls, "urls_issued": self.issued, "fault_options": self.fault_options}

    def reset_data(self) -> None:
        with self._lock:
            self.url_ttl_seconds = self._initial_ttl
            self.expire_next_urls = 0
            self.issued = 0
            self.fault_options = {}
        self.dataset.reset()


def install_srwr(server, dataset: SrwrDataset | None = None, **api_kwargs) -> SrwrDataset:
    """Serve the SRWR export API on ``server``; returns the dataset (``server.srwr``)."""
    dataset = dataset if dataset is not None else SrwrDataset()
    server.install(SrwrApi(dataset, **api_kwargs))
    return dataset
