"""MDS's HTTP client: OAuth client-credentials tokens (cached, refreshed, never logged), paged GETs
with retries, lenient JSON, and one endpoint-hour's pages."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import Counter
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from civic_pipelines.core import secrets
from civic_pipelines.http import (
    RETRY_STATUSES,
    SourceHTTPError,
    page_retry,
    read_whole_body,
    request_timeout,
    retry_policy,
)
from civic_pipelines.sources.mds.config import Provider, provider_conn_id
from civic_pipelines.sources.mds.contract import MAX_PAGES_PER_HOUR, TOKEN_ATTEMPTS, MdsAuthError, MdsFormatError

log = logging.getLogger(__package__)  # one logger for the source, whichever module logs


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
                provider.token_url,
                data={"grant_type": "client_credentials"},
                auth=(provider.client_id, provider.secret),
                headers={"Accept": "application/json"},
                timeout=request_timeout(),
                **self.settings(provider.token_url),
            )
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
                + ": check the client id and secret of connection "
                + provider_conn_id(provider.name)
            )
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

    @page_retry  # decorated once, not on each of a block's ~1,500 requests (tenacity's set-up is not free)
    def _get(self, url: str, params: dict | None) -> tuple[int, bytes]:
        headers = {"Accept": self.provider.accept, **self.auth.headers()}
        self.counters["requests"] += 1
        response = self.session.lean_get(
            url, params=params, headers=headers, timeout=request_timeout(), **self.settings(url)
        )
        return response.status_code, read_whole_body(response)

    def get_page(self, url: str, params: dict | None) -> tuple[int, object]:
        """``(200, payload)`` or ``(404, None)``; a 401 refreshes an OAuth2 token once; anything
        else raises (429/5xx only after the session's retries)."""
        status, body = self._get(url, params)
        if status == 401 and self.auth.can_refresh:
            self.counters["unauthorized_retries"] += 1
            log.info("mds %s: 401 on %s: fetching a new token and asking again", self.provider.name, _show(url, params))
            self.auth.invalidate()
            status, body = self._get(url, params)
        if status == 200:
            try:
                payload, lenient = loads_lenient(body)
            except orjson.JSONDecodeError as error:
                raise MdsFormatError(
                    f"{self.provider.name}: {_show(url, params)} answered 200 with a body that is not JSON ({error})"
                ) from None
            if lenient:
                self.counters["lenient_json_pages"] += 1
            return 200, payload
        if status == 404:
            return 404, None
        detail = self.auth.redact(_error_text(body))
        where = _show(url, params)
        if status == 401:
            raise MdsAuthError(
                f"{self.provider.name}: 401 unauthorised from {where}: check the credentials of "
                f"connection {provider_conn_id(self.provider.name)}{detail}"
            )
        if status == 406:
            raise SourceHTTPError(
                f"{self.provider.name}: 406 from {where}: the provider does not serve MDS "
                f"{self.provider.version} (Accept: {self.provider.accept}){detail}"
            )
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
            raise MdsFormatError(
                f"{client.provider.name}: {_show(next_url, next_params)} answered a JSON "
                f"{type(payload).__name__}, not an object"
            )
        container = payload.get("data") if family != "2.0" else payload
        if not isinstance(container, dict) or not isinstance(container.get(key), list):
            where = f"data.{key}" if family != "2.0" else key
            raise MdsFormatError(
                f"{client.provider.name}: {_show(next_url, next_params)} has no {where} array "
                f"(MDS {client.provider.version} response shape; top-level keys {sorted(payload)[:10]})"
            )
        records.extend(container[key])
        links = payload.get("links")
        link = links.get("next") if isinstance(links, dict) else None
        if not isinstance(link, str) or not link:
            break
        link = urljoin(next_url, link)
        if link in seen or len(seen) >= MAX_PAGES_PER_HOUR:
            raise MdsFormatError(
                f"{client.provider.name}: links.next of {_show(url, params)} loops or never ends ({len(seen)} pages)"
            )
        seen.add(link)
        next_url, next_params = link, None
    return 200, records, pages
