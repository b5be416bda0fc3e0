"""One HTTP session per block: retries with exponential backoff, Retry-After, timeouts.

urllib3's ``Retry`` covers failures up to the response headers (connect errors, 429/5xx with
``Retry-After``, Socrata's 202 "still processing"). A connection that dies while the body streams
(a reset mid-page) surfaces later, as ``ChunkedEncodingError``/``ProtocolError``; tenacity retries
the whole page for those.
"""

from __future__ import annotations

import logging
import os

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

RETRY_STATUSES = (202, 429, 500, 502, 503, 504)
DEFAULT_TIMEOUT = (10, 120)  # connect, read (seconds)


def request_timeout() -> tuple[float, float]:
    """(connect, read) seconds; ``CIVIC_HTTP_READ_TIMEOUT`` shortens the read side (the fault
    tests use it to make a stalled answer time out quickly)."""
    read = os.environ.get("CIVIC_HTTP_READ_TIMEOUT")
    return (DEFAULT_TIMEOUT[0], float(read)) if read else DEFAULT_TIMEOUT


def _backoff_factor() -> float:
    return float(os.environ.get("CIVIC_HTTP_BACKOFF", "0.5"))


def make_session(headers: dict | None = None, total_retries: int = 6) -> requests.Session:
    retry_policy = Retry(
        total=total_retries,
        connect=total_retries,
        read=total_retries,
        status=total_retries,
        backoff_factor=_backoff_factor(),
        backoff_max=60,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry_policy, pool_connections=2, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": "civic-pipelines/0.1 (+https://github.com/civic-pipelines)"})
    if headers:
        session.headers.update(headers)
    return session


class TransientBodyError(Exception):
    """The response started but its body was cut short; the whole request is worth repeating."""


BODY_ERRORS = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.ReadTimeout,
    Urllib3HTTPError,  # IncompleteRead, ProtocolError, ReadTimeoutError while reading the raw body
    TransientBodyError,
)

page_retry = retry(
    retry=retry_if_exception_type(BODY_ERRORS),
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


def get_bytes(session: requests.Session, url: str, params: dict | None = None, timeout=None,
              headers_out: dict | None = None) -> bytes:
    """GET a whole body, retried as a unit if the body is cut short; raises on a final HTTP error.
    ``headers_out``, when given, receives the answer's headers (names lower-cased)."""

    @page_retry
    def _get() -> bytes:
        response = session.get(url, params=params, timeout=timeout or request_timeout(), stream=True)
        try:
            # One read of the raw body: requests' .content assembles 10 kB chunks in Python, which
            # costs a third of the transfer time on a 25 MB page.
            body = response.raw.read(decode_content=True)
        except BaseException:
            response.close()
            raise
        response.raw.release_conn()
        expected = response.headers.get("Content-Length")
        if expected is not None and response.headers.get("Content-Encoding") is None and int(expected) != len(body):
            raise TransientBodyError(f"body cut short: {len(body)} of {expected} bytes")
        status = response.status_code
        if status in RETRY_STATUSES and status != 200:
            raise SourceHTTPError(f"{status} from {response.url} after retries: {body[:300]!r}", status, body[:2000])
        if status >= 400:
            raise SourceHTTPError(f"{status} from {response.url}: {body[:500].decode('utf-8', 'replace')}", status,
                                  body[:2000])
        if headers_out is not None:
            headers_out.clear()
            headers_out.update({name.lower(): value for name, value in response.headers.items()})
        return body

    return _get()
