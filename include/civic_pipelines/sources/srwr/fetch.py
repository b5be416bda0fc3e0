"""SRWR's fetch: the two-step download with a fresh pre-signed URL per attempt, the probe's
watermark, and the block."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, date, datetime
from urllib.parse import urljoin, urlsplit

import orjson

from civic_pipelines.http import BODY_ERRORS, RETRY_STATUSES, body_pieces, page_retry, request_timeout, retry_policy
from civic_pipelines.sources.base import BlockData, NotPublished, refuse_emptying
from civic_pipelines.sources.srwr.contract import HTTP_CHUNK, URL_ATTEMPTS, SrwrError, identifier_for, today_for
from civic_pipelines.sources.srwr.transform import read_file

log = logging.getLogger(__package__)  # one logger for the source, whichever module logs


# ---------------------------------------------------------------- HTTP


def auth_headers(connection) -> dict:
    return {}  # the export API is public (contract: no auth documented)


def export_url(connection, identifier: str) -> str:
    return f"{connection.base_url.rstrip('/')}/export/api/v1/file/{identifier}.zip"


def presigned_url(session, connection, identifier: str) -> str:
    """Step 1: a fresh pre-signed URL for the identifier's zip."""
    url = export_url(connection, identifier)

    @page_retry
    def attempt() -> tuple[int, bytes]:
        response = session.get(url, timeout=request_timeout())
        return response.status_code, response.content

    status, body = attempt()
    if status == 404:
        raise NotPublished(f"the export API has no file {identifier!r} (404 from {url})")
    if status >= 400 or status in RETRY_STATUSES and status != 200:
        raise SrwrError(f"{status} from {url}: {body[:300].decode('utf-8', 'replace')}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SrwrError(f'{url}: expected JSON {{"url": ...}}, got {body[:120]!r}') from None
    signed = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(signed, str) or not signed:
        raise SrwrError(f'{url}: the JSON has no "url": {body[:200]!r}')
    return signed if "://" in signed else urljoin(connection.base_url.rstrip("/") + "/", signed.lstrip("/"))


def _public(url: str) -> str:
    """A pre-signed URL without its query (the signature is a credential: never logged)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _pause(attempt: int) -> None:
    retry_policy().sleep(attempt - 1, cap=5.0)


def with_fresh_url(session, connection, identifier: str, consume, headers: dict | None = None):
    """Step 1 then step 2, as many as ``URL_ATTEMPTS`` times: a 403 (expired or rejected signature)
    or a body cut short asks step 1 for a new URL. ``consume(response, attempt_info)`` reads the
    response; it must keep no state between attempts."""
    last = None
    for attempt in range(1, URL_ATTEMPTS + 1):
        signed = presigned_url(session, connection, identifier)
        try:
            response = session.get(signed, stream=True, timeout=request_timeout(), headers=headers)
        except BODY_ERRORS as error:
            last = f"{type(error).__name__}: {error}"
            log.warning("srwr %s: download attempt %d failed (%s); asking for a new URL", identifier, attempt, last)
            _pause(attempt)
            continue
        with response:
            if response.status_code == 403:
                snippet = (response.raw.read(400, decode_content=True) or b"").decode("utf-8", "replace")
                code = re.search(r"<Code>([^<]*)</Code>", snippet)
                last = f"403 {code.group(1) if code else ''} from {_public(signed)}".strip()
                log.warning("srwr %s: the pre-signed URL was refused (%s); asking for a new one", identifier, last)
                continue
            if (
                response.status_code >= 400
                or response.status_code in RETRY_STATUSES
                and response.status_code not in (200, 206)
            ):
                snippet = (response.raw.read(300, decode_content=True) or b"").decode("utf-8", "replace")
                raise SrwrError(f"{response.status_code} from {_public(signed)}: {snippet}")
            try:
                return consume(response, {"attempts": attempt, "url": _public(signed)})
            except BODY_ERRORS as error:
                last = f"{type(error).__name__}: {error}"
                log.warning(
                    "srwr %s: download attempt %d cut short (%s); asking for a new URL", identifier, attempt, last
                )
                _pause(attempt)
    raise SrwrError(f"srwr {identifier}: no usable download after {URL_ATTEMPTS} pre-signed URLs (last: {last})")


def watermark_of(identifier: str, headers, total: int | None, today: date) -> str:
    etag = headers.get("ETag")
    modified = headers.get("Last-Modified")
    parts = [identifier]
    if etag:
        parts.append(f"etag={etag}")
    if modified:
        parts.append(f"last-modified={modified}")
    if total is not None:
        parts.append(f"length={total}")
    if not etag and not modified:
        parts.append(f"fetched={today.isoformat()}")  # the contract's "identifier plus download date"
    return "|".join(parts)


def _total_length(response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"^bytes \d+-\d+/(\d+)$", content_range.strip())
    if match:
        return int(match.group(1))
    if response.status_code == 200 and response.headers.get("Content-Length"):
        return int(response.headers["Content-Length"])
    return None


def probe(session, connection, month: str, part: str | None = None, previous: dict | None = None) -> dict:
    """The month's identifier and its file's watermark (step 1 + a one-byte ranged GET)."""
    today = today_for(connection)
    identifier = identifier_for(month, today)

    def read_validators(response, info):
        # A host that ignores Range sends the whole body: closing the response drops it unread.
        return {
            "headers": {k: response.headers.get(k) for k in ("ETag", "Last-Modified")},
            "total": _total_length(response),
            **info,
        }

    found = with_fresh_url(session, connection, identifier, read_validators, headers={"Range": "bytes=0-0"})
    return {
        "watermark": watermark_of(identifier, found["headers"], found["total"], today),
        "identifier": identifier,
        "today": today.isoformat(),
        "etag": found["headers"]["ETag"],
        "last_modified": found["headers"]["Last-Modified"],
        "size": found["total"],
    }


def extract_block(
    session,
    connection,
    month: str,
    probed: dict,
    landed_at: datetime | None = None,
    *,
    previous: dict | None = None,
    force: bool = False,
    **_runner_keywords,
) -> BlockData:
    """One month's block; of the runner's keywords only ``previous`` and ``force`` concern SRWR
    (a block has no parts and is always downloaded whole), to refuse emptying a landed block."""
    landed_at = landed_at or datetime.now(UTC)
    today = date.fromisoformat(probed["today"]) if probed.get("today") else today_for(connection)
    identifier = probed.get("identifier") or identifier_for(month, today)

    def consume(response, info):
        counter = {"bytes": 0}
        block = read_file(body_pieces(response, counter, HTTP_CHUNK), month, identifier, today, landed_at, counter)
        downloaded = watermark_of(identifier, response.headers, _total_length(response), today)
        return block, downloaded, info

    started = time.monotonic()
    block, downloaded, info = with_fresh_url(session, connection, identifier, consume)
    if downloaded != probed.get("watermark"):
        # The file changed between the probe and the download: record what was actually read.
        log.warning("srwr %s: the file changed since the probe (%s -> %s)", month, probed.get("watermark"), downloaded)
        probed["watermark"] = downloaded
    refuse_emptying(
        previous,
        block.data.num_rows,
        force,
        f"the {identifier} export holds no activity for {month} ({block.stats['file_lines']} lines)",
    )
    block.stats = {
        "download_url": info["url"],
        "url_attempts": info["attempts"],
        **block.stats,
        "download_parse_seconds": round(time.monotonic() - started, 3),
    }
    return block
