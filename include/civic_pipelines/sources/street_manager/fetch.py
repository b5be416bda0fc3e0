"""Street Manager's fetch: the archive URL, the HEAD watermark, the block (download -> reader ->
writer) and the resumed streamed download."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime

from civic_pipelines.http import BODY_ERRORS, SourceHTTPError, TransientBodyError, request_timeout, retry_policy
from civic_pipelines.months import current_month, next_month, parse_month
from civic_pipelines.sources.base import NotPublished, refuse_emptying
from civic_pipelines.sources.street_manager.contract import SPEC, ArchiveChanged, ArchiveTruncated, data_schema
from civic_pipelines.sources.street_manager.transform import ArchiveReader

log = logging.getLogger(__package__)  # one logger for the source, whichever module logs

HTTP_PIECE = 1 << 20
RESUME_ATTEMPTS = 5


# ---------------------------------------------------------------- the module interface


def auth_headers(connection) -> dict:
    return {}  # open data: no key, no registration


def archive_url(connection, part: str, month: str) -> str:
    year, mon = month.split("-")
    return f"{connection.base_url.rstrip('/')}/{part}/{year}/{mon}.zip"


def probe(session, connection, month: str, part: str, previous: dict | None = None) -> dict:
    """The archive's watermark from a ``HEAD``; :class:`NotPublished` before it exists."""
    if part not in SPEC.parts:
        raise ValueError(f"street_manager part {part!r}; known: {', '.join(SPEC.parts)}")
    if month >= current_month():
        due = next_month(parse_month(month))
        raise NotPublished(f"the {part} archive for {month} is published on {due.isoformat()}, after the month ends")
    url = archive_url(connection, part, month)
    response = session.head(url, timeout=request_timeout(), allow_redirects=True)
    response.close()
    if response.status_code == 404:
        raise NotPublished(
            f"no {part} archive for {month} at {url} (HTTP 404): DfT publishes a month on the 1st "
            "of the next; a month still missing later was never published"
        )
    if response.status_code >= 400:
        raise SourceHTTPError(f"HEAD {url}: HTTP {response.status_code}")
    etag = response.headers.get("ETag")
    modified = response.headers.get("Last-Modified")
    length = response.headers.get("Content-Length")
    if not (etag or modified):
        raise SourceHTTPError(f"HEAD {url}: neither ETag nor Last-Modified; cannot tell a changed archive")
    return {
        "watermark": f"etag={etag}|last-modified={modified}|length={length}",
        "url": url,
        "etag": etag,
        "last_modified": modified,
        "length": int(length) if length and length.isdigit() else None,
    }


def stream_block(
    session,
    connection,
    month: str,
    probed: dict,
    landed_at: datetime,
    writer,
    *,
    part: str,
    previous: dict | None = None,
    force: bool = False,
    **_runner_keywords,
) -> dict:
    """Download, unzip, parse, flatten, validate and write one archive; returns the manifest's
    source-specific fields. Raises (and lands nothing) on a truncated or corrupt archive, and on
    an archive with nothing to land where the previous landing had rows (unless ``force``). The
    runner's ``location`` does not concern it: an archive is always read whole."""
    url = probed.get("url") or archive_url(connection, part, month)
    reader = ArchiveReader(part, month, landed_at)
    download = Download(session, url, probed)
    started = time.monotonic()
    try:
        with closing(reader.run(download.pieces(), cancel=download.close)) as batches:
            for batch, quarantine in batches:
                if batch.num_rows:
                    writer.write(batch)
                if quarantine is not None:
                    writer.write_quarantine(quarantine)
    finally:
        download.close()  # the central directory that follows the members is not needed
    stats = reader.finish()
    refuse_emptying(
        previous,
        reader.rows_written,
        force,
        f"the {part} archive for {month} holds {reader.events} events and no row to land",
    )
    stats["archive_size"] = download.expected  # Content-Length
    stats["archive_bytes"] = download.received  # read: up to the central directory, which is not needed
    stats["download_resumes"] = download.resumes
    stats["read_seconds"] = round(time.monotonic() - started, 3)
    if reader.rows_written == 0:
        writer.write(data_schema(part).empty_table())  # the schema, for an empty archive
    return stats


# ---------------------------------------------------------------- download


class Download:
    """The archive's bytes as they arrive, resumed with ``Range``/``If-Range`` after a dropped
    connection (the replay and S3 both honour it), so a gigabyte is not fetched twice."""

    def __init__(self, session, url: str, probed: dict) -> None:
        self.session = session
        self.url = url
        self.etag = probed.get("etag")
        self.expected = probed.get("length")
        self.received = 0
        self.resumes = 0
        self.closed = False
        self._response = None

    def close(self) -> None:
        """Stop the download from another thread (the reader gave up): the socket is closed."""
        self.closed = True
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a socket that another thread reads may fail
                pass

    def pieces(self) -> Iterator[bytes]:
        attempt = 0
        while not self.closed:
            headers = {}
            if self.received:
                headers["Range"] = f"bytes={self.received}-"
                if self.etag:
                    headers["If-Range"] = self.etag
            try:
                with self.session.get(self.url, stream=True, timeout=request_timeout(), headers=headers) as response:
                    self._response = response
                    self._check(response)
                    for piece in response.iter_content(chunk_size=HTTP_PIECE):
                        self.received += len(piece)
                        yield piece
                if self.expected is not None and self.received < self.expected:
                    raise TransientBodyError(f"body cut short: {self.received} of {self.expected} bytes")
                return
            except BODY_ERRORS as error:
                if self.closed:
                    return
                attempt += 1
                if attempt > RESUME_ATTEMPTS:
                    raise ArchiveTruncated(
                        f"download of {self.url} kept failing after {self.received} bytes: {error}"
                    ) from error
                self.resumes += 1
                log.warning(
                    "download of %s cut after %d bytes (%s): resuming with Range", self.url, self.received, error
                )
                retry_policy().sleep(attempt - 1, scale=0.4, cap=10.0)

    def _check(self, response) -> None:
        status = response.status_code
        etag = response.headers.get("ETag")
        if self.received == 0:
            if status != 200:
                raise SourceHTTPError(f"GET {self.url}: HTTP {status}")
            if self.etag and etag and etag != self.etag:
                raise ArchiveChanged(
                    f"{self.url} changed since its HEAD (ETag {self.etag} -> {etag}): run the block again"
                )
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                self.expected = int(length)
            return
        if status == 200:
            raise ArchiveChanged(f"{self.url} changed while it was read (a resume got the whole new archive)")
        content_range = response.headers.get("Content-Range", "")
        if status != 206 or not content_range.startswith(f"bytes {self.received}-"):
            raise SourceHTTPError(f"resume of {self.url} at byte {self.received}: HTTP {status} {content_range!r}")
