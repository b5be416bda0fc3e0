"""MDS provider APIs for the replay server: several operators, each with its own MDS version,
auth mode and generated hourly data (contract ``shared/contracts/austin_mds.md``; no real MDS
record is public, so every record is generated, from the contract's field lists only).

Routes (one base URL per provider, ``{server}/mds/{provider}``)::

    POST {server}/mds-auth/{provider}/token           OAuth2 client credentials (HTTP Basic,
                                                      form grant_type=client_credentials)
    GET  {base}/trips?end_time=YYYY-MM-DDTHH          every version
    GET  {base}/status_changes?event_time=...         0.4 and 1.x
    GET  {base}/events/historical?event_time=...      2.0

**Versions.** ``0.4``: ``{"version": "0.4.1", "data": {"trips"|"status_changes": [...]}}``, not
paged (the 0.4 spec forbids paging these two endpoints), media type
``application/vnd.mds.provider+json;version=0.4``. ``1.2``: the same envelope with ``links``
(``first``/``last``/``prev``/``next``; ``next`` null on the last page), paged by ``page_size``
(the replay's choice: the contract does not say whether 1.x pages), media type
``application/vnd.mds+json;version=1.2``; its status changes have the 1.0 state model of the OMF
``provider/status_changes.json`` (``vehicle_state``, ``event_types``, ``trip_id``, with the
vehicle fields), not 0.4's ``event_type`` / ``event_type_reason``. ``2.0``: no ``data`` wrapper; trips unpaged (Voi's
example has no ``links``), events paged with ``links.next`` and ``"links": {}`` on the last page;
``last_updated``/``ttl`` are nested objects for a provider with ``voi_quirks`` (Voi's deviation).
An ``Accept`` header naming another version (or another media type) is a 406 (the replay's
choice); a missing or malformed hour parameter a 400; an hour that has not ended by the replay's
``now``, or is listed in ``late_hours``, a 404 (0.4 spec: "the requested hour has not finished
yet"). Error bodies are ``{"error", "error_description", "error_details"}``.

**Auth.** ``bearer``: a static token per provider. ``oauth2``: the token endpoint issues random
tokens that live ``token_ttl_seconds`` (``expires_in``) and, with ``token_max_uses``, serve only
that many data requests. A missing, unknown, foreign (another provider's) or expired token is a
401 with ``WWW-Authenticate: Bearer``. ``expire_tokens`` expires every token issued so far.

**Data.** Per provider and hour, from ``(seed, provider, hour)`` alone: a number of trips (ending
in the hour) and of status changes / events (in the hour) around ``trips_per_hour`` /
``events_per_hour``, by a fleet of ``fleet_size`` devices, in and around Austin (about 3 % of
points fall outside the district grid). A share ``invalid_share`` of the records is generated
schema-invalid, one way per version and endpoint (:data:`INVALID_KINDS`); ``records()`` says which.
The core's ``malformed_row`` fault adds two invalid records to the next n data pages (one without
its key field, one with an ISO text timestamp); ``status_429``/``status_5xx``/``status_401`` (a
401 ``invalid_token`` with ``WWW-Authenticate: Bearer``)/``delay``/``reset_mid_page`` fire on the
data routes, not on the token endpoints (a route of their own, ``/mds-auth/``). On the next n
data requests: ``empty_month`` answers the hour with no records (200, one page: MDS's "no data"
answer); ``page_overlap`` starts a second or later page with the previous page's last record
(a provider paging by offset while records arrive); ``drop_field`` removes ``field`` (default
the record's time: ``end_time`` for trips, ``timestamp`` / ``event_time`` for events) from every
record; ``new_field`` adds ``journey_id`` (a 2.0 telemetry field) to every record;
``retype_field`` sends ``field`` (default the trip duration, or the event battery level) as a
JSON string.

Configuration (``POST /_replay/config``), section ``mds``::

    {"now": "2024-03-01T00:00:00Z"}        the replay's clock (null: the real time)
    {"trips_per_hour": 3, "events_per_hour": 4, "page_size": 50, "fleet_size": 25}
    {"invalid_share": 0.05}                 share of generated records that break their schema
    {"late_hours": ["2024-02-10T05"]}       hours that answer 404 whatever the clock (all providers),
                                            or {"voi": [...], "bolt:events": [...]} per provider
                                            (and endpoint: trips or events)
    {"providers": {"name": {"version": "1.2", "auth": "bearer", "token": "...",
                            "client_id": "...", "client_secret": "...", "voi_quirks": false,
                            "trips_per_hour": 2}}}   add or replace providers (null removes one)
    {"token_ttl_seconds": 900, "token_max_uses": null, "expire_tokens": true}

``server.mds`` is the :class:`MdsReplay`: ``base_url(p)``, ``connection(p)`` (the
``AIRFLOW_CONN_CIVIC_MDS_<P>`` JSON for a client), ``records(p, hour)``, ``issued_tokens()``.

This module is the endpoints, tokens, paging and configuration; the providers and defaults are in
``mds_providers.py``, the record-level faults in ``mds_record_faults.py``, the records themselves
in ``mds_data.py``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
import secrets
import threading
import time
from urllib.parse import parse_qsl

from civic_pipelines.replay import horizon
from civic_pipelines.replay.config_values import whole_number
from civic_pipelines.replay.mds_data import (  # noqa: F401 - re-exported: the names' old import path
    AUSTIN,
    EVENTS_20,
    INVALID_KINDS,
    OUTSIDE,
    SALT,
    STATUS_CHANGES,
    STATUS_CHANGES_1X,
    TRIP_EVENTS,
    VEHICLE_TYPES,
    _hour_start,
    _ms,
    _uuid,
    generate_hour,
)
from civic_pipelines.replay.mds_providers import (
    DEFAULT_PROVIDERS,
    DEFAULTS,
    MEDIA,
    PAYLOAD_VERSION,
    MdsProvider,
    parse_now,
)
from civic_pipelines.replay.mds_record_faults import field_faults, malformed_records
from civic_pipelines.replay.server import Request, Response, check_config_keys, json_response

PREFIX = "/mds/"
AUTH_PREFIX = "/mds-auth/"  # token endpoints: off the data routes (as Voi's token URL is), so no data fault hits them
DEFAULT_SEED = 20240101
HOUR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
# whole-number config keys and their least values: a page holds at least one record
_COUNTS = {"trips_per_hour": 0, "events_per_hour": 0, "page_size": 1, "fleet_size": 0, "token_ttl_seconds": 0}


def _unauthorised() -> Response:
    return _error(
        401, "unauthorized", "missing, unknown or expired access token", {"WWW-Authenticate": 'Bearer realm="mds"'}
    )


def _error(status: int, error: str, description: str, headers: dict | None = None, **kwargs) -> Response:
    return json_response(
        status, {"error": error, "error_description": description, "error_details": []}, headers, **kwargs
    )


class MdsReplay:
    """The providers' APIs and their generated data."""

    name = "mds"

    def __init__(self, seed: int = DEFAULT_SEED, providers: dict | None = None, **settings) -> None:
        self.seed = seed
        self._lock = threading.RLock()
        self._initial = {"providers": providers or DEFAULT_PROVIDERS, **DEFAULTS, **settings}
        self._server_url = ""
        self.reset_data()

    # ------------------------------------------------------------ state

    def reset_data(self) -> None:
        with self._lock:
            initial = self._initial
            self.providers = {name: MdsProvider(name, config) for name, config in initial["providers"].items()}
            self.now = parse_now(initial.get("now"))
            for key in DEFAULTS:
                setattr(self, key, initial[key])
            self.late_hours: dict[str, set[str]] = {}
            self._tokens: dict[str, dict] = {}
            self._cache: dict[tuple, dict] = {}
            self.token_requests = 0

    def reset_switches(self) -> None:
        with self._lock:
            self.token_max_uses = self._initial["token_max_uses"]

    def install(self, server) -> None:
        self._server_url = server.url
        server.add_route(PREFIX, self.handle, faultable=True, processing_body=b"{}")
        server.add_route(AUTH_PREFIX, self.handle_token, methods=("GET", "POST"))
        server.add_config_handler(self.name, self.configure, self.describe)
        server.add_data_reset_hook(self.reset_data)
        server.state.add_reset_hook(self.reset_switches)

    # ------------------------------------------------------------ helpers for clients and tests

    def base_url(self, provider: str) -> str:
        return f"{self._server_url}{PREFIX}{provider}"

    def token_url(self, provider: str) -> str:
        return f"{self._server_url}{AUTH_PREFIX}{provider}/token"

    def connection(self, provider: str) -> dict:
        """The Airflow connection (JSON form) a client needs for ``provider``."""
        p = self.providers[provider]
        conn = {
            "conn_type": "http",
            "host": self.base_url(provider),
            "extra": {"mds_version": p.version, "auth": p.auth},
        }
        if p.auth == "bearer":
            conn["password"] = p.token
        elif p.auth == "oauth2":
            conn["login"], conn["password"] = p.client_id, p.client_secret
            conn["extra"]["token_url"] = self.token_url(provider)
        return conn

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def clock(self) -> _dt.datetime:
        return self.now or horizon.now()

    def available(self, provider: str, hour: str, kind: str | None = None) -> bool:
        """Whether the hour answers (it has ended by the replay's clock and is not held back, for
        every provider, this provider, or this provider's ``trips`` or ``events`` endpoint)."""
        groups = ("*", provider) + ((f"{provider}:{kind}",) if kind else ())
        if any(hour in self.late_hours.get(group, set()) for group in groups):
            return False
        return _hour_start(hour) + _dt.timedelta(hours=1) <= self.clock()

    # ------------------------------------------------------------ generation

    def records(self, provider: str, hour: str) -> dict:
        """``{"trips": [...], "events": [...], "invalid": {"trips": [i, ...], "events": [...]}}``:
        the hour's records as served (whatever the clock), and which of them are invalid."""
        with self._lock:
            key = (provider, hour, self.trips_per_hour, self.events_per_hour, self.fleet_size, self.invalid_share)
            cached = self._cache.get(key)
            if cached is None:
                if len(self._cache) > 4096:
                    self._cache.clear()
                cached = self._cache[key] = generate_hour(
                    self.providers[provider],
                    hour,
                    self.seed,
                    self.trips_per_hour,
                    self.events_per_hour,
                    self.fleet_size,
                    self.invalid_share,
                )
            return cached

    def malformed(self, p: MdsProvider, endpoint: str, hour: str) -> list[dict]:
        """The core's ``malformed_row`` fault's two records, made from the hour's first (:func:`malformed_records`)."""
        return malformed_records(p, endpoint, hour, self.records(p.name, hour)[endpoint])

    # ------------------------------------------------------------ HTTP

    def _base(self, request: Request) -> str:
        host = request.headers.get("host")
        return f"http://{host}" if host else self._server_url

    def handle(self, request: Request) -> Response:
        rest = request.path[len(PREFIX) :]
        name, _, endpoint = rest.partition("/")
        with self._lock:
            provider = self.providers.get(name)
        if provider is None:
            return _error(404, "not_found", f"no MDS provider {name!r} on this replay server")
        denied = self._authorise(provider, request)
        if denied is not None:
            return denied
        if not self._accepts(provider, request.headers.get("accept", "")):
            return _error(
                406,
                "not_acceptable",
                f"this provider serves MDS {provider.version} only "
                f"({MEDIA[provider.version]};version={provider.version})",
            )
        events_path = "events/historical" if provider.version == "2.0" else "status_changes"
        if endpoint == "trips":
            kind, parameter = "trips", "end_time"
        elif endpoint == events_path:
            kind, parameter = "events", "event_time"
        else:
            return _error(404, "not_found", f"no endpoint {endpoint!r} in MDS {provider.version}")
        hour = request.param(parameter)
        if not hour:
            return _error(400, "bad_param", f"{parameter} is required")
        if not HOUR_RE.match(hour):
            return _error(400, "bad_param", f"{parameter} must be YYYY-MM-DDTHH, not {hour!r}")
        try:
            _hour_start(hour)
        except ValueError:
            return _error(400, "bad_param", f"{parameter} {hour!r} is not a valid hour")
        if not self.available(provider.name, hour, kind):
            return _error(404, "not_found", "the requested hour has not finished yet, or the data does not exist")
        records = list(self.records(provider.name, hour)[kind])
        return self._page(provider, request, kind, endpoint, parameter, hour, records)

    @staticmethod
    def _accepts(provider: MdsProvider, accept: str) -> bool:
        wanted = (MEDIA[provider.version], provider.version)
        for item in accept.split(","):
            parts = [part.strip() for part in item.split(";")]
            params = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
            if parts[0] == wanted[0] and params.get("version", "").strip() == wanted[1]:
                return True
        return False

    def _page(
        self, p: MdsProvider, request: Request, kind: str, endpoint: str, parameter: str, hour: str, records: list
    ) -> Response:
        faults = request.state.faults
        if faults.take("empty_month"):
            records = []
        pages = p.version == "1.2" or (p.version == "2.0" and kind == "events")
        size = max(1, int(self.page_size))
        page_count = max(1, -(-len(records) // size)) if pages else 1
        number = 1
        if pages:
            try:
                number = int(request.param("page", "1"))
            except ValueError:
                return _error(400, "bad_param", "page must be an integer")
            if not 1 <= number <= page_count:
                return _error(400, "bad_param", f"page {number} out of range 1..{page_count}")
            previous = records[(number - 2) * size : (number - 1) * size] if number > 1 else []
            records = records[(number - 1) * size : number * size]
            if previous and faults.take("page_overlap"):
                records = previous[-1:] + records
        records = field_faults(p, kind, records, faults)
        if faults.take("malformed_row"):
            records = records + self.malformed(p, kind, hour)
        key = {"trips": "trips", "events": "events" if p.version == "2.0" else "status_changes"}[kind]
        payload: dict = {"version": PAYLOAD_VERSION[p.version]}
        url = f"{self._base(request)}{PREFIX}{p.name}/{endpoint}"

        def link(n: int | None) -> str | None:
            # the hour matched HOUR_RE and the page is a number: nothing in them needs quoting
            return None if n is None else f"{url}?{parameter}={hour}&page={n}"

        if p.version == "2.0":
            payload[key] = records
            updated = _ms(self.clock())
            payload["last_updated"] = {"last_updated": updated} if p.voi_quirks else updated
            payload["ttl"] = {"ttl": 0} if p.voi_quirks else 0
            if kind == "events":
                payload["links"] = {"next": link(number + 1)} if number < page_count else {}
        else:
            payload["data"] = {key: records}
            if p.version == "1.2":
                payload["links"] = {
                    "first": link(1),
                    "last": link(page_count),
                    "prev": link(number - 1 if number > 1 else None),
                    "next": link(number + 1 if number < page_count else None),
                }
        response = json_response(200, payload, data_page=True)
        response.content_type = f"{MEDIA[p.version]};version={p.version}"
        return response

    # ------------------------------------------------------------ auth

    def handle_token(self, request: Request) -> Response:
        name, _, rest = request.path[len(AUTH_PREFIX) :].partition("/")
        with self._lock:
            provider = self.providers.get(name)
        if provider is None or rest != "token":
            return _error(404, "not_found", f"no token endpoint at {request.path}")
        if request.method != "POST":
            return _error(405, "method_not_allowed", "the token endpoint takes POST")
        return self._token(provider, request)

    def _token(self, p: MdsProvider, request: Request) -> Response:
        with self._lock:
            self.token_requests += 1
        if p.auth != "oauth2":
            return _error(404, "not_found", f"provider {p.name} does not issue tokens")
        header = request.headers.get("authorization", "")
        client_id = secret = None
        if header.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                pass
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if client_id != p.client_id or secret != p.client_secret:
            return _error(401, "invalid_client", "client authentication failed", {"WWW-Authenticate": "Basic"})
        token = "rpl_" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = {"provider": p.name, "expires_at": time.time() + self.token_ttl_seconds, "uses": 0}
        return json_response(200, {"access_token": token, "expires_in": self.token_ttl_seconds, "token_type": "bearer"})

    def _authorise(self, p: MdsProvider, request: Request) -> Response | None:
        if p.auth == "none":
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not token:
            return _unauthorised()
        if p.auth == "bearer":
            return None if secrets.compare_digest(token, p.token) else _unauthorised()
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None or issued["provider"] != p.name or time.time() >= issued["expires_at"]:
                return _unauthorised()
            if self.token_max_uses is not None and issued["uses"] >= self.token_max_uses:
                return _unauthorised()
            issued["uses"] += 1
        return None

    # ------------------------------------------------------------ configuration

    def configure(self, config: dict) -> dict:
        check_config_keys(
            "mds",
            config,
            {"now", *_COUNTS, "token_max_uses", "invalid_share", "late_hours", "providers", "expire_tokens"},
        )
        with self._lock:
            if "now" in config:
                self.now = parse_now(config["now"])
            for name, minimum in _COUNTS.items():
                if name in config:
                    setattr(self, name, whole_number(name, config[name], minimum))
            if "token_max_uses" in config:
                value = config["token_max_uses"]
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                    raise ValueError("token_max_uses must be an integer >= 0 or null")
                self.token_max_uses = value
            if "invalid_share" in config:
                value = config["invalid_share"]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                    raise ValueError("invalid_share must be a number between 0 and 1")
                self.invalid_share = float(value)
            if "late_hours" in config:
                value = config["late_hours"]
                groups = {"*": value} if isinstance(value, list) else value
                if not isinstance(groups, dict):
                    raise ValueError('late_hours is a list of "YYYY-MM-DDTHH" or {provider: [...]}')
                for hours in groups.values():
                    if not isinstance(hours, list) or not all(isinstance(h, str) and HOUR_RE.match(h) for h in hours):
                        raise ValueError('late_hours lists hours as "YYYY-MM-DDTHH"')
                self.late_hours = {name: set(hours) for name, hours in groups.items()}
            if "providers" in config:
                for name, settings in (config["providers"] or {}).items():
                    if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
                        raise ValueError(f"provider names are lower-case letters, digits and _: {name!r}")
                    if settings is None:
                        self.providers.pop(name, None)
                    else:
                        self.providers[name] = MdsProvider(name, settings)
            if config.get("expire_tokens"):
                for issued in self._tokens.values():
                    issued["expires_at"] = 0
            self._cache.clear()
        return self.describe()

    def describe(self) -> dict:
        with self._lock:
            return {
                "seed": self.seed,
                "now": self.clock().isoformat(),
                "now_configured": self.now is not None,
                "trips_per_hour": self.trips_per_hour,
                "events_per_hour": self.events_per_hour,
                "page_size": self.page_size,
                "fleet_size": self.fleet_size,
                "invalid_share": self.invalid_share,
                "late_hours": {k: sorted(v) for k, v in self.late_hours.items()},
                "token_ttl_seconds": self.token_ttl_seconds,
                "token_max_uses": self.token_max_uses,
                "tokens_issued": len(self._tokens),
                "token_requests": self.token_requests,
                "providers": {
                    name: {**p.describe(), "base_url": self.base_url(name)} for name, p in self.providers.items()
                },
            }


def install_mds(server, replay: MdsReplay | None = None, **kwargs) -> MdsReplay:
    """Serve the MDS provider APIs on ``server``; returns the :class:`MdsReplay` (``server.mds``)."""
    replay = replay if replay is not None else MdsReplay(**kwargs)
    server.install(replay)
    return replay


def connections_for(server_url: str, seed: int = DEFAULT_SEED) -> dict[str, dict]:
    """Provider name -> Airflow connection (JSON form) for a replay server already serving at
    ``server_url`` in another process (what ``make demo`` sets as ``AIRFLOW_CONN_CIVIC_MDS_<P>``)."""
    replay = MdsReplay(seed=seed)
    replay._server_url = server_url.rstrip("/")
    return {provider: replay.connection(provider) for provider in replay.providers}
