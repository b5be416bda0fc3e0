"""DfT Street Manager (England): the monthly open-data archives of permits, activities and
section 58 notices, one block per archive type (``part``) and month.

Owns: the archive URL, the HEAD watermark, the streamed download (resumed with ``Range`` when the
connection drops), the forward zip reader, the JSON parse, the typed flat schema of each part,
normalisation (event types, bare times, coordinates), validation with quarantine, and the drift
report. Contract: ``shared/contracts/street_manager.md``; lake columns:
``docs/lake_contract_street_manager.md``.

**Publication.** ``https://opendata.manage-roadworks.service.gov.uk/{type}/{YYYY}/{MM}.zip``;
month M appears on the 1st of month M+1. :func:`probe` refuses a month that has not ended
without asking, and sends ``HEAD`` for the others: a 404 means not published (the block is
skipped with that reason, through :class:`NotPublished`); otherwise the watermark is the
archive's ``ETag``, ``Last-Modified`` and ``Content-Length`` together, so any change re-lands.

**Reading.** The DfT archives' central directory is broken, so the zip is read forward through
its local file headers as the bytes arrive (never written to disk): each member is inflated and
checked against its CRC-32 and size, members that give their sizes in a data descriptor are read
with a streaming inflater, and the archive is complete only when the central directory's first
record follows the last member. A stream that ends before that is a truncated archive
(:class:`ArchiveTruncated`); bytes that are neither a member nor the directory, and a member that
does not inflate or fails its CRC-32 or size check (damaged bytes: its event is lost, unlike a bad
record, whose text is kept in quarantine), are a corrupt one (:class:`ArchiveCorrupt`). Either
fails the block, so a partial month never lands, and, the writer being aborted, the previous
landing stays. Members are joined into newline-delimited JSON in chunks of ``CHUNK_BYTES``
(their own line breaks, which JSON allows only as whitespace, become spaces) and parsed by
``pyarrow.json`` against the part's explicit schema, each chunk into one typed record batch that
is written at once. Download, unzip and join run in a thread of their own while the previous
chunk is parsed and written, so the two cores overlap; the queue between them holds at most
``QUEUE_CHUNKS`` chunks, so memory is bounded by a few chunks whatever the archive's size.

**Typing and normalisation.** Every contract field is a column (absent keys are null); dates
are ``timestamp[ms, UTC]``; ``event_type`` is normalised to the upper-snake spelling
(``work-start`` and ``Work Start`` are ``WORK_START``; ``CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED``
is ``CURRENT_TRAFFIC_MANAGEMENT_UPDATED``) and the published spelling is kept in
``event_type_published``; ``proposed_start_time`` / ``proposed_end_time`` given as a bare
``"13:50"`` become the UTC instant of that UK-local time on the UK-local day of
``proposed_start_date`` / ``proposed_end_date``; the coordinates' BNG (EPSG:27700) WKT is kept
and ``longitude``/``latitude`` (WGS84) of the point, or of the centroid of a linestring (length
weighted) or polygon (area weighted, holes subtracted), are added with a fixed PROJ pipeline
(EPSG:1314, the OSGB36 to WGS 84 Helmert transformation, about 2 m), so the figures do not depend
on which grids a machine has installed. Fields the contract does not know are kept as JSON in
``extras``, in the event's own shape (``{"object_data": {"new_field": ...}}``), and reported in
the manifest's ``drift``; a known field that arrives with another JSON type is converted to the
column's type and reported too.

**Quarantine** (``quarantine.parquet``: ``member``, ``raw``, ``_reason``, ``_block_month``,
``_landed_at``): a member that is not JSON or not an object, encrypted or compressed with a
method other than deflate, an event without ``event_reference``, ``event_type``, a readable ``event_time`` or its
part's reference number, one of another object type than the archive's, and a repeated
``event_reference`` (the natural key; the first one stays). A required field missing from every
event of a non-empty archive is a schema change, not bad rows: the block fails
(:class:`SchemaDriftError`).
"""

from __future__ import annotations

import logging
import queue
import re
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from civic_pipelines.core import contract
from civic_pipelines.core.contract import LANDED_TYPE
from civic_pipelines.http import BODY_ERRORS, request_timeout, retry_policy, SourceHTTPError, TransientBodyError
from civic_pipelines.months import current_month, next_month, parse_month
from civic_pipelines.sources.base import Capabilities, NotPublished, SchemaDriftError, SourceSpec, refuse_emptying

log = logging.getLogger(__name__)

SPEC = SourceSpec(
    name="street_manager",
    title="Street Manager (England): permits, activities and section 58 notices",
    publisher="Department for Transport (Street Manager open data)",
    # Month M is published during the 1st of M+1 (the hour is not documented): the run at 06:00
    # UTC on the 1st lands M; an archive still missing then is skipped as not published.
    cron="0 6 1 * *",
    cadence="monthly",
    # The contract gives 2020 as the first year; Street Manager went live in July 2020 and public
    # consumers start at permit/2020/07.zip (earlier months are simply not published: skipped).
    first_month="2020-07",
    conn_id="civic_street_manager",
    default_base_url="https://opendata.manage-roadworks.service.gov.uk",
    natural_key="event_reference",
    description=(
        "Street works in England from DfT Street Manager: one zip of JSON events per type and month "
        "(permit ~1.1 million events, about 1 GB; activity; section 58), streamed and flattened into typed parquet."
    ),
    tags=("street_works", "england", "dft"),
    pool_slots=2,
    dbt_tag="street_manager",
    parts=("permit", "activity", "section_58"),
    capabilities=Capabilities(streamed=True),  # a permit archive is ~1 GB: written batch by batch
)

OBJECT_TYPES = {"permit": "PERMIT", "activity": "ACTIVITY", "section_58": "SECTION_58"}
REFERENCE_FIELDS = {"permit": "permit_reference_number", "activity": "activity_reference_number",
                    "section_58": "section_58_reference_number"}
COORDINATE_FIELDS = {"permit": "works_location_coordinates", "activity": "activity_coordinates",
                     "section_58": "section_58_coordinates"}

PERMIT_FIELDS = [
    "work_reference_number", "permit_reference_number", "promoter_swa_code", "promoter_organisation",
    "highway_authority", "works_location_coordinates", "street_name", "area_name", "work_category",
    "traffic_management_type", "proposed_start_date", "proposed_start_time", "proposed_end_date",
    "proposed_end_time", "actual_start_date_time", "actual_end_date_time", "work_status", "usrn",
    "highway_authority_swa_code", "work_category_ref", "traffic_management_type_ref", "work_status_ref",
    "activity_type", "is_ttro_required", "is_covid_19_response", "works_location_type", "permit_conditions",
    "road_category", "is_traffic_sensitive", "is_deemed", "permit_status", "town", "collaborative_working",
    "collaboration_type", "collaboration_type_ref", "close_footway", "close_footway_ref",
    "current_traffic_management_type", "current_traffic_management_type_ref",
    "current_traffic_management_update_date",
]
ACTIVITY_FIELDS = [
    "activity_reference_number", "usrn", "street_name", "town", "area_name", "road_category", "activity_coordinates",
    "activity_name", "activity_type", "activity_type_details", "start_date", "start_time", "end_date", "end_time",
    "activity_location_type", "activity_location_description", "traffic_management_type",
    "traffic_management_required", "collaborative_working", "cancelled", "highway_authority",
    "highway_authority_swa_code",
]
SECTION_58_FIELDS = [
    "section_58_reference_number", "section_58_coordinates", "section_58_status", "start_date", "end_date",
    "section_58_duration", "section_58_extent", "section_58_location_type", "status_change_date",
    "highway_authority_swa_code", "highway_authority", "usrn", "street_name", "area_name", "town",
]
OBJECT_FIELDS = {"permit": PERMIT_FIELDS, "activity": ACTIVITY_FIELDS, "section_58": SECTION_58_FIELDS}
TIMESTAMP_FIELDS = {
    "permit": {"proposed_start_date", "proposed_start_time", "proposed_end_date", "proposed_end_time",
               "actual_start_date_time", "actual_end_date_time", "current_traffic_management_update_date"},
    "activity": {"start_date", "start_time", "end_date", "end_time"},
    "section_58": {"start_date", "end_date", "status_change_date"},
}
# A time that may be published bare ("13:50") -> the date field whose UK-local day it belongs to.
BARE_TIME_FIELDS = {"permit": {"proposed_start_time": "proposed_start_date", "proposed_end_time": "proposed_end_date"},
                    "activity": {}, "section_58": {}}
ENVELOPE_FIELDS = ["event_reference", "event_type", "object_data", "event_time", "object_type", "object_reference",
                   "version"]

# The event types seen in or typed by consumers (contract, "Event types"; not an official list).
KNOWN_EVENT_TYPES = frozenset([
    "PERMIT_SUBMITTED", "PERMIT_GRANTED", "PERMIT_REFUSED", "PERMIT_CANCELLED", "PERMIT_REVOKED",
    "PERMIT_ALTERATION_SUBMITTED", "PERMIT_ALTERATION_GRANTED", "WORK_START", "WORK_STOP", "WORK_START_REVERTED",
    "WORK_STOP_REVERTED", "CURRENT_TRAFFIC_MANAGEMENT_UPDATED", "ACTIVITY_CREATED", "ACTIVITY_UPDATED",
    "ACTIVITY_CANCELLED", "SECTION_58_CREATED", "SECTION_58_IN_FORCE", "SECTION_58_CANCELLED", "SECTION_58_CLOSED",
])
EVENT_TYPE_ALIASES = {"CURRENT_TRAFFIC_MANAGEMENT_TYPE_UPDATED": "CURRENT_TRAFFIC_MANAGEMENT_UPDATED"}

TIMESTAMP = pa.timestamp("ms", tz="UTC")
HTTP_PIECE = 1 << 20
CHUNK_BYTES = 32 << 20  # JSON text per parsed chunk (~20k permit events); one record batch each
QUEUE_CHUNKS = 2  # chunks unzipped ahead of the parser
PARSE_BLOCK = 1 << 20  # pyarrow.json block (its unit of parallel parsing)
RESUME_ATTEMPTS = 5
_LONDON = ZoneInfo("Europe/London")
# OSGB36 / British National Grid -> WGS 84 by EPSG:1314 (Helmert, ~2 m), fixed (see the docstring).
BNG_TO_WGS84 = (
    "+proj=pipeline +step +inv +proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 "
    "+ellps=airy +step +proj=push +v_3 +step +proj=cart +ellps=airy +step +proj=helmert +x=446.448 "
    "+y=-125.157 +z=542.06 +rx=0.15 +ry=0.247 +rz=0.842 +s=-20.489 +convention=position_vector "
    "+step +inv +proj=cart +ellps=WGS84 +step +proj=pop +v_3 +step +proj=unitconvert +xy_in=rad +xy_out=deg"
)


class ArchiveError(RuntimeError):
    """The archive cannot be read whole: the block fails and lands nothing."""


class ArchiveTruncated(ArchiveError):
    """The archive ends before its central directory (published short, or cut in transit)."""


class ArchiveCorrupt(ArchiveError):
    """Bytes that are neither a member nor the central directory, or a member that cannot be delimited."""


class ArchiveChanged(ArchiveError):
    """The archive changed between the HEAD and the GET (or while resuming): run the block again."""


# ---------------------------------------------------------------- schemas


def data_schema(part: str) -> pa.Schema:
    """The lake schema of a part (``data.parquet``)."""
    return _data_schema(part)


@lru_cache(maxsize=None)
def _data_schema(part: str) -> pa.Schema:
    timestamps = TIMESTAMP_FIELDS[part]
    columns = [
        ("event_reference", pa.int64()), ("event_type", pa.string()), ("event_type_published", pa.string()),
        ("event_time", TIMESTAMP), ("object_type", pa.string()), ("object_reference", pa.string()),
        ("version", pa.int32()),
    ]
    columns += [(name, TIMESTAMP if name in timestamps else pa.string()) for name in OBJECT_FIELDS[part]]
    columns += [("longitude", pa.float64()), ("latitude", pa.float64()), ("extras", pa.string())]
    return contract.data_schema(columns)


QUARANTINE_SCHEMA = contract.quarantine_schema([("member", pa.string()), ("raw", pa.string())])


@lru_cache(maxsize=None)
def _parse_schema(part: str, inferred: frozenset) -> pa.Schema:
    """What pyarrow.json is told: the envelope and object_data, every object field a string,
    except the fields whose type clashed earlier in this archive (left to inference)."""
    envelope = {"event_reference": pa.int64(), "event_type": pa.string(), "event_time": pa.string(),
                "object_type": pa.string(), "object_reference": pa.string(), "version": pa.int64()}
    object_struct = pa.struct([(name, pa.string()) for name in OBJECT_FIELDS[part]
                               if f"object_data.{name}" not in inferred])
    columns = []
    for name in ENVELOPE_FIELDS:
        if name == "object_data":
            if "object_data" not in inferred:
                columns.append((name, object_struct))
        elif name not in inferred:
            columns.append((name, envelope[name]))
    return pa.schema(columns)


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
        raise NotPublished(f"no {part} archive for {month} at {url} (HTTP 404): DfT publishes a month on the 1st "
                           "of the next; a month still missing later was never published")
    if response.status_code >= 400:
        raise SourceHTTPError(f"HEAD {url}: HTTP {response.status_code}")
    etag = response.headers.get("ETag")
    modified = response.headers.get("Last-Modified")
    length = response.headers.get("Content-Length")
    if not (etag or modified):
        raise SourceHTTPError(f"HEAD {url}: neither ETag nor Last-Modified; cannot tell a changed archive")
    return {"watermark": f"etag={etag}|last-modified={modified}|length={length}", "url": url, "etag": etag,
            "last_modified": modified, "length": int(length) if length and length.isdigit() else None}


def stream_block(session, connection, month: str, probed: dict, landed_at: datetime, writer, part: str,
                 previous: dict | None = None, location=None, force: bool = False) -> dict:
    """Download, unzip, parse, flatten, validate and write one archive; returns the manifest's
    source-specific fields. Raises (and lands nothing) on a truncated or corrupt archive, and on
    an archive with nothing to land where the previous landing had rows (unless ``force``)."""
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
    refuse_emptying(previous, reader.rows_written, force,
                    f"the {part} archive for {month} holds {reader.events} events and no row to land")
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
                    raise ArchiveTruncated(f"download of {self.url} kept failing after {self.received} bytes: {error}") from error
                self.resumes += 1
                log.warning("download of %s cut after %d bytes (%s): resuming with Range", self.url, self.received, error)
                retry_policy().sleep(attempt - 1, scale=0.4, cap=10.0)

    def _check(self, response) -> None:
        status = response.status_code
        etag = response.headers.get("ETag")
        if self.received == 0:
            if status != 200:
                raise SourceHTTPError(f"GET {self.url}: HTTP {status}")
            if self.etag and etag and etag != self.etag:
                raise ArchiveChanged(f"{self.url} changed since its HEAD (ETag {self.etag} -> {etag}): run the block again")
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                self.expected = int(length)
            return
        if status == 200:
            raise ArchiveChanged(f"{self.url} changed while it was read (a resume got the whole new archive)")
        content_range = response.headers.get("Content-Range", "")
        if status != 206 or not content_range.startswith(f"bytes {self.received}-"):
            raise SourceHTTPError(f"resume of {self.url} at byte {self.received}: HTTP {status} {content_range!r}")


# ---------------------------------------------------------------- the forward zip reader

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = b"PK\x01\x02"
_END_SIGS = (b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
_DESCRIPTOR_SIG = 0x08074B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")


@dataclass
class Chunk:
    """Members joined into newline-delimited JSON: line i is member ``names[i]``."""

    names: list[bytes]  # the members' names as stored (decoded on demand: see ``name``)
    text: bytes  # the lines, each ended by b"\n"
    offsets: list[int]  # start of each line, plus the end
    bad: list[tuple[str, bytes, str]] = field(default_factory=list)  # (member, raw, reason)

    def line(self, index: int) -> bytes:
        return self.text[self.offsets[index]: self.offsets[index + 1] - 1]

    def name(self, index: int) -> str:
        return _member_name(self.names[index])


class ZipWalker:
    """The members of a zip read strictly forward from its local file headers (the central
    directory is never needed and the DfT's is broken), joined into :class:`Chunk` s."""

    def __init__(self, pieces: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._pieces = self._counted(pieces)
        self.chunk_bytes = chunk_bytes
        self.members = 0
        self.descriptor_members = 0
        self.skipped_entries = 0
        self.pulled = 0  # bytes taken from the stream so far
        self.complete = False

    def _counted(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if piece:
                self.pulled += len(piece)
                yield piece

    def _more(self, buf: bytes, pos: int, need: int) -> tuple[bytes, bool]:
        """``buf[pos:]`` extended to at least ``need`` bytes, and whether it got them (False: the
        stream ended first; the bytes are what was left)."""
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < need:
            piece = next(self._pieces, None)
            if piece is None:
                return b"".join(parts), False
            parts.append(piece)
            have += len(piece)
        return b"".join(parts), True

    def chunks(self) -> Iterator[Chunk]:
        unpack = _LOCAL.unpack_from
        decompress, crc32 = zlib.decompress, zlib.crc32
        limit = self.chunk_bytes
        buf, pos = b"", 0
        names: list[str] = []
        lines: list[bytes] = []
        offsets: list[int] = [0]
        bad: list[tuple[str, bytes, str]] = []
        size = 0
        while True:
            n = len(buf)
            if n - pos < 30:
                buf, enough = self._more(buf, pos, 30)
                pos = 0
                if not enough:
                    if buf[:4] in _END_SIGS or buf[:4] == _CENTRAL_SIG:
                        self.complete = True
                        break
                    raise ArchiveTruncated(
                        f"the archive ends after {self.pulled} bytes and {self.members} members, "
                        "before its central directory: it is truncated")
                continue
            sig, _v, flags, method, _t, _d, crc, csize, usize, name_len, extra_len = unpack(buf, pos)
            start = pos + 30 + name_len + extra_len
            end = start + csize
            if sig == _LOCAL_SIG and method == 8 and not flags & 0x09 and csize != 0xFFFFFFFF and end <= n:
                # The common case, kept short: a deflated member with its sizes in the header.
                name = buf[pos + 30: pos + 30 + name_len]
                pos = end
                try:
                    body = decompress(buf[start:end], -15, usize or 1)
                except zlib.error as error:
                    raise self._damaged(name, f"does not inflate ({error})") from error
                if len(body) != usize or crc32(body) != crc:
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
                reason = None
            elif sig != _LOCAL_SIG:
                head = buf[pos:pos + 4]
                if head == _CENTRAL_SIG or head in _END_SIGS:
                    self.complete = True
                    break
                raise ArchiveCorrupt(f"unexpected bytes {head!r} at offset {self.pulled - n + pos} after "
                                     f"{self.members} members: neither a member nor the central directory")
            elif flags & 0x08:  # sizes after the data: inflate until the deflate stream ends
                if start > n:
                    buf, enough = self._more(buf, pos, start - pos)
                    pos = 0
                    if not enough:
                        raise self._cut()
                    continue
                name = buf[pos + 30: pos + 30 + name_len]
                extra = buf[pos + 30 + name_len: start]
                body, buf, pos, reason = self._descriptor_member(buf, start, method, name, extra)
                self.descriptor_members += 1
            else:
                if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
                    if start > n:
                        buf, enough = self._more(buf, pos, start - pos)
                        pos = 0
                        if not enough:
                            raise self._cut()
                        continue
                    sizes = _zip64_sizes(buf[pos + 30 + name_len: start])
                    if sizes:
                        usize, csize = sizes
                    end = start + csize
                if end > n:
                    buf, enough = self._more(buf, pos, end - pos)
                    pos = 0
                    if not enough:
                        raise self._cut()
                    continue
                name = buf[pos + 30: pos + 30 + name_len]
                reason = None
                body = b""
                if flags & 0x01:
                    reason = "member is encrypted"
                elif method == 8:
                    try:
                        body = decompress(buf[start:end], -15, usize or 1)
                    except zlib.error as error:
                        raise self._damaged(name, f"does not inflate ({error})") from error
                elif method == 0:
                    body = buf[start:end]
                else:
                    reason = f"member uses compression method {method}"
                if reason is None and (len(body) != usize or crc32(body) != crc):
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
                pos = end
            if name[-1:] == b"/":  # a folder entry, not an event
                self.skipped_entries += 1
                continue
            self.members += 1
            if reason is None and body[:1] != b"{":
                stripped = body.lstrip()
                if stripped[:1] == b"{":
                    body = stripped
                else:
                    reason = "member is not a JSON object" if stripped else "member is empty"
            if reason is not None:
                bad.append((_member_name(name), body, reason))
                continue
            if b"\n" in body:  # pretty-printed: JSON allows line breaks only as whitespace
                body = body.replace(b"\n", b" ")
            names.append(name)
            lines.append(body)
            size += len(body) + 1
            offsets.append(size)
            if size >= limit:
                yield self._chunk(names, lines, offsets, bad)
                names, lines, offsets, bad, size = [], [], [0], [], 0
        if names or bad:
            yield self._chunk(names, lines, offsets, bad)

    def _damaged(self, name: bytes, what: str) -> ArchiveCorrupt:
        # Damaged bytes are not a bad record: the event is lost, so landing the rest would land a
        # partial month that looks whole. The block fails; the previous landing stays.
        return ArchiveCorrupt(f"member {self.members + 1} ({_member_name(name)}) {what}: the archive's bytes are "
                              f"damaged (after {self.pulled} bytes); the month is not landed")

    def _cut(self) -> ArchiveTruncated:
        return ArchiveTruncated(f"the archive ends inside member {self.members + 1} (after {self.members} whole "
                                f"members, {self.pulled} bytes), before its central directory: it is truncated")

    @staticmethod
    def _chunk(names, lines, offsets, bad) -> Chunk:
        lines.append(b"")
        return Chunk(names=names, text=b"\n".join(lines), offsets=offsets, bad=bad)

    def _descriptor_member(self, buf: bytes, start: int, method: int, name: str, extra: bytes):
        """Inflate a member whose sizes follow its data; returns (body, buffer, position, reason)."""
        name = _member_name(name)
        if method != 8:
            raise ArchiveCorrupt(f"member {name} is stored with its size after the data: it cannot be read forward")
        inflater = zlib.decompressobj(-15)
        out = []
        data = buf[start:]
        while True:
            try:
                out.append(inflater.decompress(data))
            except zlib.error as error:
                raise ArchiveCorrupt(f"member {name} does not inflate ({error}) and gives no size to skip it") from error
            if inflater.eof:
                break
            data = next(self._pieces, None)
            if data is None:
                raise self._cut()
        rest = inflater.unused_data
        zip64 = _zip64_sizes(extra) is not None
        need = 4 + (16 if zip64 else 8) + 4
        while len(rest) < need:
            piece = next(self._pieces, None)
            if piece is None:
                if len(rest) >= need - 4 and rest[:4] != b"PK\x07\x08":
                    break
                raise self._cut()
            rest += piece
        if struct.unpack_from("<I", rest, 0)[0] == _DESCRIPTOR_SIG:
            rest = rest[4:]
        crc = struct.unpack_from("<I", rest, 0)[0]
        usize = struct.unpack_from("<Q" if zip64 else "<I", rest, 4 + (8 if zip64 else 4))[0]
        rest = rest[4 + (16 if zip64 else 8):]
        body = b"".join(out)
        if len(body) != usize or zlib.crc32(body) != crc:
            raise ArchiveCorrupt(f"member {name} fails its CRC-32/size check ({len(body)} bytes, expected {usize}): "
                                 "the archive's bytes are damaged; the month is not landed")
        return body, rest, 0, None


def _member_name(raw: bytes) -> str:
    # UTF-8 (the names are ASCII in practice; a cp437 name would show replacement characters).
    return raw.decode("utf-8", "replace")


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        if tag == 0x0001 and size >= 16:
            return struct.unpack_from("<QQ", extra, at + 4)
        at += 4 + size
    return None


# ---------------------------------------------------------------- parse, type, validate


def pipelined(chunks: Iterator[Chunk], process, cancel=None) -> Iterator:
    """``process(chunk)`` for each chunk, in order, while a thread produces the next ones
    (download and unzip, which hold the GIL, beside the parse and write, which mostly release
    it). At most ``QUEUE_CHUNKS`` chunks wait; an error on either side ends both."""
    handoff: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            handoff.put(error)

    thread = threading.Thread(target=produce, name="street-manager-unzip", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield process(item)
    finally:
        stop.set()
        if thread.is_alive() and cancel is not None:
            cancel()
        while thread.is_alive():  # let the producer see the stop (it never blocks for long)
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()



class ArchiveReader:
    """One archive's chunks to typed record batches and quarantine rows, with the stats."""

    def __init__(self, part: str, month: str, landed_at: datetime) -> None:
        self.part = part
        self.month = month
        self.landed_at = landed_at
        self.schema = data_schema(part)
        self.fields = OBJECT_FIELDS[part]
        self.inferred: set[str] = set()  # field paths whose JSON type clashed with the contract's
        self.seen: set[int] = set()
        self.rows_written = 0
        self.quarantined = 0
        self.events = 0
        self.walker: ZipWalker | None = None
        self.reasons: Counter = Counter()
        self.new_fields: Counter = Counter()
        self.type_changes: Counter = Counter()
        self.present_fields: set[str] = set()
        self.event_types: Counter = Counter()
        self.spellings: dict[str, str] = {}
        self.unknown_event_types: Counter = Counter()
        self.coordinates: Counter = Counter()
        self.bare_times: Counter = Counter()
        self.nulled: Counter = Counter()
        self.fallback_chunks = 0
        self.missing_required: Counter = Counter()

    # -- the pipeline: unzip in a thread, parse and type here

    def run(self, pieces: Iterable[bytes], cancel=None) -> Iterator[tuple[pa.Table, pa.Table | None]]:
        """Typed batches and quarantine rows chunk by chunk; ``cancel()`` stops the byte stream
        from this thread when the reading stops early (an error here)."""
        self.walker = ZipWalker(pieces)
        return pipelined(self.walker.chunks(), self.process, cancel)

    def process(self, chunk: Chunk) -> tuple[pa.Table, pa.Table | None]:
        self.events += len(chunk.names) + len(chunk.bad)
        bad_members = list(chunk.bad)
        raw = None
        if chunk.names:
            raw, chunk = self._parse(chunk, bad_members)
        data, bad_rows = self._finish(raw, chunk) if raw is not None else (self.schema.empty_table(), [])
        quarantine = self._quarantine(bad_members + bad_rows)
        self.rows_written += data.num_rows
        return data, quarantine

    def finish(self) -> dict:
        """The manifest fields; raises when a required field is gone from the whole archive."""
        if self.walker is not None and not self.walker.complete:
            raise ArchiveTruncated("the archive ended before its central directory")
        for name, count in self.missing_required.items():
            if self.events and count == self.events:
                raise SchemaDriftError(f"required field {name} is missing from all {self.events} events of the "
                                       f"{self.part} archive for {self.month}: the publisher changed the format")
        never = [name for name in self.fields if name not in self.present_fields]
        drift = {"new_fields": dict(sorted(self.new_fields.items())), "missing_fields": never,
                 "type_changes": dict(sorted(self.type_changes.items()))}
        if drift["new_fields"] or drift["type_changes"] or (never and self.events):
            log.warning("street_manager %s %s schema drift: %s", self.part, self.month, drift)
        return {
            "events": self.events,
            "members": self.walker.members if self.walker else 0,
            "data_descriptor_members": self.walker.descriptor_members if self.walker else 0,
            "quarantine_reasons": dict(sorted(self.reasons.items())),
            "drift": drift,
            "event_types": dict(sorted(self.event_types.items())),
            "event_type_spellings": dict(sorted(self.spellings.items())),
            "unknown_event_types": dict(sorted(self.unknown_event_types.items())),
            "coordinates": dict(sorted(self.coordinates.items())),
            "bare_times_normalised": dict(sorted(self.bare_times.items())),
            "nulled_values": dict(sorted(self.nulled.items())),
            "fallback_chunks": self.fallback_chunks,
        }

    # -- parsing

    def _parse(self, chunk: Chunk, bad_members: list) -> tuple[pa.Table, Chunk]:
        """The chunk's raw columns (envelope, object fields as strings, extras) and the chunk they
        come from: pyarrow.json first; a clash of types on a known field leaves it to inference
        for the rest of the archive; members that are not JSON objects are set aside (quarantine)
        and the rest parsed again; anything else the exact path parses member by member."""
        block = PARSE_BLOCK
        screened = False
        for _attempt in range(10):
            schema = _parse_schema(self.part, frozenset(self.inferred))
            try:
                table = pajson.read_json(
                    pa.BufferReader(chunk.text),
                    read_options=pajson.ReadOptions(block_size=block),
                    parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
                )
            except pa.ArrowInvalid as error:
                message = str(error)
                clash = re.search(r"Column\((/[^)]*)\) changed from", message)
                path = clash.group(1).strip("/").replace("/", ".") if clash else None
                if path and self._is_known(path) and path not in self.inferred:
                    self.inferred.add(path)
                    continue
                if "straddl" in message and block < len(chunk.text):
                    block = min(len(chunk.text) + 1, block * 8)
                    continue
                if not screened:
                    screened = True
                    chunk = self._screen(chunk, bad_members)
                    if not chunk.names:
                        return None, chunk
                    continue
                break
            if table.num_rows != len(chunk.names):
                break
            try:
                return self._raw_from_arrow(table), chunk
            except _NeedsExactPath:
                break
        self.fallback_chunks += 1
        return self._raw_exact(chunk, bad_members), chunk

    @staticmethod
    def _screen(chunk: Chunk, bad_members: list) -> Chunk:
        """The chunk without the members that are not JSON objects (those go to ``bad_members``)."""
        names, lines, offsets, size = [], [], [0], 0
        for index, name in enumerate(chunk.names):
            line = chunk.line(index)
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                bad_members.append((_member_name(name), line, f"member is not valid JSON: {error}"))
                continue
            if not isinstance(event, dict):
                bad_members.append((_member_name(name), line, "member is not a JSON object"))
                continue
            names.append(name)
            lines.append(line)
            size += len(line) + 1
            offsets.append(size)
        if len(names) == len(chunk.names):
            return chunk
        return ZipWalker._chunk(names, lines, offsets, list(chunk.bad))

    def _is_known(self, path: str) -> bool:
        if path.startswith("object_data."):
            return path.split(".", 1)[1] in self.fields
        return path in ("event_reference", "event_type", "event_time", "object_type", "object_reference", "version")

    def _raw_from_arrow(self, table: pa.Table) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        extras: list[tuple[str, pa.ChunkedArray]] = []
        n = table.num_rows
        for name in table.column_names:
            column = table.column(name)
            if name == "object_data":
                column = column.combine_chunks()
                present = column.is_valid()
                columns["_object_data_present"] = present
                for child_field, child in zip(column.type, column.flatten()):
                    if child_field.name in self.fields:
                        columns[child_field.name] = self._as_known(f"object_data.{child_field.name}", child)
                    else:
                        extras.append((f"object_data.{child_field.name}", child))
            elif name in ("event_reference", "version"):
                columns[name] = self._as_int(name, column.combine_chunks())
            elif name in ("event_type", "event_time", "object_type", "object_reference"):
                columns[name] = self._as_known(name, column.combine_chunks())
            else:
                extras.append((name, column.combine_chunks()))
        if "_object_data_present" not in columns:
            columns["_object_data_present"] = pa.array([False] * n)
        columns["extras"] = self._extras_json(extras, n)
        return self._raw_table(columns, n)

    def _as_known(self, path: str, array: pa.Array) -> pa.Array:
        """A known string field, whatever JSON type it came as (other types are drift)."""
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return array.cast(pa.string())
        if pa.types.is_null(array.type):
            return pa.nulls(len(array), pa.string())
        self.type_changes[f"{path}: {_json_kind(array.type)}"] += len(array) - array.null_count
        if pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
            return pc.cast(array, pa.string()) if not pa.types.is_boolean(array.type) else \
                pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
        if pa.types.is_floating(array.type):
            return pa.array([None if v is None else _number_text(v) for v in array.to_pylist()], pa.string())
        raise _NeedsExactPath(path)  # an object or a list where the contract has a string

    def _as_int(self, path: str, array: pa.Array) -> pa.Array:
        if pa.types.is_integer(array.type):
            return array.cast(pa.int64())
        if pa.types.is_null(array.type):
            return pa.nulls(len(array), pa.int64())
        self.type_changes[f"{path}: {_json_kind(array.type)}"] += len(array) - array.null_count
        if pa.types.is_string(array.type):
            digits = pc.match_substring_regex(array, r"^\s*-?[0-9]{1,18}\s*$")
            return pc.if_else(digits, pc.cast(pc.if_else(digits, pc.utf8_trim_whitespace(array), "0"), pa.int64()),
                              pa.scalar(None, pa.int64()))
        raise _NeedsExactPath(path)

    def _extras_json(self, extras: list[tuple[str, pa.Array]], n: int) -> pa.Array:
        if not extras:
            return pa.nulls(n, pa.string())
        values = []
        for path, array in extras:
            count = len(array) - array.null_count
            if count:
                self.new_fields[path] += count
                values.append((path, array.to_pylist()))
        if not values:
            return pa.nulls(n, pa.string())
        out: list[str | None] = [None] * n
        rows = set()
        for _path, column in values:
            rows.update(i for i, value in enumerate(column) if value is not None)
        for row in sorted(rows):
            event: dict = {}
            for path, column in values:
                value = column[row]
                if value is None:
                    continue
                if path.startswith("object_data."):
                    event.setdefault("object_data", {})[path[12:]] = value
                else:
                    event[path] = value
            out[row] = orjson.dumps(event).decode()
        return pa.array(out, pa.string())

    def _raw_table(self, columns: dict[str, pa.Array], n: int) -> pa.Table:
        names = ["event_reference", "event_type", "event_time", "object_type", "object_reference", "version",
                 "_object_data_present", *self.fields, "extras"]
        arrays = []
        for name in names:
            array = columns.get(name)
            if array is None:
                kind = pa.int64() if name in ("event_reference", "version") else pa.string()
                array = pa.nulls(n, kind)
            elif name not in ("event_reference", "version", "_object_data_present", "extras"):
                if array.null_count < n:
                    self.present_fields.add(name)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=names)

    def _raw_exact(self, chunk: Chunk, bad_members: list) -> pa.Table:
        """Member by member with orjson: every valid event lands, whatever else the chunk holds."""
        rows: list[dict] = []
        keep: list[int] = []
        for index in range(len(chunk.names)):
            name = chunk.name(index)
            line = chunk.line(index)
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                bad_members.append((name, line, f"member is not valid JSON: {error}"))
                continue
            if not isinstance(event, dict):
                bad_members.append((name, line, "member is not a JSON object"))
                continue
            row: dict = {}
            extras: dict = {}
            for key, value in event.items():
                if key == "object_data":
                    if isinstance(value, dict):
                        row["_object_data_present"] = True
                        for field_name, field_value in value.items():
                            if field_name in self.fields:
                                row[field_name] = self._exact_string(f"object_data.{field_name}", field_value)
                            else:
                                extras.setdefault("object_data", {})[field_name] = field_value
                                if field_value is not None:
                                    self.new_fields[f"object_data.{field_name}"] += 1
                    elif value is not None:
                        extras["object_data"] = value
                        self.type_changes[f"object_data: {type(value).__name__}"] += 1
                elif key in ("event_reference", "version"):
                    row[key] = self._exact_int(key, value)
                elif key in ("event_type", "event_time", "object_type", "object_reference"):
                    row[key] = self._exact_string(key, value)
                else:
                    extras[key] = value
                    if value is not None:
                        self.new_fields[key] += 1
            row["extras"] = orjson.dumps(extras).decode() if extras else None
            rows.append(row)
            keep.append(index)
        n = len(rows)
        columns = {}
        for name in ["event_reference", "event_type", "event_time", "object_type", "object_reference", "version",
                     "_object_data_present", *self.fields, "extras"]:
            kind = pa.int64() if name in ("event_reference", "version") else (
                pa.bool_() if name == "_object_data_present" else pa.string())
            columns[name] = pa.array([row.get(name, False if name == "_object_data_present" else None)
                                      for row in rows], kind)
        table = self._raw_table(columns, n)
        # The rows kept refer to chunk lines by index (for quarantine text later).
        return table.append_column("_line", pa.array(keep, pa.int32()))

    def _exact_string(self, path: str, value):
        if value is None or isinstance(value, str):
            return value
        self.type_changes[f"{path}: {_py_kind(value)}"] += 1
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return _number_text(value)
        return orjson.dumps(value).decode()

    def _exact_int(self, path: str, value):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.type_changes[f"{path}: {_py_kind(value)}"] += 1
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None

    # -- typing, normalising, validating

    def _finish(self, raw: pa.Table, chunk: Chunk) -> tuple[pa.Table, list]:
        n = raw.num_rows
        lines = raw.column("_line").to_pylist() if "_line" in raw.column_names else None
        reasons: list[str | None] = [None] * n

        def flag(mask: pa.Array, reason: str, counter_key: str | None = None) -> None:
            if mask.null_count:
                mask = mask.fill_null(True)
            if not pc.any(mask).as_py():
                return
            for index in pc.indices_nonzero(mask).to_pylist():
                if reasons[index] is None:
                    reasons[index] = reason
                    if counter_key:
                        self.missing_required[counter_key] += 1

        ref_field = REFERENCE_FIELDS[self.part]
        event_reference = raw.column("event_reference").combine_chunks()
        flag(event_reference.is_null(), "missing event_reference", "event_reference")
        event_type_published = raw.column("event_type").combine_chunks()
        flag(_blank(event_type_published), "missing event_type", "event_type")
        event_time, unparsed = _timestamps(raw.column("event_time").combine_chunks())
        flag(pc.is_null(raw.column("event_time").combine_chunks()), "missing event_time", "event_time")
        flag(unparsed, "unparseable event_time")
        flag(pc.invert(raw.column("_object_data_present").combine_chunks()), "missing object_data", "object_data")
        flag(_blank(raw.column(ref_field).combine_chunks()), f"missing {ref_field}", ref_field)
        object_type = raw.column("object_type").combine_chunks()
        flag(pc.not_equal(pc.fill_null(object_type, ""), OBJECT_TYPES[self.part]),
             f"object_type is not {OBJECT_TYPES[self.part]}")
        # The natural key: the first event with a reference wins, within the chunk and the archive.
        references = event_reference.to_pylist()
        fresh = set(references)
        if len(fresh) == len(references) and None not in fresh and self.seen.isdisjoint(fresh) \
                and not any(reasons):
            self.seen |= fresh
        else:
            for index, reference in enumerate(references):
                if reference is None or reasons[index] is not None:
                    continue
                if reference in self.seen:
                    reasons[index] = f"duplicate event_reference {reference}"
                else:
                    self.seen.add(reference)

        bad_rows = []
        bad_index = [i for i, reason in enumerate(reasons) if reason is not None]
        for index in bad_index:
            line = chunk.line(lines[index] if lines is not None else index)
            member = chunk.name(lines[index] if lines is not None else index)
            bad_rows.append((member, line, reasons[index]))
        if bad_index:
            keep = pa.array([reason is None for reason in reasons])
            raw = raw.filter(keep)
            event_time = event_time.filter(keep)
            event_type_published = event_type_published.filter(keep)
        n = raw.num_rows
        columns: dict[str, pa.Array] = {
            "event_reference": raw.column("event_reference").combine_chunks(),
            "event_type": self._normalise_event_types(event_type_published),
            "event_type_published": event_type_published,
            "event_time": event_time,
            "object_type": raw.column("object_type").combine_chunks(),
            "object_reference": raw.column("object_reference").combine_chunks(),
            "version": pc.cast(raw.column("version").combine_chunks(), pa.int32(), safe=False),
        }
        timestamps = TIMESTAMP_FIELDS[self.part]
        bare = BARE_TIME_FIELDS[self.part]
        for name in self.fields:
            values = raw.column(name).combine_chunks()
            if name in timestamps:
                typed, unparsed = _timestamps(values)
                if name in bare:
                    typed, unparsed = self._bare_times(name, values, typed, unparsed, raw.column(bare[name]).combine_chunks())
                count = pc.sum(pc.cast(unparsed, pa.int64())).as_py() or 0
                if count:
                    self.nulled[name] += count
                columns[name] = typed
            else:
                columns[name] = values
        longitude, latitude = self._coordinates(columns[COORDINATE_FIELDS[self.part]])
        columns["longitude"], columns["latitude"] = longitude, latitude
        columns["extras"] = raw.column("extras").combine_chunks()
        columns["_block_month"] = pa.array([self.month] * n, pa.string()) if n else pa.array([], pa.string())
        columns["_landed_at"] = pa.array([self.landed_at] * n, LANDED_TYPE) if n else pa.array([], LANDED_TYPE)
        table = pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)
        for event_type, count in zip(*_value_counts(columns["event_type"])):
            self.event_types[event_type] += count
        return table, bad_rows

    def _normalise_event_types(self, published: pa.Array) -> pa.Array:
        encoded = published.dictionary_encode()
        canonical = []
        for value in encoded.dictionary.to_pylist():
            normal = normalise_event_type(value)
            canonical.append(normal)
            if normal != value:
                self.spellings[value] = normal
            if normal not in KNOWN_EVENT_TYPES:
                self.unknown_event_types[normal] += 0
        result = pc.take(pa.array(canonical, pa.string()), encoded.indices)
        if self.unknown_event_types:
            for value, count in zip(*_value_counts(result)):
                if value in self.unknown_event_types:
                    self.unknown_event_types[value] += count
        return result

    def _bare_times(self, name, values, typed, unparsed, dates):
        """``"13:50"`` -> that UK-local time on the UK-local day of the matching date field."""
        bare = pc.fill_null(pc.match_substring_regex(values, r"^\s*[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?\s*$"), False)
        if not pc.any(bare).as_py():
            return typed, unparsed
        rows = pc.indices_nonzero(bare)
        date_values, _ = _timestamps(dates.take(rows))
        fixed, failed = [], []
        for text, day in zip(values.take(rows).to_pylist(), date_values.to_pylist()):
            hour, minute, *second = (int(p) for p in text.strip().split(":"))
            if day is None or hour > 23 or minute > 59 or (second and second[0] > 59):
                fixed.append(None)
                failed.append(True)
                continue
            local_day = day.astimezone(_LONDON).date()
            local = datetime(local_day.year, local_day.month, local_day.day, hour, minute, second[0] if second else 0,
                             tzinfo=_LONDON)
            fixed.append(local.astimezone(timezone.utc))
            failed.append(False)
            self.bare_times[name] += 1
        typed = pc.replace_with_mask(typed, bare, pa.array(fixed, TIMESTAMP))
        unparsed = pc.replace_with_mask(unparsed, bare, pa.array(failed, pa.bool_()))
        return typed, unparsed

    def _coordinates(self, wkt: pa.Array) -> tuple[pa.Array, pa.Array]:
        longitude, latitude, counts = bng_wkt_to_wgs84(wkt)
        self.coordinates.update(counts)
        return longitude, latitude

    def _quarantine(self, bad: list[tuple[str, bytes, str]]) -> pa.Table | None:
        if not bad:
            return None
        for _member, _raw, reason in bad:
            self.reasons[_reason_key(reason)] += 1
        self.quarantined += len(bad)
        n = len(bad)
        return pa.Table.from_arrays([
            pa.array([member for member, _, _ in bad], pa.string()),
            pa.array([raw[: 1 << 20].decode("utf-8", "replace") for _, raw, _ in bad], pa.string()),
            pa.array([reason for _, _, reason in bad], pa.string()),
            pa.array([self.month] * n, pa.string()),
            pa.array([self.landed_at] * n, LANDED_TYPE),
        ], schema=QUARANTINE_SCHEMA)


class _NeedsExactPath(Exception):
    pass


def _reason_key(reason: str) -> str:
    """Reasons grouped for the manifest (the quarantine file keeps the full text)."""
    for prefix in ("member is not valid JSON", "member does not inflate", "member fails its CRC-32",
                   "duplicate event_reference", "unparseable event_time"):
        if reason.startswith(prefix):
            return prefix
    return reason


def _json_kind(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_struct(kind):
        return "object"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "array"
    return str(kind)


def _py_kind(value) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", dict: "object", list: "array"}.get(
        type(value), type(value).__name__)


def _number_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _blank(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)


def _value_counts(values: pa.Array) -> tuple[list, list]:
    counts = pc.value_counts(values)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def normalise_event_type(value: str | None) -> str | None:
    """``work-start``, ``Work Start`` and ``WORK_START`` are one type: upper case, runs of
    anything but letters and digits as one underscore; then the known aliases."""
    if value is None:
        return None
    normal = re.sub(r"[^A-Z0-9]+", "_", value.strip().upper()).strip("_")
    return EVENT_TYPE_ALIASES.get(normal, normal)


_ISO = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\s*$"
_HAS_ZONE = r"(Z|[+-][0-9]{2}:?[0-9]{2})\s*$"


def _timestamps(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """ISO-8601 strings -> ``timestamp[ms, UTC]`` (no zone: UTC) and the mask of values that were
    given but could not be read (null in the result)."""
    n = len(values)
    if values.null_count == n:
        return pa.nulls(n, TIMESTAMP), pa.array([False] * n, pa.bool_())
    try:  # the published form (ISO with Z) in every row: one cast
        return pc.cast(values, TIMESTAMP), pa.array([False] * n, pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = pc.fill_null(pc.match_substring_regex(values, _ISO), False)
    text = pc.utf8_trim_whitespace(values)
    zoned = pc.fill_null(pc.match_substring_regex(text, _HAS_ZONE), True)
    text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    try:
        typed = pc.cast(text, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        typed = pa.array([_one_timestamp(v) for v in text.to_pylist()], TIMESTAMP)
    unparsed = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return typed, unparsed


def _one_timestamp(value: str | None):
    if value is None:
        return None
    try:
        return pc.cast(pa.array([value]), TIMESTAMP)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # e.g. 30 February


# ---------------------------------------------------------------- coordinates


@lru_cache(maxsize=1)
def _transformer():
    from pyproj import Transformer

    return Transformer.from_pipeline(BNG_TO_WGS84)


_NUM = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_SIMPLE = r"[-+0-9.eE]+"  # a number's characters (the cast to float64 then checks the number)


def bng_wkt_to_wgs84(wkt: pa.Array) -> tuple[pa.Array, pa.Array, Counter]:
    """WGS84 longitude and latitude of each BNG WKT geometry: the point, or the centroid of a
    linestring (length weighted) or polygon (area weighted, holes subtracted); multi-part
    geometries by the same rules on all their parts. Null (counted) when missing or unreadable."""
    import numpy as np

    n = len(wkt)
    counts: Counter = Counter()
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    if n == 0:
        return pa.array([], pa.float64()), pa.array([], pa.float64()), counts
    missing = pc.fill_null(pc.invert(pc.match_substring_regex(wkt, r"\S")), True)
    counts["missing"] = pc.sum(pc.cast(missing, pa.int64())).as_py() or 0
    remaining = pc.invert(missing)
    # Points (most of them), straight from the text; then each kind on the rows still unread.
    point = pc.extract_regex(wkt, rf"(?i)^\s*POINT\s*\(\s*(?P<x>{_SIMPLE})\s+(?P<y>{_SIMPLE})(?:\s+{_SIMPLE})?\s*\)\s*$")
    is_point = pc.fill_null(pc.is_valid(point), False)
    if pc.any(is_point).as_py():
        rows = pc.indices_nonzero(is_point).to_numpy()
        try:
            px = pc.cast(pc.struct_field(point, "x").filter(is_point), pa.float64()).to_numpy(zero_copy_only=False)
            py = pc.cast(pc.struct_field(point, "y").filter(is_point), pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # a malformed number: these points go one by one below
            pass
        else:
            x[rows], y[rows] = px, py
            counts["points"] = len(rows)
            remaining = pc.and_(remaining, pc.invert(is_point))
    # Linestrings and polygons, vectorised over their vertices.
    if pc.any(remaining).as_py():
        rows = pc.indices_nonzero(remaining)
        line = pc.extract_regex(wkt.take(rows), r"(?i)^\s*LINESTRING\s*\((?P<v>[^()]*)\)\s*$")
        is_line = pc.fill_null(pc.is_valid(line), False)
        if pc.any(is_line).as_py():
            line_rows = rows.filter(is_line).to_numpy()
            rings = pc.split_pattern(pc.struct_field(line, "v").filter(is_line), ",")  # one "ring" per row
            done = _line_centroids(rings, pa.array(np.arange(len(line_rows)), pa.int64()), len(line_rows))
            if done is not None:
                x[line_rows], y[line_rows] = done
                counts["linestrings"] = len(line_rows)
                remaining = pc.and_(remaining, pc.invert(_mask(n, line_rows)))
    if pc.any(remaining).as_py():
        rows = pc.indices_nonzero(remaining)
        polygon = pc.extract_regex(wkt.take(rows),
                                   r"(?i)^\s*POLYGON\s*\(\s*\((?P<v>[^()]*(?:\)\s*,\s*\([^()]*)*)\)\s*\)\s*$")
        is_polygon = pc.fill_null(pc.is_valid(polygon), False)
        if pc.any(is_polygon).as_py():
            polygon_rows = rows.filter(is_polygon).to_numpy()
            ring_lists = pc.split_pattern_regex(pc.struct_field(polygon, "v").filter(is_polygon), r"\)\s*,\s*\(")
            ring_row = pc.list_parent_indices(ring_lists)
            rings = pc.split_pattern(pc.list_flatten(ring_lists), ",")
            first = np.zeros(len(rings), dtype=bool)
            offsets = ring_lists.offsets.to_numpy()
            offsets = offsets - offsets[0]
            first[offsets[:-1][np.diff(offsets) > 0]] = True
            done = _polygon_centroids(rings, ring_row, first, len(polygon_rows))
            if done is not None:
                x[polygon_rows], y[polygon_rows] = done
                counts["polygons"] = len(polygon_rows)
                remaining = pc.and_(remaining, pc.invert(_mask(n, polygon_rows)))
    # The rest (multi-part geometries, Z/M, anything odd) one by one.
    if pc.any(remaining).as_py():
        rows = pc.indices_nonzero(remaining)
        for row, value in zip(rows.to_pylist(), wkt.take(rows).to_pylist()):
            result = _centroid_python(value.strip().upper())
            if result is None:
                counts["unreadable"] += 1
            else:
                x[row], y[row] = result
                counts["other_geometries"] += 1
    have = ~np.isnan(x) & ~np.isnan(y)
    longitude = np.full(n, np.nan)
    latitude = np.full(n, np.nan)
    if have.any():
        lon, lat = _transformer().transform(x[have], y[have])
        longitude[have], latitude[have] = lon, lat
        counts["converted"] = int(np.count_nonzero(np.isfinite(longitude)))
    counts["unreadable"] += int(np.count_nonzero(have & ~np.isfinite(longitude)))
    nulls = ~np.isfinite(longitude)
    return (pa.array(longitude, pa.float64(), mask=nulls), pa.array(latitude, pa.float64(), mask=nulls),
            +counts)


def _mask(n: int, rows) -> pa.Array:
    import numpy as np

    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _vertices(rings: pa.Array):
    """(x, y, ring index) of every vertex of a list<string> of "x y" pairs; None if any is unreadable."""
    flat = pc.list_flatten(rings)
    pairs = pc.extract_regex(flat, rf"^\s*(?P<x>{_SIMPLE})\s+(?P<y>{_SIMPLE})(?:\s+{_SIMPLE})*\s*$")
    if pairs.null_count:
        return None
    try:
        x = pc.cast(pc.struct_field(pairs, "x"), pa.float64()).to_numpy(zero_copy_only=False)
        y = pc.cast(pc.struct_field(pairs, "y"), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    ring = pc.list_parent_indices(rings).to_numpy()
    return x, y, ring


def _line_centroids(rings: pa.Array, ring_row: pa.Array, rows: int):
    import numpy as np

    found = _vertices(rings)
    if found is None:
        return None
    x, y, ring = found
    row_of_ring = ring_row.to_numpy()
    row = row_of_ring[ring]
    same = ring[:-1] == ring[1:]
    length = np.hypot(np.diff(x), np.diff(y)) * same
    weight = np.bincount(row[:-1], length, minlength=rows)
    cx = np.bincount(row[:-1], length * (x[:-1] + x[1:]) / 2, minlength=rows)
    cy = np.bincount(row[:-1], length * (y[:-1] + y[1:]) / 2, minlength=rows)
    count = np.bincount(row, minlength=rows)
    mean_x = np.bincount(row, x, minlength=rows) / np.maximum(count, 1)
    mean_y = np.bincount(row, y, minlength=rows) / np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_x = np.where(weight > 0, cx / weight, mean_x)
        out_y = np.where(weight > 0, cy / weight, mean_y)
    out_x[count == 0] = np.nan
    out_y[count == 0] = np.nan
    return out_x, out_y


def _polygon_centroids(rings: pa.Array, ring_row: pa.Array, exterior, rows: int):
    import numpy as np

    found = _vertices(rings)
    if found is None:
        return None
    x, y, ring = found
    n_rings = len(rings)
    starts = np.searchsorted(ring, np.arange(n_rings))
    nxt = np.arange(1, len(x) + 1)
    last = np.r_[ring[1:] != ring[:-1], True]
    nxt[last] = starts[ring[last]]  # close each ring (a closed ring adds a zero-length edge)
    cross = x * y[nxt] - x[nxt] * y
    area = np.bincount(ring, cross, minlength=n_rings) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ring_cx = np.bincount(ring, (x + x[nxt]) * cross, minlength=n_rings) / (6 * area)
        ring_cy = np.bincount(ring, (y + y[nxt]) * cross, minlength=n_rings) / (6 * area)
    row_of_ring = ring_row.to_numpy()
    signed = np.abs(area) * np.where(exterior, 1.0, -1.0)
    ok = np.isfinite(ring_cx) & np.isfinite(ring_cy)
    weight = np.bincount(row_of_ring, np.where(ok, signed, 0.0), minlength=rows)
    sx = np.bincount(row_of_ring, np.where(ok, signed * ring_cx, 0.0), minlength=rows)
    sy = np.bincount(row_of_ring, np.where(ok, signed * ring_cy, 0.0), minlength=rows)
    row = row_of_ring[ring]
    count = np.bincount(row, minlength=rows)
    mean_x = np.bincount(row, x, minlength=rows) / np.maximum(count, 1)
    mean_y = np.bincount(row, y, minlength=rows) / np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_x = np.where(np.abs(weight) > 0, sx / weight, mean_x)
        out_y = np.where(np.abs(weight) > 0, sy / weight, mean_y)
    out_x[count == 0] = np.nan
    out_y[count == 0] = np.nan
    return out_x, out_y


_TOKEN = re.compile(rf"\s*(\(|\)|,|{_NUM}|[A-Z]+)")


def _parse_wkt(text: str):
    """A small WKT reader: (kind, nested lists of (x, y)) or None."""
    tokens = [t for t in _TOKEN.findall(text)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", text):
        return None
    at = 0

    def geometry():
        nonlocal at
        kind = tokens[at]
        at += 1
        while at < len(tokens) and tokens[at] in ("Z", "M", "ZM"):
            at += 1
        if at < len(tokens) and tokens[at] == "EMPTY":
            at += 1
            return kind, None
        if kind == "GEOMETRYCOLLECTION":
            expect("(")
            parts = [geometry()]
            while tokens[at] == ",":
                at += 1
                parts.append(geometry())
            expect(")")
            return kind, parts
        return kind, nested()

    def expect(token):
        nonlocal at
        if tokens[at] != token:
            raise ValueError(token)
        at += 1

    def nested():
        nonlocal at
        expect("(")
        if tokens[at] == "(":
            items = [nested()]
            while tokens[at] == ",":
                at += 1
                items.append(nested())
            expect(")")
            return items
        points = []
        while True:
            numbers = []
            while tokens[at] not in (",", ")"):
                numbers.append(float(tokens[at]))
                at += 1
            if len(numbers) < 2:
                raise ValueError("coordinate")
            points.append((numbers[0], numbers[1]))
            if tokens[at] == ")":
                at += 1
                return points
            at += 1

    try:
        result = geometry()
        return result if at == len(tokens) else None
    except (IndexError, ValueError):
        return None


def _centroid_python(text: str | None):
    """Centroid of any WKT geometry (the highest dimension's parts count, as in OGC)."""
    if not text:
        return None
    parsed = _parse_wkt(text)
    if parsed is None:
        return None
    sums = {0: [0.0, 0.0, 0.0], 1: [0.0, 0.0, 0.0], 2: [0.0, 0.0, 0.0]}

    def ring_area(ring):
        area = cx = cy = 0.0
        for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
            cross = x0 * y1 - x1 * y0
            area += cross
            cx += (x0 + x1) * cross
            cy += (y0 + y1) * cross
        area /= 2
        return (abs(area), cx / (6 * area), cy / (6 * area)) if area else (0.0, 0.0, 0.0)

    def add(kind, body):
        if body is None:
            return
        if kind == "POINT":
            sums[0][0] += body[0][0]
            sums[0][1] += body[0][1]
            sums[0][2] += 1
        elif kind == "MULTIPOINT":
            for item in body:
                add("POINT", item if isinstance(item, list) else [item])
        elif kind == "LINESTRING":
            for (x0, y0), (x1, y1) in zip(body, body[1:]):
                length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
                sums[1][0] += length * (x0 + x1) / 2
                sums[1][1] += length * (y0 + y1) / 2
                sums[1][2] += length
        elif kind == "MULTILINESTRING":
            for item in body:
                add("LINESTRING", item)
        elif kind == "POLYGON":
            for index, ring in enumerate(body):
                area, cx, cy = ring_area(ring)
                sign = 1 if index == 0 else -1
                sums[2][0] += sign * area * cx
                sums[2][1] += sign * area * cy
                sums[2][2] += sign * area
        elif kind == "MULTIPOLYGON":
            for item in body:
                add("POLYGON", item)
        elif kind == "GEOMETRYCOLLECTION":
            for sub_kind, sub_body in body:
                add(sub_kind, sub_body)
        else:
            raise ValueError(kind)

    try:
        add(*parsed)
    except (ValueError, TypeError, IndexError):
        return None
    for dimension in (2, 1, 0):
        sx, sy, weight = sums[dimension]
        if weight:
            return sx / weight, sy / weight
    return None
