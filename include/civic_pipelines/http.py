"""One HTTP session per block: one retry policy, Retry-After, timeouts, fail-fast on dead hosts.

Who retries what, once each (never a retry chain inside another):

* urllib3's ``Retry`` (:class:`CivicRetry`) owns everything up to the response headers: 429/5xx
  and Socrata's 202 "still processing" (honouring ``Retry-After``, fractional seconds included),
  read timeouts before the headers, and connect *timeouts* while the connect deadline
  (``CIVIC_HTTP_CONNECT_DEADLINE``, 30 s) lasts. A name that does not resolve or a refused
  connection is an answer, not a glitch: it is not retried here; the request fails at once with
  :class:`SourceUnreachable`, one line naming the connection (the DAG's task retries, minutes later,
  are the retry).
* :class:`RetryPolicy` (:func:`retry_policy`) is the one backoff every retry reads: urllib3's, and
  the few loops a source runs itself (a resumed archive download, a fresh pre-signed URL, an
  ArcGIS error envelope, an OAuth token). ``CIVIC_HTTP_BACKOFF`` (seconds, default 0.5) sets it.
* tenacity (:data:`page_retry`) owns only what urllib3 cannot see: a body cut short *after* the
  headers (a reset mid-page, ``ChunkedEncodingError``/``ProtocolError``, a stall mid-body). It never
  repeats a request whose urllib3 budget is spent, nor an unreachable host.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from tenacity import before_sleep_log, retry, retry_if_exception, stop_after_attempt, wait_exponential
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

RETRY_STATUSES = (202, 429, 500, 502, 503, 504)
DEFAULT_TIMEOUT = (10, 120)  # connect, read (seconds)
DEFAULT_CONNECT_DEADLINE = 30.0  # seconds a request may spend failing to connect before it gives up


def request_timeout() -> tuple[float, float]:
    """(connect, read) seconds; ``CIVIC_HTTP_CONNECT_TIMEOUT`` and ``CIVIC_HTTP_READ_TIMEOUT`` override
    them (the fault tests use the read one to make a stalled answer time out quickly)."""
    connect = os.environ.get("CIVIC_HTTP_CONNECT_TIMEOUT")
    read = os.environ.get("CIVIC_HTTP_READ_TIMEOUT")
    return (float(connect) if connect else DEFAULT_TIMEOUT[0], float(read) if read else DEFAULT_TIMEOUT[1])


def connect_deadline() -> float:
    """Seconds a request may spend on connect timeouts and their retries (``CIVIC_HTTP_CONNECT_DEADLINE``)."""
    return float(os.environ.get("CIVIC_HTTP_CONNECT_DEADLINE", DEFAULT_CONNECT_DEADLINE))


DEFAULT_BACKOFF = 0.5  # seconds before the first retry; doubled on each following one


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before a retry, for every request of every source.

    ``backoff_factor`` is urllib3's (``factor * 2 ** (retry - 1)``, at most ``backoff_max``); a
    source that retries on its own (a loop urllib3 cannot see) asks :meth:`delay` rather than
    reading the setting itself, so one variable speeds up or slows down every retry at once.
    """

    backoff_factor: float = DEFAULT_BACKOFF
    backoff_max: float = 60.0

    def delay(self, exponent: int, *, scale: float = 1.0, cap: float | None = None) -> float:
        """``scale * backoff_factor * 2 ** exponent`` seconds, at most ``cap`` (else ``backoff_max``)."""
        return min(self.backoff_max if cap is None else cap, scale * self.backoff_factor * 2**exponent)

    def sleep(self, exponent: int, *, scale: float = 1.0, cap: float | None = None) -> float:
        """Wait :meth:`delay` seconds; returns them (for the log line)."""
        seconds = self.delay(exponent, scale=scale, cap=cap)
        time.sleep(seconds)
        return seconds


def retry_policy() -> RetryPolicy:
    """The policy now (``CIVIC_HTTP_BACKOFF`` is read on each call: tests and the fault matrix set it per test)."""
    return RetryPolicy(backoff_factor=float(os.environ.get("CIVIC_HTTP_BACKOFF", DEFAULT_BACKOFF)))


class SourceUnreachable(RuntimeError):
    """The source's host could not be connected to (no such name, refused, connect timed out past
    the deadline). Not a ``requests`` exception on purpose: no body-retry loop catches it."""


class CivicRetry(Retry):
    """urllib3's ``Retry`` with a fractional ``Retry-After`` honoured (``"0.5"`` is 0.5 s; urllib3
    accepts only whole seconds or a date, and fails the request on anything else), and connect
    errors bounded: a name that does not resolve or a refused connection is not retried, a connect
    timeout is retried only while the next attempt still ends within ``connect_deadline``."""

    def __init__(
        self,
        *args,
        connect_deadline: float = DEFAULT_CONNECT_DEADLINE,
        connect_timeout: float = DEFAULT_TIMEOUT[0],
        first_connect_error: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.connect_deadline = connect_deadline
        self.connect_timeout = connect_timeout
        self.first_connect_error = first_connect_error

    def new(self, **kw):
        kw.setdefault("connect_deadline", self.connect_deadline)
        kw.setdefault("connect_timeout", self.connect_timeout)
        kw.setdefault("first_connect_error", self.first_connect_error)
        return super().new(**kw)

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after.strip())
        except ValueError:
            return super().parse_retry_after(retry_after)  # an HTTP date
        if not math.isfinite(seconds):
            return super().parse_retry_after(retry_after)  # "inf"/"nan": urllib3's InvalidHeader
        return min(max(seconds, 0.0), self.retry_after_max)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and isinstance(error, ConnectTimeoutError):
            if isinstance(error, NewConnectionError):  # no such name, refused, unreachable: an answer
                raise MaxRetryError(_pool, url, error).with_traceback(_stacktrace)
            now = time.monotonic()
            # The first attempt began a connect timeout before its error.
            first = self.first_connect_error if self.first_connect_error is not None else now - self.connect_timeout
            if now - first + self.get_backoff_time() + self.connect_timeout > self.connect_deadline:
                raise MaxRetryError(_pool, url, error).with_traceback(_stacktrace)
            following = super().increment(method, url, response, error, _pool, _stacktrace)
            following.first_connect_error = first
            return following
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _unreachable_reason(error: BaseException) -> str | None:
    """Why a connect failed, in words, when ``error`` is one (else None)."""
    reason = error.args[0] if getattr(error, "args", None) else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> its cause
    if isinstance(reason, NameResolutionError):
        return "the host name does not resolve"
    if isinstance(reason, NewConnectionError):
        text = str(reason)
        if "refused" in text.lower():
            return "connection refused"
        return text.split(": ", 1)[-1]
    if isinstance(reason, ConnectTimeoutError) or isinstance(error, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    return None


class CivicSession(requests.Session):
    """A session that turns a failed connect into one line naming the connection."""

    conn_id: str | None = None

    def request(self, method, url, *args, **kwargs):
        with self._reachable(url):
            return super().request(method, url, *args, **kwargs)

    @contextmanager
    def _reachable(self, url: str):
        try:
            yield
        except (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout) as error:
            why = _unreachable_reason(error)
            if why is None:
                raise
            parts = urlsplit(url)
            where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")  # never userinfo
            named = f" (connection {self.conn_id})" if self.conn_id else ""
            raise SourceUnreachable(
                f"cannot reach {where}{named}: {why}; check the connection's host, port and schema"
            ) from None

    def lean_get(
        self, url: str, params: dict | None = None, headers: dict | None = None, **send_kwargs
    ) -> requests.Response:
        """A streamed GET for a source that makes thousands of small requests (MDS: ~1,500 a
        block), handed straight to the transport adapter: the same retries, timeouts, TLS,
        proxies and errors as :meth:`get`, without the session's per-request merging of cookies,
        hooks and settings (a quarter of a request's CPU on loopback). The caller passes what
        :meth:`get` would have merged from the environment (``proxies``/``verify``/``cert``) and
        ``timeout``. An answer that redirects is asked again through :meth:`get`, which follows it."""
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        prepared = requests.Request("GET", url, params=params, headers=merged).prepare()
        with self._reachable(url):
            response = self.get_adapter(prepared.url).send(prepared, stream=True, **send_kwargs)
        if response.is_redirect:
            response.close()
            return self.get(url, params=params, headers=headers, stream=True, **send_kwargs)
        return response


def make_session(headers: dict | None = None, total_retries: int = 6, conn_id: str | None = None) -> requests.Session:
    """``conn_id`` names the Airflow connection the session talks to, for the message when the
    host cannot be reached."""
    policy = retry_policy()
    urllib3_retry = CivicRetry(
        total=total_retries,
        connect=total_retries,
        read=total_retries,
        status=total_retries,
        backoff_factor=policy.backoff_factor,
        backoff_max=policy.backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        connect_deadline=connect_deadline(),
        connect_timeout=request_timeout()[0],
    )
    session = CivicSession()
    session.conn_id = conn_id
    adapter = HTTPAdapter(max_retries=urllib3_retry, pool_connections=2, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": "civic-pipelines/0.1 (+https://github.com/civic-pipelines)"})
    if headers:
        session.headers.update(headers)
    return session


class TransientBodyError(Exception):
    """The response started but its body was cut short; the whole request is worth repeating."""


def body_pieces(response, counter: dict, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A streamed response body in pieces of ``chunk`` bytes, counted in ``counter["bytes"]``; a body
    shorter than its Content-Length is a :class:`TransientBodyError` (the caller repeats or resumes)."""
    expected = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding") not in (None, "identity")
    while True:
        piece = response.raw.read(chunk, decode_content=True)
        if not piece:
            break
        counter["bytes"] += len(piece)
        yield piece
    if expected is not None and not encoded and int(expected) != counter["bytes"]:
        raise TransientBodyError(f"body cut short: {counter['bytes']} of {expected} bytes")


def read_whole_body(response) -> bytes:
    """A streamed response's whole body in one raw read (requests' ``.content`` assembles 10 kB chunks
    in Python, a third of the transfer time on a 25 MB page), its connection released; a body shorter
    than its Content-Length is a :class:`TransientBodyError`."""
    try:
        body = response.raw.read(decode_content=True)
    except BaseException:
        response.close()
        raise
    response.raw.release_conn()
    expected = response.headers.get("Content-Length")
    if expected is not None and response.headers.get("Content-Encoding") is None and int(expected) != len(body):
        raise TransientBodyError(f"body cut short: {len(body)} of {expected} bytes")
    return body


BODY_ERRORS = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.ReadTimeout,
    Urllib3HTTPError,  # IncompleteRead, ProtocolError, ReadTimeoutError while reading the raw body
    TransientBodyError,
)


def _body_error(error: BaseException) -> bool:
    """Worth repeating the request: the body broke after the headers. Not a request urllib3 already
    retried until its budget ran out (its error wraps ``MaxRetryError``), nor an unreachable host."""
    if not isinstance(error, BODY_ERRORS):
        return False
    cause = error.args[0] if error.args else None
    return not isinstance(cause, MaxRetryError)


page_retry = retry(
    retry=retry_if_exception(_body_error),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.2, max=10),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)


class SourceHTTPError(RuntimeError):
    """A non-retryable answer from the source (after retries), with the API's own message;
    ``status`` is the HTTP status when there was one (adapters turn 401/403 into a message that
    names the connection)."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def get_bytes(
    session: requests.Session, url: str, params: dict | None = None, timeout=None, headers_out: dict | None = None
) -> bytes:
    """GET a whole body, retried as a unit if the body is cut short; raises on a final HTTP error.
    ``headers_out``, when given, receives the answer's headers (names lower-cased)."""

    @page_retry
    def _get() -> bytes:
        response = session.get(url, params=params, timeout=timeout or request_timeout(), stream=True)
        body = read_whole_body(response)
        status = response.status_code
        if status in RETRY_STATUSES and status != 200:
            raise SourceHTTPError(f"{status} from {response.url} after retries: {body[:300]!r}", status, body[:2000])
        if status >= 400:
            raise SourceHTTPError(
                f"{status} from {response.url}: {body[:500].decode('utf-8', 'replace')}", status, body[:2000]
            )
        if headers_out is not None:
            headers_out.clear()
            headers_out.update({name.lower(): value for name, value in response.headers.items()})
        return body

    return _get()
