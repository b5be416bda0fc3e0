"""Dockless mobility: each operator's MDS ``provider`` API (trips and vehicle status changes /
events), one block per provider (``part``) and calendar month (UTC).

Owns: the provider configuration (Variable + one connection per provider), token auth, the
hourly walk of a month per MDS version, paging, "hour not finished" handling and the completion
of an incomplete block by later runs, JSON-schema validation with quarantine, normalisation of
0.4 / 1.x / 2.0 records into one trips table and one events table, and council-district
assignment. Contract: ``shared/contracts/austin_mds.md``; lake columns: ``docs/lake_contract_mds.md``.

**Providers are configuration.** :func:`parts` reads the Airflow Variable ``civic_mds_providers``
(a JSON list; default :data:`DEFAULT_PROVIDERS`, the operators the contract names). Provider ``p``
is the connection ``civic_mds_p``: its host (a full URL with its path, e.g.
``https://mds.voiapp.io/en/ZONE``) is the base URL; extras ``mds_version`` (``0.4``, ``1.x``,
``2.0``), ``auth`` (``bearer``: the token is the password; ``oauth2``: client credentials against
``token_url``, login/password the client id/secret; ``none``) and optional ``empty_after_hours``.
``run_block`` hands every block the ``civic_mds`` connection and its session; this module ignores
both, resolves the provider's own connection and opens a session of its own per block (from
``make_session``: the same retries), which reads the environment's proxy settings once per host
rather than on each of a month's ~1,400 requests. A provider without a connection is skipped (:class:`NotPublished`) with the
reason.

**Requests.** 0.4 and 1.x: ``GET {base}/trips?end_time=YYYY-MM-DDTHH`` and
``GET {base}/status_changes?event_time=YYYY-MM-DDTHH``; 2.0: ``/trips?end_time=...`` and
``/events/historical?event_time=...``; each with its version's ``Accept`` header. ``links.next``
is followed whenever an answer carries one (the link holds the query, so none is added). A 404
means the hour does not exist yet (contract: "not ready yet" and "no data" look the same): the hour
is *missing*, the block lands incomplete rather than failing. 429 and 5xx are retried by the
session (Retry-After honoured); a 406 (the provider does not serve the configured version), 400 or
any other error fails the block.

**Auth.** A bearer token is sent as ``Authorization: Bearer``. An OAuth2 token is fetched with the
client-credentials grant (HTTP Basic, form ``grant_type=client_credentials``), cached per process
until shortly before ``expires_in`` runs out, and fetched again when it expires or when a data
request answers 401 (once per request; a second 401 fails the block). Credentials and tokens are
never logged, never put in an exception message (error bodies are redacted), the manifest or an
XCom; inside an Airflow task each token is also registered with Airflow's secrets masker.

**Completion.** The manifest lists the missing hours per endpoint. :func:`probe` returns the same
watermark as a complete block's manifest (the block is skipped), and a fresh one otherwise (the
block runs). A landing that holds no record at all (every hour answered "no data") is walked
again whole, complete or not: a provider-month without a single trip or event is more likely a
provider answering empty by mistake than a quiet month, and one walk costs ~1,400 requests. A
forced run walks every hour again. A run after an incomplete landing asks only for the missing
endpoint-hours, reads the rows already landed (``data``, ``events``, ``quarantine`` and ``hours`` parquet of the block) and
lands the union, one row per key (the new row wins), sorted, so the content checksum equals that
of a block fetched in one go. ``hours.parquet`` records each hour's answers, so an hour that turns
complete changes the content even when it holds no records.

**Validation.** Every record is validated with ``jsonschema`` against the bundled schema of its
version and endpoint (``mds_schemas/``: 0.4 and 2.0 written from the contract's field lists; 1.x
the Open Mobility Foundation's published ``provider/status_changes.json`` and ``trips.json``,
verbatim, checked record by record against their item schemas; see ``mds_schemas/README.md``); a
failing record goes to quarantine with the most relevant error. Records are kept otherwise as published:
contract fields become columns, other keys are kept as JSON in ``extras``.

**Districts.** Trip start and end points and event points are assigned to council districts by
point-in-polygon (shapely STRtree) against a GeoJSON file: the Variable
``civic_mds_districts_path``, or the bundled generated grid (``mds_data/``; not real districts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import requests

from civic_pipelines import connections
from civic_pipelines.core import secrets
from civic_pipelines.core.contract import LANDED_TYPE
from civic_pipelines.core.variables import get_variable
from civic_pipelines.http import (
    request_timeout,
    retry_policy,
    RETRY_STATUSES,
    SourceHTTPError,
    TransientBodyError,
    make_session,
    page_retry,
)
from civic_pipelines.months import next_month, parse_month
from civic_pipelines.sources.base import BlockData, Capabilities, NotPublished, SourceSpec

log = logging.getLogger(__name__)

PROVIDERS_VARIABLE = "civic_mds_providers"
DISTRICTS_PATH_VARIABLE = "civic_mds_districts_path"
DISTRICT_PROPERTY_VARIABLE = "civic_mds_district_property"

SPEC = SourceSpec(
    name="mds",
    title="Dockless mobility (MDS provider API): trips and vehicle events per operator",
    publisher="Each scooter and bike operator's own MDS provider API (the feeds Austin Transportation receives)",
    cron="0 0 1 * *",
    cadence="monthly",
    # Austin's derived trip dataset (contract: Socrata 7d8e-dm7r) starts in 2018.
    first_month="2018-01",
    conn_id="civic_mds",
    # Never requested: each provider has its own connection, civic_mds_<provider>.
    default_base_url="(per provider: connection civic_mds_<provider>)",
    natural_key="trip_id",
    description=(
        "Scooter and bike trips and vehicle status changes from each operator's MDS provider API (0.4, 1.x, 2.0), "
        "walked hour by hour, validated against the MDS JSON schema of the version, normalised into one trips and one "
        "events table and assigned to council districts; a block is one provider and one month."
    ),
    tags=("mobility", "mds", "austin"),
    pool_slots=2,
    dbt_tag="mds",
    parts=(),
    parts_param="providers",
    # Providers are configuration (parts()); a block holds trips, events and the hours walked, lands
    # incomplete while hours are unpublished, and is mirrored into PostgreSQL (POSTGRES_TABLES).
    capabilities=Capabilities(configured_parts=True, several_tables=True, incomplete_hours=True, postgres_sink=True),
    # The deployment variables a block reads (docker mode forwards them to the container).
    variables=(PROVIDERS_VARIABLE, DISTRICTS_PATH_VARIABLE, DISTRICT_PROPERTY_VARIABLE),
    part_conn_id="civic_mds_{part}",
)

# The PostgreSQL mirror (civic_pipelines.sinks.postgres, the DAG's sync_postgres task): the
# block's trips and events, upserted on their keys, scoped to the block by provider and month.
POSTGRES_TABLES = {
    "data": {"table": "mds_trips", "key": ["provider", "trip_id"], "block_key": ["provider", "_block_month"]},
    "events": {"table": "mds_events", "key": ["provider", "event_id"], "block_key": ["provider", "_block_month"]},
}

# The operators the contract names (Voi; Lyft, Bolt and Dott from public consumer projects).
DEFAULT_PROVIDERS = ("voi", "lyft", "bolt", "dott")
DISTRICT_PROPERTIES = ("council_district", "district")
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

SCHEMA_DIR = Path(__file__).with_name("mds_schemas")
BUNDLED_DISTRICTS = Path(__file__).with_name("mds_data") / "austin_council_districts_GENERATED_GRID.geojson"

FAMILIES = ("0.4", "1.x", "2.0")
ACCEPT = {
    "0.4": "application/vnd.mds.provider+json;version={version}",
    "1.x": "application/vnd.mds+json;version={version}",
    "2.0": "application/vnd.mds+json;version={version}",
}
# endpoint -> (path, hour parameter, payload key) per family. "events" is status_changes before 2.0.
ENDPOINTS = {
    "0.4": {"trips": ("trips", "end_time", "trips"), "events": ("status_changes", "event_time", "status_changes")},
    "1.x": {"trips": ("trips", "end_time", "trips"), "events": ("status_changes", "event_time", "status_changes")},
    "2.0": {"trips": ("trips", "end_time", "trips"), "events": ("events/historical", "event_time", "events")},
}
SCHEMA_FILES = {
    ("0.4", "trips"): "trips_0.4.json", ("0.4", "events"): "status_changes_0.4.json",
    ("1.x", "trips"): "trips_1.x.json", ("1.x", "events"): "status_changes_1.x.json",
    ("2.0", "trips"): "trips_2.0.json", ("2.0", "events"): "events_2.0.json",
}
MAX_PAGES_PER_HOUR = 10_000
TOKEN_ATTEMPTS = 4
DERIVED_EVENT_NAMESPACE = uuid.NAMESPACE_URL
ENDPOINT_NAMES = ("trips", "events")

TIMESTAMP = pa.timestamp("ms", tz="UTC")
TEXT_LIST = pa.list_(pa.string())

TRIPS_SCHEMA = pa.schema([
    ("provider", pa.string()), ("trip_id", pa.string()), ("mds_version", pa.string()),
    ("provider_id", pa.string()), ("provider_name", pa.string()), ("device_id", pa.string()),
    ("vehicle_id", pa.string()), ("vehicle_type", pa.string()), ("propulsion_types", TEXT_LIST),
    ("trip_type", TEXT_LIST), ("start_time", TIMESTAMP), ("end_time", TIMESTAMP), ("publication_time", TIMESTAMP),
    ("trip_duration", pa.int64()), ("trip_distance", pa.int64()), ("accuracy", pa.int64()),
    ("start_lon", pa.float64()), ("start_lat", pa.float64()), ("end_lon", pa.float64()), ("end_lat", pa.float64()),
    ("route_points", pa.int32()), ("route", pa.string()),
    ("standard_cost", pa.int64()), ("actual_cost", pa.int64()), ("currency", pa.string()),
    ("parking_verification_url", pa.string()), ("accessibility_attributes", pa.string()),
    ("council_district_start", pa.string()), ("council_district_end", pa.string()),
    ("extras", pa.string()), ("_hour", TIMESTAMP), ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE),
])
EVENTS_SCHEMA = pa.schema([
    ("provider", pa.string()), ("event_id", pa.string()), ("event_id_derived", pa.bool_()), ("mds_version", pa.string()),
    ("provider_id", pa.string()), ("device_id", pa.string()), ("event_time", TIMESTAMP),
    ("event_type", pa.string()), ("event_type_reason", pa.string()), ("event_types", TEXT_LIST),
    ("vehicle_state", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()), ("battery_fraction", pa.float64()),
    ("trip_ids", TEXT_LIST), ("associated_ticket", pa.string()), ("council_district", pa.string()),
    ("extras", pa.string()), ("_hour", TIMESTAMP), ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE),
])
HOURS_SCHEMA = pa.schema([
    ("provider", pa.string()), ("hour", TIMESTAMP), ("trips_status", pa.int32()), ("events_status", pa.int32()),
    ("trips", pa.int32()), ("events", pa.int32()), ("trips_pages", pa.int32()), ("events_pages", pa.int32()),
    ("complete", pa.bool_()), ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE),
])
QUARANTINE_SCHEMA = pa.schema([
    ("provider", pa.string()), ("mds_version", pa.string()), ("endpoint", pa.string()), ("record_id", pa.string()),
    ("raw", pa.string()), ("_reason", pa.string()), ("_reason_kind", pa.string()), ("_hour", TIMESTAMP),
    ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE),
])

# The contract's field list per family and endpoint: anything else goes to ``extras``.
KNOWN_FIELDS = {
    ("0.4", "trips"): frozenset({
        "provider_id", "provider_name", "device_id", "vehicle_id", "vehicle_type", "propulsion_type", "trip_id",
        "trip_duration", "trip_distance", "route", "accuracy", "start_time", "end_time", "publication_time",
        "parking_verification_url", "standard_cost", "actual_cost", "currency"}),
    ("0.4", "events"): frozenset({
        "event_type", "event_type_reason", "event_time", "event_location", "battery_pct", "associated_trip",
        "associated_ticket"}),
    ("2.0", "trips"): frozenset({
        "provider_id", "device_id", "trip_id", "trip_type", "start_time", "end_time", "start_location", "end_location",
        "duration", "distance", "accessibility_attributes"}),
    ("2.0", "events"): frozenset({
        "event_id", "provider_id", "device_id", "event_types", "vehicle_state", "location", "battery_percent",
        "timestamp", "trip_ids"}),
}
KNOWN_FIELDS[("1.x", "trips")] = (KNOWN_FIELDS[("0.4", "trips")] - {"propulsion_type"}) | {"propulsion_types"}
# 1.x status changes (OMF provider/status_changes.json): the 1.0 state model (vehicle_state +
# event_types, trip_id) in the 0.4 envelope. Fields without an events column stay in extras.
KNOWN_FIELDS[("1.x", "events")] = frozenset({
    "provider_id", "device_id", "vehicle_state", "event_types", "event_time", "event_location", "battery_pct",
    "trip_id", "associated_ticket"})


class MdsConfigError(ValueError):
    """A provider's configuration cannot work (unknown version or auth mode, missing token URL)."""


class MdsAuthError(SourceHTTPError):
    """The provider refused the credentials (the message never holds them)."""


class MdsFormatError(SourceHTTPError):
    """The provider answered 200 with something that is not its version's response shape."""


# ---------------------------------------------------------------- configuration


def parts() -> list[str]:
    """The providers: the Variable ``civic_mds_providers`` (a JSON list), else the default list."""
    value = get_variable(PROVIDERS_VARIABLE, "")
    if value in (None, ""):
        return list(DEFAULT_PROVIDERS)
    listed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed:
        raise MdsConfigError(f"{PROVIDERS_VARIABLE} must be a non-empty JSON list of provider names, not {value!r}")
    bad = [name for name in listed if not isinstance(name, str) or not PROVIDER_NAME.match(name)]
    if bad:
        raise MdsConfigError(f"{PROVIDERS_VARIABLE}: provider names are lower-case letters, digits and _ "
                             f"(they name a connection and a folder): {bad}")
    return list(dict.fromkeys(listed))


def auth_headers(connection) -> dict:
    return {}  # the civic_mds connection carries nothing: each provider authenticates on its own


def provider_conn_id(provider: str) -> str:
    return SPEC.part_conn_id.format(part=provider)


@dataclass(frozen=True)
class Provider:
    """One provider's resolved configuration. ``secret`` is the bearer token or the client secret."""

    name: str
    base_url: str
    version: str  # as configured, major.minor: "0.4", "1.2", "2.0"
    family: str  # "0.4", "1.x", "2.0"
    auth: str  # "bearer", "oauth2", "none"
    token_url: str | None = None
    client_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    empty_after_hours: float | None = None

    def __repr__(self) -> str:  # never print a credential
        return f"Provider(name={self.name!r}, base_url={self.base_url!r}, version={self.version!r}, auth={self.auth!r})"

    @property
    def accept(self) -> str:
        return ACCEPT[self.family].format(version=self.version)

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path}"


def parse_version(value) -> tuple[str, str]:
    """``(version, family)`` from a configured MDS version: ``"0.4.1"`` -> ``("0.4", "0.4")``,
    ``"1.2"`` -> ``("1.2", "1.x")``, ``"2.0.0"`` -> ``("2.0", "2.0")``."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.\d+)?\s*$", str(value or ""))
    if not match:
        raise MdsConfigError(f"mds_version {value!r} is not a version such as 0.4, 1.2 or 2.0")
    major, minor = int(match.group(1)), int(match.group(2))
    version = f"{major}.{minor}"
    if (major, minor) == (0, 4):
        return version, "0.4"
    if major == 1:
        return version, "1.x"
    if (major, minor) == (2, 0):
        return version, "2.0"
    raise MdsConfigError(f"MDS version {version} is not supported (0.4, 1.x and 2.0 are; 0.2/0.3 take millisecond "
                         "ranges that this client does not send)")


def provider_config(provider: str) -> Provider:
    """Resolve ``civic_mds_<provider>``; :class:`NotPublished` when there is no such connection."""
    if not isinstance(provider, str) or not PROVIDER_NAME.match(provider):
        raise MdsConfigError(f"mds blocks need a provider name (the part), not {provider!r}")
    conn_id = provider_conn_id(provider)
    connection = connections.resolve(conn_id, "")
    if not connection.base_url or connection.base_url.rstrip("/") in ("https:/", "https://", "http://"):
        raise NotPublished(f"no connection {conn_id} (base URL, mds_version, auth) is configured for provider {provider!r}")
    extra = dict(connection.extra or {})
    version, family = parse_version(extra.get("mds_version"))
    auth = str(extra.get("auth") or ("bearer" if connection.password else "none")).lower()
    if auth not in ("bearer", "oauth2", "none"):
        raise MdsConfigError(f"{conn_id}: auth {auth!r} is not one of bearer, oauth2, none")
    token_url = extra.get("token_url")
    if auth == "oauth2":
        if not token_url:
            raise MdsConfigError(f"{conn_id}: auth oauth2 needs token_url in the extras")
        if not (connection.login and connection.password):
            raise MdsConfigError(f"{conn_id}: auth oauth2 needs the client id as login and the secret as password")
        token_url = urljoin(connection.base_url.rstrip("/") + "/", token_url)
    if auth == "bearer" and not connection.password:
        raise MdsConfigError(f"{conn_id}: auth bearer needs the token as the connection's password")
    empty_after = extra.get("empty_after_hours")
    return Provider(
        name=provider, base_url=connection.base_url.rstrip("/"), version=version, family=family, auth=auth,
        token_url=token_url if auth == "oauth2" else None,
        client_id=connection.login if auth == "oauth2" else None,
        secret=connection.password if auth in ("bearer", "oauth2") else None,
        empty_after_hours=float(empty_after) if empty_after not in (None, "") else None,
    )


# ---------------------------------------------------------------- auth


def _mask_in_airflow(secret: str) -> None:
    """Inside an Airflow task, register a runtime secret (a fetched token) with the log masker."""
    secrets.mask(secret)


_TOKEN_CACHE: dict[tuple, tuple[str, float | None]] = {}
_TOKEN_LOCK = threading.Lock()


def clear_token_cache() -> None:
    with _TOKEN_LOCK:
        _TOKEN_CACHE.clear()


class Auth:
    """The Authorization header of one provider: static bearer, OAuth2 client credentials, or none."""

    def __init__(self, provider: Provider, session, counters: Counter, settings=None) -> None:
        self.provider = provider
        self.session = session
        self.counters = counters
        self.settings = settings or (lambda url: {})
        secret_digest = hashlib.sha256((provider.secret or "").encode()).hexdigest()[:16]
        self._key = (provider.token_url, provider.client_id, secret_digest)
        self._issued: list[str] = []  # tokens seen in this block (redacted from any error text)

    @property
    def can_refresh(self) -> bool:
        return self.provider.auth == "oauth2"

    def secrets(self) -> list[str]:
        return [s for s in (self.provider.secret, self.provider.client_id, *self._issued) if s]

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets(), key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def headers(self) -> dict:
        if self.provider.auth == "bearer":
            return {"Authorization": f"Bearer {self.provider.secret}"}
        if self.provider.auth == "oauth2":
            return {"Authorization": f"Bearer {self.token()}"}
        return {}

    def token(self) -> str:
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(self._key)
        if cached is not None:
            token, expires_at = cached
            if expires_at is None or time.monotonic() < expires_at:
                if token not in self._issued:
                    self._issued.append(token)
                return token
        return self._fetch()

    def invalidate(self) -> None:
        with _TOKEN_LOCK:
            _TOKEN_CACHE.pop(self._key, None)

    def _fetch(self) -> str:
        provider = self.provider
        response = None
        for attempt in range(TOKEN_ATTEMPTS):
            self.counters["requests"] += 1
            self.counters["token_requests"] += 1
            response = self.session.post(
                provider.token_url, data={"grant_type": "client_credentials"},
                auth=(provider.client_id, provider.secret), headers={"Accept": "application/json"},
                timeout=request_timeout(), **self.settings(provider.token_url))
            if response.status_code in RETRY_STATUSES and response.status_code != 200 and attempt < TOKEN_ATTEMPTS - 1:
                wait = _retry_after(response.headers.get("Retry-After"), retry_policy().delay(attempt))
                response.close()
                time.sleep(wait)
                continue
            break
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
            code = payload.get("error") if isinstance(payload, dict) else None
            raise MdsAuthError(
                f"{provider.name}: the token endpoint {provider.token_url} answered {status}"
                + (f" ({self.redact(str(code))[:80]})" if code else "")
                + ": check the client id and secret of connection " + provider_conn_id(provider.name))
        token = payload["access_token"]
        _mask_in_airflow(token)
        self._issued.append(token)
        expires_in = payload.get("expires_in")
        expires_at = None
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            # Refresh a little before the end: a request must not leave with a token about to die.
            expires_at = time.monotonic() + expires_in - min(60.0, expires_in * 0.1)
        with _TOKEN_LOCK:
            _TOKEN_CACHE[self._key] = (token, expires_at)
        log.info("mds %s: fetched an access token (expires in %s s)", provider.name, expires_in)
        return token


def _retry_after(value, default: float) -> float:
    try:
        return max(0.0, min(float(value), 30.0))
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- HTTP


def loads_lenient(body: bytes):
    """JSON, or JSON with trailing commas before ``]``/``}`` (the contract's Voi documentation
    examples have them); a body that is neither raises ``orjson.JSONDecodeError``."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        fixed = re.sub(rb",(\s*[\]}])", rb"\1", body)
        if fixed == body:
            raise
        return orjson.loads(fixed), True


class Client:
    """One provider's requests for one block, with counters for the manifest.

    A month is ~1,400 small requests: the proxy and CA settings that ``requests`` reads from the
    environment on every request (a scan of ``os.environ``, most of a millisecond) are read once
    per host here instead, and the session is told not to read them again (``trust_env``)."""

    def __init__(self, session, provider: Provider) -> None:
        self.session = session
        self.provider = provider
        self.counters: Counter = Counter()
        self._settings: dict[str, dict] = {}
        self._trust_env = getattr(session, "trust_env", True)
        self.auth = Auth(provider, session, self.counters, self.settings)

    def settings(self, url: str) -> dict:
        """``proxies``/``verify``/``cert`` for the url's host, from the environment, once."""
        host = urlsplit(url).netloc
        found = self._settings.get(host)
        if found is None:
            if self._trust_env:
                with requests.Session() as scratch:
                    found = scratch.merge_environment_settings(url, {}, None, None, None)
            else:
                found = {"proxies": {}, "stream": None, "verify": True, "cert": None}
            found = {k: v for k, v in found.items() if k in ("proxies", "verify", "cert")}
            self._settings[host] = found
            self.session.trust_env = False
        return found

    def _get(self, url: str, params: dict | None) -> tuple[int, bytes, dict]:
        @page_retry
        def attempt() -> tuple[int, bytes, dict]:
            headers = {"Accept": self.provider.accept, **self.auth.headers()}
            self.counters["requests"] += 1
            response = self.session.get(url, params=params, headers=headers, timeout=request_timeout(), stream=True,
                                        **self.settings(url))
            try:
                body = response.raw.read(decode_content=True)
            except BaseException:
                response.close()
                raise
            response.raw.release_conn()
            expected = response.headers.get("Content-Length")
            if expected is not None and response.headers.get("Content-Encoding") is None and int(expected) != len(body):
                raise TransientBodyError(f"body cut short: {len(body)} of {expected} bytes")
            return response.status_code, body, dict(response.headers)

        return attempt()

    def get_page(self, url: str, params: dict | None) -> tuple[int, object]:
        """``(200, payload)`` or ``(404, None)``; a 401 refreshes an OAuth2 token once; anything
        else raises (429/5xx only after the session's retries)."""
        status, body, _ = self._get(url, params)
        if status == 401 and self.auth.can_refresh:
            self.counters["unauthorized_retries"] += 1
            log.info("mds %s: 401 on %s: fetching a new token and asking again", self.provider.name, _show(url, params))
            self.auth.invalidate()
            status, body, _ = self._get(url, params)
        if status == 200:
            try:
                payload, lenient = loads_lenient(body)
            except orjson.JSONDecodeError as error:
                raise MdsFormatError(f"{self.provider.name}: {_show(url, params)} answered 200 with a body that is not "
                                     f"JSON ({error})") from None
            if lenient:
                self.counters["lenient_json_pages"] += 1
            return 200, payload
        if status == 404:
            return 404, None
        detail = self.auth.redact(_error_text(body))
        where = _show(url, params)
        if status == 401:
            raise MdsAuthError(f"{self.provider.name}: 401 unauthorised from {where}: check the credentials of "
                               f"connection {provider_conn_id(self.provider.name)}{detail}")
        if status == 406:
            raise SourceHTTPError(f"{self.provider.name}: 406 from {where}: the provider does not serve MDS "
                                  f"{self.provider.version} (Accept: {self.provider.accept}){detail}")
        if status in RETRY_STATUSES:
            raise SourceHTTPError(f"{self.provider.name}: {status} from {where} after retries{detail}")
        raise SourceHTTPError(f"{self.provider.name}: {status} from {where}{detail}")


def _show(url: str, params: dict | None) -> str:
    if not params:
        return url
    return url + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def _error_text(body: bytes) -> str:
    """The MDS error body's ``error``/``error_description`` (or the first bytes), for messages."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return f": {text}" if text else ""
    if isinstance(payload, dict):
        parts = [str(payload[k]) for k in ("error", "error_description", "message") if payload.get(k)]
        if parts:
            return ": " + " - ".join(parts)[:300]
    return ": " + body[:300].decode("utf-8", "replace")


# ---------------------------------------------------------------- hours


def month_hours(month: str) -> list[datetime]:
    start = parse_month(month)
    first = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    end = next_month(start)
    last = datetime(end.year, end.month, end.day, tzinfo=timezone.utc)
    hours = []
    current = first
    while current < last:
        hours.append(current)
        current += timedelta(hours=1)
    return hours


def hour_text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H")


def parse_hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- validation


# The published (OMF) schemas describe a whole payload; a record is checked against the payload's
# item schema, resolved inside the published document (its ``$ref``s point at its definitions).
ITEM_POINTERS = {
    ("1.x", "trips"): ("properties", "data", "properties", "trips", "items"),
    ("1.x", "events"): ("properties", "data", "properties", "status_changes", "items"),
}


@lru_cache(maxsize=None)
def schema(family: str, endpoint: str) -> dict:
    return json.loads((SCHEMA_DIR / SCHEMA_FILES[(family, endpoint)]).read_text())


def _contains_combinations(item: dict) -> dict:
    """The published 1.x status-change item with its vehicle_state / event_types combination rule
    read as the release schemas state it: each ``oneOf`` branch means "``event_types`` *contains*
    one of the state's events" (OMF issue #690 quotes the released 1.0.0 / 1.1.0 files as
    ``"event_types" -> "contains" -> "enum"``). The text at the commit shipped here writes it as
    ``items: {not: {enum}}`` + ``additionalItems: {enum}``, which under its own draft-06 forbids
    every listed event (``items`` as one schema applies to every element and ``additionalItems`` is
    then ignored), so it would refuse ``on_trip`` + ``trip_start`` and accept ``removed`` +
    ``trip_start``. The file stays verbatim; this copy is what records are checked against."""
    item = json.loads(json.dumps(item))
    for rule in item.get("allOf", []):
        for branch in rule.get("oneOf", []):
            events = branch.get("properties", {}).get("event_types", {})
            listed = events.get("additionalItems", {}).get("enum")
            if listed is not None and "items" in events:
                branch["properties"]["event_types"] = {"contains": {"enum": listed}}
    return item


@lru_cache(maxsize=None)
def validator(family: str, endpoint: str):
    import jsonschema

    document = schema(family, endpoint)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    pointer = ITEM_POINTERS.get((family, endpoint))
    if pointer is None:
        return cls(document)
    item = document
    for key in pointer:
        item = item[key]
    if endpoint == "events":
        item = _contains_combinations(item)
    # evolve keeps the whole document as the root its "#/definitions/..." references resolve in
    return cls(document).evolve(schema=item)


def schema_error(record, family: str, endpoint: str) -> tuple[str, str] | None:
    """``(reason, kind)`` for a record that breaks its schema (kind: the reason without values),
    or None."""
    import jsonschema

    if not isinstance(record, dict):
        return f"schema: (record): not a JSON object but {type(record).__name__}", "schema: (record): type"
    check = validator(family, endpoint)
    if check.is_valid(record):
        return None
    error = jsonschema.exceptions.best_match(check.iter_errors(record))
    path = "/".join(str(p) for p in error.absolute_path) or "(record)"
    message = error.message
    if error.validator in ("oneOf", "anyOf") and isinstance(error.schema, dict) and error.schema.get("description"):
        # the message would repeat the whole record: the rule's own description says more
        message = f"breaks the rule {error.schema['description']!r}"
    message = message if len(message) <= 300 else message[:297] + "..."
    kind_path = re.sub(r"/\d+(?=/|$)", "/*", path)
    return f"schema: {path}: {message}", f"schema: {kind_path}: {error.validator}"


# ---------------------------------------------------------------- normalisation


def _canonical(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _extras(record: dict, family: str, endpoint: str) -> str | None:
    known = KNOWN_FIELDS[(family, endpoint)]
    extra = {k: v for k, v in record.items() if k not in known}
    return _canonical(extra) if extra else None


def derived_event_id(provider: str, record: dict) -> str:
    """The key of a 0.4 / 1.x status change (they have no id): UUID v5 of the provider and the
    record's canonical JSON."""
    return str(uuid.uuid5(DERIVED_EVENT_NAMESPACE, f"civic-mds:{provider}:{_canonical(record)}"))


def _route_ends(route: dict) -> tuple[tuple[float, float], tuple[float, float], int]:
    features = route["features"]
    ordered = sorted(range(len(features)), key=lambda i: features[i]["properties"]["timestamp"])
    first = features[ordered[0]]["geometry"]["coordinates"]
    last = features[ordered[-1]]["geometry"]["coordinates"]
    return (float(first[0]), float(first[1])), (float(last[0]), float(last[1])), len(features)


def trip_row(record: dict, provider: Provider) -> dict:
    """A valid trip record as a lake row (without districts and the block columns)."""
    family = provider.family
    row = {"provider": provider.name, "trip_id": record["trip_id"], "mds_version": provider.version,
           "provider_id": record.get("provider_id"), "device_id": record.get("device_id"),
           "start_time": record["start_time"], "end_time": record["end_time"],
           "extras": _extras(record, family, "trips")}
    if family == "2.0":
        start, end = record["start_location"], record["end_location"]
        accessibility = record.get("accessibility_attributes")
        row.update({
            "trip_type": record.get("trip_type"), "trip_duration": record.get("duration"),
            "trip_distance": record.get("distance"),
            "start_lon": float(start["lng"]), "start_lat": float(start["lat"]),
            "end_lon": float(end["lng"]), "end_lat": float(end["lat"]),
            "accessibility_attributes": _canonical(accessibility) if accessibility is not None else None,
        })
        return row
    (start_lon, start_lat), (end_lon, end_lat), points = _route_ends(record["route"])
    row.update({
        "provider_name": record.get("provider_name"), "vehicle_id": record.get("vehicle_id"),
        "vehicle_type": record.get("vehicle_type"),
        "propulsion_types": record.get("propulsion_types" if family == "1.x" else "propulsion_type"),
        "publication_time": record.get("publication_time"),
        "trip_duration": record.get("trip_duration"), "trip_distance": record.get("trip_distance"),
        "accuracy": record.get("accuracy"),
        "start_lon": start_lon, "start_lat": start_lat, "end_lon": end_lon, "end_lat": end_lat,
        "route_points": points, "route": _canonical(record["route"]),
        "standard_cost": record.get("standard_cost"), "actual_cost": record.get("actual_cost"),
        "currency": record.get("currency"), "parking_verification_url": record.get("parking_verification_url"),
    })
    return row


def event_row(record: dict, provider: Provider) -> dict:
    """A valid status change (0.4 / 1.x) or event (2.0) as a lake row. A 1.x status change has the
    2.0 state model (``vehicle_state``, ``event_types``; its one ``trip_id`` becomes ``trip_ids``),
    a 0.4 one ``event_type`` / ``event_type_reason`` (``associated_trip`` becomes ``trip_ids``)."""
    family = provider.family
    row = {"provider": provider.name, "mds_version": provider.version, "extras": _extras(record, family, "events")}
    if family == "2.0":
        location = record.get("location")
        battery = record.get("battery_percent")
        row.update({
            "event_id": record["event_id"], "event_id_derived": False,
            "provider_id": record.get("provider_id"), "device_id": record.get("device_id"),
            "event_time": record["timestamp"], "event_types": record.get("event_types"),
            "vehicle_state": record.get("vehicle_state"),
            "lon": float(location["lng"]) if location else None, "lat": float(location["lat"]) if location else None,
            "battery_fraction": battery / 100 if battery is not None else None,
            "trip_ids": record.get("trip_ids"),
        })
        return row
    coordinates = record["event_location"]["geometry"]["coordinates"]
    # 0.4 and 1.x status changes share the location, battery and ticket; 1.x names the state model
    # (vehicle_state, event_types) and one trip_id where 0.4 has event_type(_reason) and associated_trip.
    trip_id = record.get("trip_id") if family == "1.x" else record.get("associated_trip")
    row.update({"event_id": derived_event_id(provider.name, record), "event_id_derived": True,
                "event_time": record["event_time"]})
    if family == "1.x":
        row.update({"provider_id": record.get("provider_id"), "device_id": record.get("device_id"),
                    "event_types": record.get("event_types"), "vehicle_state": record.get("vehicle_state")})
    else:
        row.update({"event_type": record.get("event_type"), "event_type_reason": record.get("event_type_reason")})
    row.update({
        "lon": float(coordinates[0]), "lat": float(coordinates[1]),
        "battery_fraction": float(record["battery_pct"]) if record.get("battery_pct") is not None else None,
        "trip_ids": [trip_id] if trip_id else None, "associated_ticket": record.get("associated_ticket"),
    })
    return row


def record_key(record, endpoint: str) -> str | None:
    """The published key of a record (``trip_id``, 2.0 ``event_id``) when readable; 0.4 / 1.x
    status changes have none."""
    if not isinstance(record, dict):
        return None
    name = "trip_id" if endpoint == "trips" else "event_id"
    value = record.get(name)
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- districts


@dataclass
class Districts:
    """Polygons with labels and an STRtree over them."""

    source: str
    sha256: str
    labels: list[str]
    tree: object
    generated: bool

    def assign(self, lons: list, lats: list) -> tuple[list[str | None], int]:
        """The district of each point (None without a point or outside every district) and how
        many points with coordinates matched none. A point on a shared border goes to the
        district listed first in the file."""
        import numpy as np
        import shapely

        n = len(lons)
        out: list[str | None] = [None] * n
        present = [i for i in range(n) if lons[i] is not None and lats[i] is not None]
        if not present:
            return out, 0
        points = shapely.points(np.array([lons[i] for i in present], dtype="float64"),
                                np.array([lats[i] for i in present], dtype="float64"))
        found, polygons = self.tree.query(points, predicate="intersects")
        best: dict[int, int] = {}
        for point_index, polygon_index in zip(found.tolist(), polygons.tolist()):
            if point_index not in best or polygon_index < best[point_index]:
                best[point_index] = polygon_index
        for point_index, polygon_index in best.items():
            out[present[point_index]] = self.labels[polygon_index]
        return out, len(present) - len(best)

    def describe(self) -> dict:
        return {"file": self.source, "sha256": self.sha256, "districts": len(set(self.labels)),
                "generated_grid": self.generated}


def districts_path() -> Path:
    configured = get_variable(DISTRICTS_PATH_VARIABLE, "")
    return Path(configured).expanduser() if configured else BUNDLED_DISTRICTS


def load_districts(path: Path | None = None) -> Districts:
    path = Path(path) if path is not None else districts_path()
    data = path.read_bytes()
    return _load_districts(str(path), hashlib.sha256(data).hexdigest(), get_variable(DISTRICT_PROPERTY_VARIABLE, ""))


@lru_cache(maxsize=8)
def _load_districts(path: str, sha256: str, property_name: str) -> Districts:
    import shapely
    from shapely.geometry import shape

    document = orjson.loads(Path(path).read_bytes())
    features = document.get("features") if isinstance(document, dict) else None
    if not features:
        raise MdsConfigError(f"district file {path} is not a GeoJSON FeatureCollection with features")
    names = (property_name,) if property_name else DISTRICT_PROPERTIES
    geometries, labels = [], []
    for index, feature in enumerate(features):
        properties = feature.get("properties") or {}
        label = next((properties[name] for name in names if properties.get(name) not in (None, "")), None)
        if label is None:
            raise MdsConfigError(f"district file {path}: feature {index} has none of the properties {list(names)}")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        geometry = shape(feature["geometry"])
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise MdsConfigError(f"district file {path}: feature {index} is a {geometry.geom_type}, not a polygon")
        geometries.append(geometry)
        labels.append(str(label))
    generated = "GENERATED" in str(document.get("name", "")) or "GENERATED" in str(document.get("description", ""))
    return Districts(source=path, sha256=sha256, labels=labels, tree=shapely.STRtree(geometries), generated=generated)


# ---------------------------------------------------------------- probe


def probe(session, connection, month: str, part: str | None = None, previous: dict | None = None) -> dict:
    """A complete block keeps its watermark (``run_block`` skips it); an incomplete or absent one
    gets a new one (it runs). No request is made."""
    provider = provider_config(part)
    start = parse_month(month)
    if datetime(start.year, start.month, 1, tzinfo=timezone.utc) > _now():
        raise NotPublished(f"{month} has not started yet")
    if previous and previous.get("complete") is True and previous.get("watermark") and _holds_records(previous):
        return {"watermark": previous["watermark"], "provider": provider.name}
    missing = len(previous.get("missing_hours") or []) if previous else None
    marker = f"missing={missing}" if missing is not None else "never landed"
    return {"watermark": _incomplete_watermark(marker), "provider": provider.name}


def _holds_records(previous: dict) -> bool:
    """Whether a landing holds any record (trip, event or quarantined). One that holds none is
    walked again whole by the next run: a provider answering "no data" (200, empty) for every
    hour of a month is more likely broken or late than a month without a single trip."""
    return bool(previous.get("rows") or (previous.get("tables") or {}).get("events") or previous.get("quarantined"))


def _incomplete_watermark(marker: str) -> str:
    # Never equal to an earlier one (two runs within a second included), so the block runs.
    return f"incomplete|{marker}|checked={_now().isoformat(timespec='seconds')}|{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- the block


def _read_previous_table(location, name: str, schema_: pa.Schema) -> pa.Table | None:
    """One of the block's landed tables, cast to the current schema; None when unreadable."""
    from civic_pipelines.lake import read_block_table

    table = read_block_table(location, f"{name}.parquet")
    if table is None:
        return None
    try:
        return table.select(schema_.names).cast(schema_)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        log.warning("mds %s: the landed %s.parquet does not have the current columns (%s): fetching every hour",
                    location.folder, name, error)
        return None


@dataclass
class _Plan:
    """Which endpoint-hours this run asks for, and what the previous landing carries over."""

    fetch: dict[str, list[datetime]]
    carried: dict[str, pa.Table | None] = field(default_factory=dict)
    ledger: dict[datetime, dict] = field(default_factory=dict)


def _plan(hours: list[datetime], previous: dict | None, location) -> _Plan:
    everything = _Plan(fetch={endpoint: list(hours) for endpoint in ENDPOINT_NAMES})
    if not previous or previous.get("complete") is not False or location is None or not _holds_records(previous):
        return everything  # nothing landed (or nothing at all), or a complete block run again (force): every hour
    missing = previous.get("missing")
    if not isinstance(missing, dict) or not all(isinstance(missing.get(e), list) for e in ENDPOINT_NAMES):
        return everything
    carried = {
        "data": _read_previous_table(location, "data", TRIPS_SCHEMA),
        "events": _read_previous_table(location, "events", EVENTS_SCHEMA),
        "hours": _read_previous_table(location, "hours", HOURS_SCHEMA),
        "quarantine": _read_previous_table(location, "quarantine", QUARANTINE_SCHEMA),
    }
    if carried["data"] is None or carried["events"] is None or carried["hours"] is None:
        return everything
    if carried["quarantine"] is None and previous.get("quarantined"):
        return everything
    wanted = set(hours)
    fetch = {endpoint: sorted(h for h in map(parse_hour, missing[endpoint]) if h in wanted) for endpoint in ENDPOINT_NAMES}
    ledger = {row["hour"]: row for row in carried["hours"].to_pylist()}
    return _Plan(fetch=fetch, carried=carried, ledger=ledger)


class _Rows:
    """Rows gathered column-wise into Arrow tables every ``FLUSH`` rows (bounded Python memory)."""

    FLUSH = 20_000

    def __init__(self, schema_: pa.Schema) -> None:
        self.schema = schema_
        self.pending: list[dict] = []
        self.tables: list[pa.Table] = []

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            columns = {f.name: pa.array([row.get(f.name) for row in self.pending], f.type) for f in self.schema}
            self.tables.append(pa.table(columns, schema=self.schema))
            self.pending = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()


def _assign_districts(districts: Districts, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    for lon_name, lat_name, target in columns:
        labels, _ = districts.assign([r.get(lon_name) for r in rows], [r.get(lat_name) for r in rows])
        for row, label in zip(rows, labels):
            row[target] = label


def _dedupe_sort(table: pa.Table, key: str, time_column: str, counter: Counter, name: str) -> pa.Table:
    """One row per key, the last one (later hours and newer landings come later), then sorted by
    time and key so the content does not depend on fetch order."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__order", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(key, use_threads=False).aggregate([("__order", "max")])
    keep = pc.sort_indices(last["__order_max"])
    taken = indexed.take(pc.take(last["__order_max"], keep))
    counter[name] += table.num_rows - taken.num_rows
    ordered = taken.sort_by([(time_column, "ascending"), (key, "ascending")])
    return ordered.drop_columns(["__order"])


def extract_block(session, connection, month: str, probed: dict, landed_at: datetime | None = None,
                  part: str | None = None, previous: dict | None = None, location=None,
                  force: bool = False) -> BlockData:
    landed_at = landed_at or _now()
    provider = provider_config(part)
    if force:
        previous = None  # forced: every hour again, nothing carried over from the landing
    # A session of this block's own: the Client stops it re-reading the environment per request.
    with make_session(conn_id=provider_conn_id(provider.name)) as own:
        return _extract(Client(own, provider), month, probed, landed_at, previous, location)


def _extract(client: Client, month: str, probed: dict, landed_at: datetime, previous: dict | None,
             location) -> BlockData:
    provider = client.provider
    districts = load_districts()
    hours = month_hours(month)
    month_start, month_end = _ms(hours[0]), _ms(hours[-1]) + 3_600_000
    plan = _plan(hours, previous, location)
    now = _now()
    started = time.monotonic()

    trips, events = _Rows(TRIPS_SCHEMA), _Rows(EVENTS_SCHEMA)
    quarantine: list[dict] = []
    answers: dict[tuple[str, datetime], dict] = {}  # (endpoint, hour) -> status, records, pages
    endpoints = ENDPOINTS[provider.family]

    for endpoint in ENDPOINT_NAMES:
        path, parameter, key = endpoints[endpoint]
        quarantine_endpoint = path.split("/")[0] if endpoint == "events" else "trips"
        for hour in plan.fetch[endpoint]:
            if hour + timedelta(hours=1) > now:
                answers[(endpoint, hour)] = {"status": None, "records": 0, "pages": 0}
                continue
            status, records, pages = _fetch_hour(client, provider.url(path), {parameter: hour_text(hour)}, key)
            answers[(endpoint, hour)] = {"status": status, "records": len(records), "pages": pages}
            log.debug("mds %s %s %s: %s, %d record(s), %d page(s)", provider.name, endpoint, hour_text(hour),
                      status, len(records), pages)
            hour_rows = []
            for record in records:
                problem = schema_error(record, provider.family, endpoint)
                if problem is None:
                    row = trip_row(record, provider) if endpoint == "trips" else event_row(record, provider)
                    moment = row["end_time"] if endpoint == "trips" else row["event_time"]
                    if not month_start <= moment < month_end:
                        field_name = "end_time" if endpoint == "trips" else "event_time"
                        problem = (f"{field_name} outside the block's month", f"{field_name} outside the block's month")
                if problem is not None:
                    quarantine.append({
                        "provider": provider.name, "mds_version": provider.version, "endpoint": quarantine_endpoint,
                        "record_id": record_key(record, endpoint),
                        "raw": _canonical(record), "_reason": problem[0], "_reason_kind": problem[1],
                        "_hour": _ms(hour), "_block_month": month, "_landed_at": landed_at})
                    continue
                row.update({"_hour": _ms(hour), "_block_month": month, "_landed_at": landed_at})
                hour_rows.append(row)
            if endpoint == "trips":
                _assign_districts(districts, hour_rows, [("start_lon", "start_lat", "council_district_start"),
                                                         ("end_lon", "end_lat", "council_district_end")])
            else:
                _assign_districts(districts, hour_rows, [("lon", "lat", "council_district")])
            target = trips if endpoint == "trips" else events
            for row in hour_rows:
                target.add(row)

    # ---- the hour ledger: previous answers, overwritten by this run's
    def empty_ok(hour: datetime) -> bool:
        limit = provider.empty_after_hours
        return limit is not None and hour + timedelta(hours=1) <= now - timedelta(hours=limit)

    ledger_rows = []
    missing: dict[str, list[str]] = {e: [] for e in ENDPOINT_NAMES}
    for hour in hours:
        old = plan.ledger.get(hour) or {}
        row = {"provider": provider.name, "hour": _ms(hour), "_block_month": month,
               "_landed_at": old.get("_landed_at") or landed_at}
        fetched_now = False
        for endpoint in ENDPOINT_NAMES:
            answer = answers.get((endpoint, hour))
            if answer is not None:
                fetched_now = True
                row[f"{endpoint}_status"] = answer["status"]
                row[endpoint] = answer["records"]
                row[f"{endpoint}_pages"] = answer["pages"]
            else:
                row[f"{endpoint}_status"] = old.get(f"{endpoint}_status")
                row[endpoint] = old.get(endpoint, 0)
                row[f"{endpoint}_pages"] = old.get(f"{endpoint}_pages", 0)
            ok = row[f"{endpoint}_status"] == 200 or (row[f"{endpoint}_status"] == 404 and empty_ok(hour))
            if not ok:
                missing[endpoint].append(hour_text(hour))
        if fetched_now:
            row["_landed_at"] = landed_at
        row["complete"] = hour_text(hour) not in missing["trips"] and hour_text(hour) not in missing["events"]
        ledger_rows.append(row)
    hours_table = pa.Table.from_pylist(ledger_rows, schema=HOURS_SCHEMA)
    missing_hours = sorted(set(missing["trips"]) | set(missing["events"]))
    complete = not missing_hours

    # ---- merge with what the previous landing holds for the hours not asked again
    duplicates: Counter = Counter()
    carried_rows = 0
    tables = {}
    for name, rows, key, time_column, endpoint in (("data", trips, "trip_id", "end_time", "trips"),
                                                   ("events", events, "event_id", "event_time", "events")):
        new = rows.table()
        old = plan.carried.get(name)
        if old is not None and old.num_rows:
            refetched = pa.array([_ms(h) for h in plan.fetch[endpoint]], TIMESTAMP)
            old = old.filter(pc.invert(pc.is_in(old["_hour"], value_set=refetched)))
            carried_rows += old.num_rows
            new = pa.concat_tables([old, new])
        tables[name] = _dedupe_sort(new, key, time_column, duplicates, "trips" if name == "data" else "events")
    quarantine_table = pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA)
    old_quarantine = plan.carried.get("quarantine")
    if old_quarantine is not None and old_quarantine.num_rows:
        refetched = {endpoint: set(plan.fetch[endpoint]) for endpoint in ENDPOINT_NAMES}
        keep = [row for row in old_quarantine.to_pylist()
                if row["_hour"] not in refetched["trips" if row["endpoint"] == "trips" else "events"]]
        quarantine_table = pa.concat_tables([pa.Table.from_pylist(keep, schema=QUARANTINE_SCHEMA), quarantine_table])
    if quarantine_table.num_rows:
        quarantine_table = quarantine_table.sort_by([("_hour", "ascending"), ("endpoint", "ascending"),
                                                     ("raw", "ascending")])

    fetched = {e: sum(1 for (endpoint, _), a in answers.items() if endpoint == e and a["status"] is not None)
               for e in ENDPOINT_NAMES}
    total_pages = sum(a["pages"] for a in answers.values())
    probed["watermark"] = (
        f"complete|{hour_text(hours[0])}..{hour_text(hours[-1])}" if complete
        else _incomplete_watermark(f"missing={len(missing_hours)}"))
    stats = {
        "provider": provider.name,
        "mds_version": provider.version,
        "hours": len(hours),
        "fetched_hours": fetched,
        "missing_hours": missing_hours,
        "missing": missing,
        "complete": complete,
        "pages": total_pages,
        "requests": client.counters["requests"],
        "token_requests": client.counters["token_requests"],
        "unauthorized_retries": client.counters["unauthorized_retries"],
        "lenient_json_pages": client.counters["lenient_json_pages"],
        "quarantine_reasons": dict(sorted(Counter(quarantine_table["_reason_kind"].to_pylist()).items())),
        "district_unmatched": {"trip_start": _unmatched(tables["data"], "start_lon", "council_district_start"),
                               "trip_end": _unmatched(tables["data"], "end_lon", "council_district_end"),
                               "events": _unmatched(tables["events"], "lon", "council_district")},
        "districts": districts.describe(),
        "duplicates_dropped": {"trips": duplicates["trips"], "events": duplicates["events"]},
        "merged_from_previous": carried_rows,
        "events_rows": tables["events"].num_rows,
        "fetch_seconds": round(time.monotonic() - started, 3),
    }
    level = logging.INFO if complete else logging.WARNING
    log.log(level, "mds %s %s: %d trips, %d events, %d quarantined; %s", provider.name, month,
            tables["data"].num_rows, tables["events"].num_rows, quarantine_table.num_rows,
            "complete" if complete else f"{len(missing_hours)} hour(s) missing, first {missing_hours[0]}")
    return BlockData(data=tables["data"], quarantine=quarantine_table if quarantine_table.num_rows else None,
                     stats=stats, tables={"events": tables["events"], "hours": hours_table})


def _unmatched(table: pa.Table, lon: str, district: str) -> int:
    """Rows with a point that fell in no district."""
    if table.num_rows == 0:
        return 0
    return pc.sum(pc.and_(pc.is_valid(table[lon]), pc.is_null(table[district])).cast(pa.int64())).as_py() or 0


def _fetch_hour(client: Client, url: str, params: dict, key: str) -> tuple[int, list, int]:
    """All pages of one endpoint-hour: ``(200, records, pages)`` or ``(404, [], pages)`` (pages:
    200 answers read)."""
    records: list = []
    pages = 0
    seen: set[str] = set()
    family = client.provider.family
    next_url, next_params = url, params
    while next_url:
        status, payload = client.get_page(next_url, next_params)
        if status == 404:
            # The hour (or a later page of it) is not there yet: the whole hour is missing.
            return 404, [], pages
        pages += 1
        if not isinstance(payload, dict):
            raise MdsFormatError(f"{client.provider.name}: {_show(next_url, next_params)} answered a JSON "
                                 f"{type(payload).__name__}, not an object")
        container = payload.get("data") if family != "2.0" else payload
        if not isinstance(container, dict) or not isinstance(container.get(key), list):
            where = f"data.{key}" if family != "2.0" else key
            raise MdsFormatError(f"{client.provider.name}: {_show(next_url, next_params)} has no {where} array "
                                 f"(MDS {client.provider.version} response shape; top-level keys {sorted(payload)[:10]})")
        records.extend(container[key])
        links = payload.get("links")
        link = links.get("next") if isinstance(links, dict) else None
        if not isinstance(link, str) or not link:
            break
        link = urljoin(next_url, link)
        if link in seen or len(seen) >= MAX_PAGES_PER_HOUR:
            raise MdsFormatError(f"{client.provider.name}: links.next of {_show(url, params)} loops or never ends "
                                 f"({len(seen)} pages)")
        seen.add(link)
        next_url, next_params = link, None
    return 200, records, pages
