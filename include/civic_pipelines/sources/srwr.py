"""SRWR, the Scottish Road Works Register: the export API client, the block planner and the
record-type decoder (contract: ``shared/contracts/street_manager.md``, the SRWR parts; lake
columns: ``docs/lake_contract_srwr.md``).

**Two steps per download.** ``GET {base}/export/api/v1/file/{identifier}.zip`` answers JSON
``{"url": ...}``; ``GET`` that pre-signed URL answers a zip holding one headerless CSV. The URL's
lifetime is not documented, so it is never cached: every attempt (the probe's, each download
attempt) asks step 1 for a fresh one, and a 403 from step 2 (expired or rejected signature) is
answered by asking again (``URL_ATTEMPTS`` times in all). Nothing is sent but the
``User-Agent``: the API needs no credentials.

**Identifiers (the planner).** A block is a calendar month. A month of a past year is read from the
year's file (``2023``); a month of the current year that has ended from its month file (``MAR``);
the current month and later months are not published yet (:class:`NotPublished`: the block is
skipped with the reason). Day files (``01``) are never needed for a complete month. "Today" is the
date in Europe/London, or the connection's ``extra.today`` (``YYYY-MM-DD``; tests and the replay
demo set it). A 404 from step 1 is also :class:`NotPublished` (e.g. a new year's file in the
first hours of January).

**Watermark.** The contract documents no change-detection header, so the probe reads what the
download host gives: step 1, then a one-byte ranged ``GET`` of the pre-signed URL (a URL signed
for GET refuses HEAD on S3). The watermark is the identifier plus the ``ETag``, ``Last-Modified``
and total length; when the host sends neither ``ETag`` nor ``Last-Modified`` it is the identifier,
the length and today's date (the contract's "identifier plus download date"), and ``run_block``'s
content checksum keeps an unchanged block from being rewritten. When the month moves from its
month file to its year file the identifier (hence the watermark) changes; the content does not.

**Which month a record belongs to.** Every record type carries the activity id in ``row[2]``
(contract), so records are grouped by activity. The only dates the contract documents are the
undertaker phase's (``008``) start and end, so an activity belongs to the month of its **earliest
undertaker-phase start, clamped into the file's period** (a later phase added by a late edit does
not move it): one starting before the period lands in its first month, one starting after it in
its last month, one that cannot be dated (no ``008`` with a readable start) in its first month;
the activity's ``placement`` says which (``start``, ``before_period``, ``after_period``,
``undated``). So a month file's block is every activity the file lists (real month files list many
whose works start after the month, and no later file lists them again: issue 14), and a year file
feeds twelve blocks, each its own months' activities. Every activity lands; every line of a file
lands or is quarantined in exactly one block. This rule is an inference (the contract does not say
what a file's period means): see the lake contract.

**Districts.** A ``099`` record needs no activity id. Every one lands in ``district_directory``,
one row per district key (``row[3]`` + ``row[4]``, contract), in every block read from the file;
one that belongs to an activity of the file also lands in ``district`` with it.

**Decoding.** Record types ``001`` activity (``data.parquet``), ``007`` phase, ``008`` undertaker
phase, ``010`` site and ``099`` district have named columns at the contract's positions (and only
those); every field as published is kept in ``raw_fields`` (a list, position 0 first), so the
undocumented positions stay available raw. Codes documented as two digits are zero-padded (``6``
-> ``06``; counted in ``codes_padded``). Phase numbers are integers; the ``008`` start and end are
each a date field plus a time field (``start_date``/``start_time``, ``end_date``/``end_time``, the
text as published) combined into naive timestamps (Scottish wall time, assumed) ``start_at`` and
``end_at``; formats tried: ``YYYY-MM-DD``, ``DD/MM/YYYY``, ``YYYYMMDD``, ``DD-MM-YYYY``, with
``HH:MM[:SS]`` or ``HHMM`` (an empty time is midnight). Any other record type lands raw in
``unknown_records`` (record type, activity id, the raw line and its fields). Named text values
are trimmed, empty ones are null; ``raw_fields`` and ``raw_line`` are verbatim.

**Layout check.** The CSV has no header, so a column removed, added or moved inside a record
shifts every later value without any error. A file with at least ``LAYOUT_CHECK_MIN`` records of
a type fails the block (:class:`SchemaDriftError`, nothing landed) when a documented column that
such a record cannot lack (``filled``: the activity's promoter and latest phase, the phase's
number, work category and status, the undertaker phase's number and start date, the site's code
and the district's keys and name; an inference, the contract states no nullability) is empty in
every record, or a code column (two digits, contract) holds no code in any. Widths per record
type are reported in ``file_field_counts``; a trailing field the contract lacks changes nothing
else (it stays in ``raw_fields``).

**Damaged or cut files.** A zip cut short, a CRC-32 that fails or deflate data that does not
inflate are retried with a fresh pre-signed URL (``URL_ATTEMPTS`` in all), then fail the block.
An export with no activity for a month whose previous landing had some is refused unless forced
(:class:`EmptyAnswerError`): a file published empty by mistake does not wipe a landed month.

**Quarantine** (``quarantine.parquet``, one row per line, the first broken rule):
``unterminated quoted field``, ``malformed CSV: ...``, ``<n> field(s): a record needs at least 3``,
``missing activity id``, ``record type <t> needs at least <m> fields, got <n>``, ``missing
<column>`` (an ``008`` start date), ``unparseable <column> <value>``. No activity is quarantined
as a whole (its dates only choose its block).

**Memory.** The body is read in 1 MiB pieces, inflated forward by the CKAN adapter's
``ZipMemberStream`` (no central directory, nothing on disk), decoded by ``Utf8Stream`` and split
into records as it arrives. A record is kept (once, as text in Arrow chunks) only while its
activity may still belong to the block: an activity already dated earlier in the file's period
than the block is dropped as soon as that is known. The block's own records are decoded at the
end, once the activities' months are known.
"""

from __future__ import annotations

import csv
import logging
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timezone
from functools import lru_cache
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from civic_pipelines.adapters.ckan import Utf8Stream, ZipMemberStream
from civic_pipelines.core import contract
from civic_pipelines.core.contract import LANDED_TYPE
from civic_pipelines.http import (
    BODY_ERRORS,
    request_timeout,
    retry_policy,
    RETRY_STATUSES,
    SourceHTTPError,
    TransientBodyError,
    page_retry,
)
from civic_pipelines.months import format_month, parse_month
from civic_pipelines.sources.base import BlockData, Capabilities, NotPublished, SchemaDriftError, SourceSpec, refuse_emptying

log = logging.getLogger(__name__)

SPEC = SourceSpec(
    name="srwr",
    title="Scottish Road Works Register (SRWR) exports",
    publisher="SRWR, the Scottish Road Works Register: the export API at downloads.srwr.scot (zipped headerless CSV behind a pre-signed URL)",
    cron="0 0 1 * *",
    cadence="monthly",
    # The contract's example past year; the register's first export year is not documented.
    first_month="2020-01",
    conn_id="civic_srwr",
    default_base_url="https://downloads.srwr.scot",
    natural_key="activity_id",
    description=(
        "Scottish road works activities with their phases, undertaker phases, sites and districts, decoded from "
        "SRWR's mixed-record CSV exports (a year file for past years, a month file for the current year); a block "
        "is the activities whose first undertaker phase starts in the month."
    ),
    tags=("street_works", "srwr", "scotland"),
    dbt_tag="srwr",
    capabilities=Capabilities(several_tables=True),  # one download decodes into the activity table and five more
)

MONTH_CODES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
LONDON = ZoneInfo("Europe/London")
URL_ATTEMPTS = 4  # step 1 + step 2 tries per probe or download (a fresh pre-signed URL each time)
HTTP_CHUNK = 1 << 20
MAX_RECORD_CHARS = 1 << 20  # a quoted field still open after this much text: the quote never closes
CHUNK_ROWS = 65_536  # records per Arrow chunk of held lines
ZIP_MAGIC = b"PK\x03\x04"
TIMESTAMP_TYPE = pa.timestamp("us")

ACTIVITY, PHASE, UNDERTAKER_PHASE, SITE, DISTRICT, UNKNOWN = (
    "activity", "phase", "undertaker_phase", "site", "district", "unknown_records")
DIRECTORY = "district_directory"  # one row per district key listed anywhere in the file (099)
# How an activity got its block month (the activity table's ``placement``): see *Which month*.
PLACED_BY_START, PLACED_BEFORE, PLACED_AFTER, PLACED_UNDATED = ("start", "before_period", "after_period",
                                                                "undated")


class SrwrError(SourceHTTPError):
    """The export API answered something that is not the documented JSON or zip."""


# ---------------------------------------------------------------- record layouts (contract)


class Column:
    """A named column at a documented 0-based position: ``text`` (trimmed), ``code`` (two digits,
    zero-padded), ``int``; ``filled``: a record of its type without it makes no sense (see
    *Layout check* in the module docstring)."""

    def __init__(self, name: str, position: int, kind: str = "text", filled: bool = False) -> None:
        self.name, self.position, self.kind, self.filled = name, position, kind, filled


ARROW = {"text": pa.string(), "code": pa.string(), "int": pa.int32()}

# record type -> (table, named columns). Positions: contract *SRWR CSV record types*.
LAYOUTS: dict[str, tuple[str, list[Column]]] = {
    "001": (ACTIVITY, [Column("promoter_id", 5, filled=True), Column("latest_phase", 11, "int", filled=True)]),
    "007": (PHASE, [Column("location_text", 6), Column("phase_number", 7, "int", filled=True),
                    Column("work_category_code", 9, "code", filled=True),
                    Column("status_code", 10, "code", filled=True), Column("coordinates", 12)]),
    "008": (UNDERTAKER_PHASE, [Column("phase_number", 3, "int", filled=True), Column("start_date", 4, filled=True),
                               Column("start_time", 6), Column("end_date", 8), Column("end_time", 9),
                               Column("traffic_management_type_code", 20, "code"), Column("footway", 21)]),
    "010": (SITE, [Column("location_code", 9, "code", filled=True)]),
    "099": (DISTRICT, [Column("district_key_1", 3, filled=True), Column("district_key_2", 4, filled=True),
                       Column("organisation_name", 5, filled=True)]),
}
LAYOUT_CHECK_MIN = 5  # records of a type a file needs before its layout is judged
_CODE_RE = re.compile(r"^\s*\d{1,2}\s*$")  # contract: codes are two digits, sometimes one
MIN_FIELDS = {rt: max(c.position for c in columns) + 1 for rt, (_, columns) in LAYOUTS.items()}
TABLE_OF = {rt: table for rt, (table, _) in LAYOUTS.items()}
# Listed by the contract's consumer but not decoded here: they land in unknown_records.
LISTED_UNDECODED = ("000", "002", "003", "004", "006", "009", "036", "041", "098")

# Contract code lists (incomplete): for documentation and dbt seeds, not applied in the lake.
WORK_CATEGORY_NAMES = {"01": "Minor With Excavation", "26": "Unexpected Buried Object"}
STATUS_NAMES = {"01": "Potential", "04": "Proposed", "05": "In Progress", "07": "Closed", "15": "In Force",
                "18": "Completed"}


def _schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema([("activity_id", pa.string()), *columns, ("field_count", pa.int32()),
                      ("raw_fields", pa.list_(pa.string())), ("_block_month", pa.string()),
                      ("_landed_at", LANDED_TYPE)])


def _table_columns(record_type: str) -> list[tuple[str, pa.DataType]]:
    columns = [(c.name, ARROW[c.kind]) for c in LAYOUTS[record_type][1]]
    if record_type == "001":
        columns += [("first_start_at", TIMESTAMP_TYPE), ("placement", pa.string())]
    if record_type == "008":
        columns += [("start_at", TIMESTAMP_TYPE), ("end_at", TIMESTAMP_TYPE)]
    return columns


SCHEMAS: dict[str, pa.Schema] = {TABLE_OF[rt]: _schema(_table_columns(rt)) for rt in LAYOUTS}
SCHEMAS[UNKNOWN] = pa.schema([("record_type", pa.string()), ("activity_id", pa.string()), ("field_count", pa.int32()),
                              ("raw_line", pa.string()), ("raw_fields", pa.list_(pa.string())),
                              ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE)])
SCHEMAS[DIRECTORY] = pa.schema([
    ("district_key", pa.string()), ("district_key_1", pa.string()), ("district_key_2", pa.string()),
    ("organisation_name", pa.string()), ("organisation_names", pa.list_(pa.string())),
    ("record_count", pa.int32()), ("activity_count", pa.int32()), ("field_count", pa.int32()),
    ("raw_fields", pa.list_(pa.string())), ("_block_month", pa.string()), ("_landed_at", LANDED_TYPE)])
QUARANTINE_SCHEMA = contract.quarantine_schema([("record_type", pa.string()), ("activity_id", pa.string()),
                                                ("raw_line", pa.string())])


# ---------------------------------------------------------------- values

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d-%m-%Y")
_TIME_RE = re.compile(r"^(\d{1,2}):?(\d{2})(?::(\d{2}))?$")
_INT_RE = re.compile(r"^[+-]?\d{1,9}$")


def _text(value: str) -> str | None:
    value = value.strip()
    return value or None


def normalise_code(value: str) -> tuple[str | None, bool]:
    """A code documented as two digits: ``6`` -> ``06`` (and whether it was padded)."""
    value = value.strip()
    if not value:
        return None, False
    if len(value) == 1 and value.isdigit():
        return "0" + value, True
    return value, False


@lru_cache(maxsize=8192)
def _parse_day(text: str) -> datetime | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


@lru_cache(maxsize=8192)
def _parse_clock(text: str) -> tuple[int, int, int] | None:
    match = _TIME_RE.match(text)
    if not match:
        return None
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour, minute, second


def parse_date_time(date_text: str, time_text: str) -> datetime | None:
    """A date field and a time field (either may hold both, ``YYYY-MM-DD HH:MM``) as a naive
    timestamp; None when they do not parse. An empty time is midnight."""
    date_text, time_text = date_text.strip(), time_text.strip()
    if not date_text:
        return None
    for separator in ("T", " "):
        if separator in date_text:
            date_text, inline_time = date_text.split(separator, 1)
            if not time_text:
                time_text = inline_time.strip()
            break
    day = _parse_day(date_text)
    if day is None:
        return None
    if not time_text:
        return day
    clock = _parse_clock(time_text)
    if clock is None:
        return None
    return day.replace(hour=clock[0], minute=clock[1], second=clock[2])


def split_record(text: str) -> list[str]:
    """One CSV record's fields (``csv.Error`` on broken quoting)."""
    if '"' not in text:
        return text.split(",")
    return next(csv.reader([text], strict=True))


class Decoded:
    """One record: its type, activity id and fields, or why it is malformed."""

    __slots__ = ("record_type", "activity_id", "fields", "error")

    def __init__(self, record_type=None, activity_id=None, fields=None, error=None) -> None:
        self.record_type, self.activity_id, self.fields, self.error = record_type, activity_id, fields, error


def broken(text: str, error: str) -> Decoded:
    """A line that is not valid CSV: its record type and activity id when the first three fields
    are plain (so it is quarantined with its activity), else neither."""
    lead = text.split(",", 3)
    if len(lead) >= 3 and not any('"' in value for value in lead[:3]):
        return Decoded(lead[1].strip() or None, lead[2].strip() or None, None, error)
    return Decoded(error=error)


def decode(text: str) -> Decoded:
    try:
        fields = split_record(text)
    except csv.Error as error:
        return broken(text, f"malformed CSV: {error}")
    if len(fields) < 3:
        return Decoded(record_type=fields[1].strip() if len(fields) > 1 else None, fields=fields,
                       error=f"{len(fields)} field(s): a record needs at least 3 (row[1] record type, row[2] activity id)")
    record_type, activity_id = fields[1].strip(), fields[2].strip()
    if not activity_id and record_type != "099":  # a district record may list a district on its own
        return Decoded(record_type, None, fields, "missing activity id")
    activity_id = activity_id or None
    needed = MIN_FIELDS.get(record_type)
    if needed is not None and len(fields) < needed:
        return Decoded(record_type, activity_id, fields, f"record type {record_type} needs at least {needed} fields, got {len(fields)}")
    return Decoded(record_type, activity_id, fields)


def undertaker_times(fields: list[str]) -> tuple[datetime | None, datetime | None, str | None]:
    """The ``008`` start and end, or the first reason they are broken."""
    start_date, start_time, end_date, end_time = fields[4], fields[6], fields[8], fields[9]
    if not start_date.strip():
        return None, None, "missing start_date"
    start = parse_date_time(start_date, start_time)
    if start is None:
        return None, None, f"unparseable start_date/start_time {start_date.strip()!r} {start_time.strip()!r}"
    end = None
    if end_date.strip() or end_time.strip():
        end = parse_date_time(end_date, end_time)
        if end is None:
            return start, None, f"unparseable end_date/end_time {end_date.strip()!r} {end_time.strip()!r}"
    return start, end, None


def decode_row(record: Decoded, padded: Counter) -> tuple[dict | None, str | None]:
    """A known record type's named, typed values (without the activity id), or a reason."""
    table, columns = LAYOUTS[record.record_type]
    fields = record.fields
    row: dict = {}
    pads = []
    for column in columns:
        raw = fields[column.position]
        if column.kind == "code":
            row[column.name], was_padded = normalise_code(raw)
            if was_padded:
                pads.append(column.name)
        elif column.kind == "int":
            value = raw.strip()
            if value and not _INT_RE.match(value):
                return None, f"unparseable {column.name} {value!r}"
            row[column.name] = int(value) if value else None
        else:
            row[column.name] = _text(raw)
    if record.record_type == "008":
        start, end, reason = undertaker_times(fields)
        if reason:
            return None, reason
        row["start_at"], row["end_at"] = start, end
    for name in pads:
        padded[f"{table}.{name}"] += 1
    return row, None


# ---------------------------------------------------------------- the planner


def today_for(connection) -> date:
    value = (connection.extra or {}).get("today") if connection is not None else None
    if value:
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{SPEC.conn_id}: extra.today must be YYYY-MM-DD, not {value!r}") from None
    return datetime.now(LONDON).date()


def identifier_for(month: str, today: date) -> str:
    """The export identifier that holds the month: its year's file for a past year, its month code
    in the current year once the month has ended; :class:`NotPublished` otherwise."""
    first = parse_month(month)
    if first.year < today.year:
        return f"{first.year:04d}"
    if first.year == today.year and first.month < today.month:
        return MONTH_CODES[first.month - 1]
    if (first.year, first.month) == (today.year, today.month):
        raise NotPublished(f"{month} is the current month (today is {today.isoformat()}): its month file appears "
                           "once the month has ended")
    raise NotPublished(f"{month} is in the future (today is {today.isoformat()})")


def period_months(identifier: str, today: date) -> list[str]:
    """The calendar months a year or month file covers."""
    if len(identifier) == 4 and identifier.isdigit():
        return [f"{identifier}-{m:02d}" for m in range(1, 13)]
    if identifier in MONTH_CODES:
        return [f"{today.year:04d}-{MONTH_CODES.index(identifier) + 1:02d}"]
    raise ValueError(f"identifier {identifier!r} is not a year or a month code")


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
        raise SrwrError(f"{url}: expected JSON {{\"url\": ...}}, got {body[:120]!r}") from None
    signed = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(signed, str) or not signed:
        raise SrwrError(f"{url}: the JSON has no \"url\": {body[:200]!r}")
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
            if response.status_code >= 400 or response.status_code in RETRY_STATUSES and response.status_code not in (200, 206):
                snippet = (response.raw.read(300, decode_content=True) or b"").decode("utf-8", "replace")
                raise SrwrError(f"{response.status_code} from {_public(signed)}: {snippet}")
            try:
                return consume(response, {"attempts": attempt, "url": _public(signed)})
            except BODY_ERRORS as error:
                last = f"{type(error).__name__}: {error}"
                log.warning("srwr %s: download attempt %d cut short (%s); asking for a new URL", identifier, attempt, last)
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
        return {"headers": {k: response.headers.get(k) for k in ("ETag", "Last-Modified")},
                "total": _total_length(response), **info}

    found = with_fresh_url(session, connection, identifier, read_validators, headers={"Range": "bytes=0-0"})
    return {
        "watermark": watermark_of(identifier, found["headers"], found["total"], today),
        "identifier": identifier,
        "today": today.isoformat(),
        "etag": found["headers"]["ETag"],
        "last_modified": found["headers"]["Last-Modified"],
        "size": found["total"],
    }


# ---------------------------------------------------------------- streaming the file


def _body_pieces(response, counter: dict):
    expected = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding") not in (None, "identity")
    while True:
        piece = response.raw.read(HTTP_CHUNK, decode_content=True)
        if not piece:
            break
        counter["bytes"] += len(piece)
        yield piece
    if expected is not None and not encoded and int(expected) != counter["bytes"]:
        raise TransientBodyError(f"body cut short: {counter['bytes']} of {expected} bytes")


def records(pieces) -> Iterator[tuple[str, str | None]]:
    """``(record text, error)`` from UTF-8 byte pieces: one CSV record per line, except that a
    quoted field may hold line breaks (the record runs on until its quotes balance). Blank lines
    are skipped; line endings (LF or CRLF) are removed."""
    tail = b""
    pending: list[bytes] = []
    pending_quotes = 0
    pending_size = 0

    def finish(lines: list[bytes]) -> str:
        text = b"".join(lines).decode("utf-8", "replace")
        return text[:-1] if text.endswith("\r") else text

    for piece in pieces:
        data = tail + piece
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            if pending:
                pending.append(b"\n" + line)
                pending_quotes += line.count(b'"')
                pending_size += len(line)
                if pending_quotes % 2 == 0:
                    yield finish(pending), None
                    pending = []
                elif pending_size > MAX_RECORD_CHARS:
                    yield finish(pending)[:2000], "unterminated quoted field"
                    pending = []
                continue
            quotes = line.count(b'"')
            if quotes % 2:
                pending, pending_quotes, pending_size = [line], quotes, len(line)
                continue
            if line.strip(b"\r \t"):
                yield finish([line]), None
    if pending:
        if tail:
            pending.append(b"\n" + tail)
            pending_quotes += tail.count(b'"')
        if pending_quotes % 2 == 0:
            yield finish(pending), None
        else:
            yield finish(pending)[:2000], "unterminated quoted field"
    elif tail.strip(b"\r \t"):
        if tail.count(b'"') % 2:
            yield finish([tail])[:2000], "unterminated quoted field"
        else:
            yield finish([tail]), None


class _Held:
    """Records held until the activities' months are known: text and activity id, in Arrow chunks."""

    def __init__(self) -> None:
        self.chunks: list[pa.Table] = []
        self._ids: list[str | None] = []
        self._texts: list[str] = []
        self._errors: list[str | None] = []
        self._lines: list[int] = []

    def add(self, line: int, activity_id: str | None, text: str, error: str | None) -> None:
        self._ids.append(activity_id)
        self._texts.append(text)
        self._errors.append(error)
        self._lines.append(line)
        if len(self._ids) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._ids:
            self.chunks.append(pa.table({"line": pa.array(self._lines, pa.int64()), "activity_id": pa.array(self._ids, pa.string()),
                                         "text": pa.array(self._texts, pa.large_string()),
                                         "error": pa.array(self._errors, pa.string())}))
            self._ids, self._texts, self._errors, self._lines = [], [], [], []

    def rows(self):
        self.flush()
        for chunk in self.chunks:
            yield from zip(chunk["line"].to_pylist(), chunk["activity_id"].to_pylist(), chunk["text"].to_pylist(),
                           chunk["error"].to_pylist())


class _Directory:
    """The file's districts (record type ``099``), one row per key (``row[3]`` + ``row[4]``,
    contract), whichever activity (or none) lists them: the name of the key's last record in file
    order, every name seen, how many records and distinct activities list it, the last record's
    fields. A record with both key halves empty names no district and stays out."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], dict] = {}

    def add(self, record: Decoded) -> None:
        fields = record.fields
        key = (fields[3].strip(), fields[4].strip())
        if not any(key):
            return
        name = _text(fields[5])
        entry = self.keys.setdefault(key, {"names": [], "records": 0, "activities": set()})
        entry["records"] += 1
        entry["name"] = name
        entry["fields"] = fields
        if name is not None and name not in entry["names"]:
            entry["names"].append(name)
        if record.activity_id is not None:
            entry["activities"].add(record.activity_id)

    def table(self, month: str, landed: datetime) -> pa.Table:
        keys = sorted(self.keys)
        entries = [self.keys[k] for k in keys]
        n = len(keys)
        return pa.table({
            "district_key": pa.array([f"{a}-{b}" for a, b in keys], pa.string()),
            "district_key_1": pa.array([a or None for a, _ in keys], pa.string()),
            "district_key_2": pa.array([b or None for _, b in keys], pa.string()),
            "organisation_name": pa.array([e["name"] for e in entries], pa.string()),
            "organisation_names": pa.array([e["names"] for e in entries], pa.list_(pa.string())),
            "record_count": pa.array([e["records"] for e in entries], pa.int32()),
            "activity_count": pa.array([len(e["activities"]) for e in entries], pa.int32()),
            "field_count": pa.array([len(e["fields"]) for e in entries], pa.int32()),
            "raw_fields": pa.array([e["fields"] for e in entries], pa.list_(pa.string())),
            "_block_month": pa.array([month] * n, pa.string()),
            "_landed_at": pa.array([landed] * n, LANDED_TYPE),
        }, schema=SCHEMAS[DIRECTORY])


def read_file(pieces, month: str, identifier: str, today: date, landed_at: datetime, counter: dict | None = None) -> BlockData:
    """Read one export file (a zip of one CSV) from byte pieces and keep ``month``'s records."""
    started = time.monotonic()
    period = period_months(identifier, today)
    if month not in period:
        raise ValueError(f"{month} is not in the period of file {identifier!r} ({period[0]}..{period[-1]})")
    first_month, last_month = period[0], period[-1]
    block_start = datetime.combine(parse_month(month), datetime.min.time())
    period_start = datetime.combine(parse_month(first_month), datetime.min.time())

    pieces = iter(pieces)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= 4:
            break
    if not head.startswith(ZIP_MAGIC):
        raise SrwrError(f"srwr {identifier}: the download is not a zip (starts {head[:60]!r})")

    def chained():
        yield head
        yield from pieces

    member = ZipMemberStream(chained(), r"(?i)\.csv$")
    text = Utf8Stream(_inflated(member, identifier), "utf-8")
    layout = _LayoutCheck()

    earliest: dict[str, datetime] = {}  # activity id -> earliest readable 008 start
    activity_ids: set[str] = set()  # ids with a record other than a district (099): the file's activities
    directory = _Directory()
    held = _Held()
    file_types: Counter = Counter()
    file_lines = 0
    dropped = 0
    for number, (record_text, error) in enumerate(records(text), start=1):
        file_lines += 1
        record = broken(record_text, error) if error else decode(record_text)
        activity_id = record.activity_id
        if activity_id is not None and record.record_type != "099":
            activity_ids.add(activity_id)
        file_types[record.record_type or "?"] += 1
        if record.error is None and record.record_type in LAYOUTS:
            layout.add(record.record_type, record.fields)
        if record.error is None and record.record_type == "099":
            directory.add(record)
        if record.error is None and record.record_type == "008":
            start, _, reason = undertaker_times(record.fields)
            if reason is None:
                known = earliest.get(activity_id)
                if known is None or start < known:
                    earliest[activity_id] = start
        known = earliest.get(activity_id) if activity_id is not None else None
        if known is not None and period_start <= known < block_start:
            dropped += 1  # dated earlier in the file's period than the block: never this block's
            continue
        held.add(number, activity_id, record_text, record.error)
    layout.check(identifier)

    # Each activity's block month and how it was chosen (never a refusal: every activity lands).
    def placement(activity_id: str | None) -> tuple[str, str | None]:
        if activity_id is None:
            return first_month, None
        start = earliest.get(activity_id)
        if start is None:
            return first_month, PLACED_UNDATED
        own = format_month(start.date())
        if own < first_month:
            return first_month, PLACED_BEFORE
        if own > last_month:
            return last_month, PLACED_AFTER
        return own, PLACED_BY_START

    rows: dict[str, list] = {name: [] for name in SCHEMAS if name != DIRECTORY}
    quarantine: list[tuple] = []
    padded: Counter = Counter()
    activity_lines = 0
    directory_only = 0
    cache: dict = {}
    for line, activity_id, record_text, error in held.rows():
        if activity_id not in cache:
            cache[activity_id] = placement(activity_id)
        target, placed_by = cache[activity_id]
        if target != month:
            continue
        record = broken(record_text, error) if error else decode(record_text)
        if record.error is None and record.record_type == "099" and activity_id not in activity_ids:
            directory_only += 1  # a district listed on its own: it lands in the district directory
            continue
        activity_lines += 1
        if record.error:
            quarantine.append((activity_id, line, record.record_type, record_text, record.error))
            continue
        record_type = record.record_type
        if record_type not in LAYOUTS:
            rows[UNKNOWN].append((activity_id, line, {"record_type": record_type, "raw_line": record_text,
                                                      "raw_fields": record.fields}))
            continue
        values, reason = decode_row(record, padded)
        if reason:
            quarantine.append((activity_id, line, record_type, record_text, reason))
            continue
        if record_type == "001":
            values["first_start_at"] = earliest.get(activity_id)
            values["placement"] = placed_by
        values["raw_fields"] = record.fields
        rows[TABLE_OF[record_type]].append((activity_id, line, values))

    landed = landed_at.astimezone(timezone.utc)
    tables = {name: _build(name, items, month, landed) for name, items in rows.items()}
    tables[DIRECTORY] = directory.table(month, landed)
    quarantine.sort(key=lambda item: ((item[0] or ""), item[1]))
    q = pa.table({
        "record_type": pa.array([item[2] for item in quarantine], pa.string()),
        "activity_id": pa.array([item[0] for item in quarantine], pa.string()),
        "raw_line": pa.array([item[3] for item in quarantine], pa.string()),
        "_reason": pa.array([item[4] for item in quarantine], pa.string()),
        "_block_month": pa.array([month] * len(quarantine), pa.string()),
        "_landed_at": pa.array([landed] * len(quarantine), LANDED_TYPE),
    }, schema=QUARANTINE_SCHEMA)

    dated_months = Counter(format_month(start.date()) for start in earliest.values())
    file_placements = Counter(placement(a)[1] for a in activity_ids)
    activity_table = tables.pop(ACTIVITY)
    ids = activity_table["activity_id"].to_pylist()
    seconds = time.monotonic() - started
    stats = {
        "identifier": identifier,
        "zip_member": member.name,
        "file_lines": file_lines,
        "file_records_by_type": dict(sorted(file_types.items())),
        "file_activities": len(activity_ids),
        "file_dated_activities": len(earliest),
        "file_dated_activities_by_month": dict(sorted(dated_months.items())),
        "file_activities_by_placement": dict(sorted(file_placements.items())),
        "block_activities_by_placement": dict(sorted(Counter(activity_table["placement"].to_pylist()).items())),
        "district_directory_rows": tables[DIRECTORY].num_rows,
        "district_records_without_activity": directory_only,
        "file_field_counts": layout.widths(),
        "block_lines": activity_lines,
        "lines_dropped_early": dropped,
        "unknown_record_types": dict(sorted(Counter(tables[UNKNOWN]["record_type"].to_pylist()).items())),
        "duplicate_activity_records": len(ids) - len(set(ids)),
        "codes_padded": dict(sorted(padded.items())),
        "quarantine_reasons": dict(sorted(Counter(_reason_kind(item[4]) for item in quarantine).items())),
        "parse_seconds": round(seconds, 3),
    }
    if counter is not None:
        stats["fetched_bytes"] = counter["bytes"]
    return BlockData(data=activity_table, quarantine=q if q.num_rows else None, stats=stats, tables=tables)


def _inflated(member, identifier: str):
    """The member's bytes; a deflate stream that breaks is damaged bytes, like a failed CRC-32
    (which ``ZipMemberStream`` reports as a body cut short): worth a fresh download."""
    try:
        yield from member
    except zlib.error as error:
        raise TransientBodyError(f"zip member of {identifier} does not inflate ({error}): the file's bytes are "
                                 "damaged") from error


class _LayoutCheck:
    """Per record type: how many records, their widths, and how many fill each documented
    column (with a value of its kind), to tell a moved column from bad rows."""

    def __init__(self) -> None:
        self.records: Counter = Counter()
        self.width: dict[str, Counter] = {}
        self.valid: Counter = Counter()
        self.given: Counter = Counter()

    def add(self, record_type: str, fields: list[str]) -> None:
        self.records[record_type] += 1
        self.width.setdefault(record_type, Counter())[len(fields)] += 1
        for column in LAYOUTS[record_type][1]:
            if not (column.filled or column.kind == "code"):
                continue
            value = fields[column.position].strip()
            if not value:
                continue
            self.given[(record_type, column.name)] += 1
            if column.kind == "code" and not _CODE_RE.match(value):
                continue
            if column.kind == "int" and not _INT_RE.match(value):
                continue
            self.valid[(record_type, column.name)] += 1

    def widths(self) -> dict:
        return {rt: {str(w): n for w, n in sorted(c.items())} for rt, c in sorted(self.width.items())}

    def check(self, identifier: str) -> None:
        problems = []
        for record_type, count in sorted(self.records.items()):
            if count < LAYOUT_CHECK_MIN:
                continue
            for column in LAYOUTS[record_type][1]:
                key = (record_type, column.name)
                if column.filled and not self.given[key]:
                    problems.append(f"{record_type} {column.name} (row[{column.position}]) is empty in all {count} records")
                elif column.kind == "code" and self.given[key] and not self.valid[key]:
                    problems.append(f"{record_type} {column.name} (row[{column.position}]) holds no code in any of "
                                    f"{count} records")
        if problems:
            raise SchemaDriftError(f"srwr {identifier}: the record layout changed ({'; '.join(problems)}; widths "
                                   f"{self.widths()}): a column was removed, added or moved, so the documented "
                                   "positions cannot be trusted; nothing is landed")


def _reason_kind(reason: str) -> str:
    """The reason without the values it quotes, for the manifest's counts."""
    if reason.startswith("malformed CSV"):
        return "malformed CSV"
    return re.sub(r""" ['"].*$""", "", reason)


def _build(name: str, items: list, month: str, landed: datetime) -> pa.Table:
    """Rows (sorted by activity id, then file order) as the table's schema."""
    schema = SCHEMAS[name]
    items.sort(key=lambda item: (item[0], item[1]))
    n = len(items)
    columns = {}
    for field in schema:
        if field.name == "activity_id":
            values = [item[0] for item in items]
        elif field.name == "field_count":
            values = [len(item[2]["raw_fields"]) for item in items]
        elif field.name == "_block_month":
            values = [month] * n
        elif field.name == "_landed_at":
            values = [landed] * n
        else:
            values = [item[2].get(field.name) for item in items]
        columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=schema)


def extract_block(session, connection, month: str, probed: dict, landed_at: datetime | None = None,
                  part: str | None = None, previous: dict | None = None, location=None,
                  force: bool = False) -> BlockData:
    landed_at = landed_at or datetime.now(timezone.utc)
    today = date.fromisoformat(probed["today"]) if probed.get("today") else today_for(connection)
    identifier = probed.get("identifier") or identifier_for(month, today)

    def consume(response, info):
        counter = {"bytes": 0}
        block = read_file(_body_pieces(response, counter), month, identifier, today, landed_at, counter)
        downloaded = watermark_of(identifier, response.headers, _total_length(response), today)
        return block, downloaded, info

    started = time.monotonic()
    block, downloaded, info = with_fresh_url(session, connection, identifier, consume)
    if downloaded != probed.get("watermark"):
        # The file changed between the probe and the download: record what was actually read.
        log.warning("srwr %s: the file changed since the probe (%s -> %s)", month, probed.get("watermark"), downloaded)
        probed["watermark"] = downloaded
    refuse_emptying(previous, block.data.num_rows, force,
                    f"the {identifier} export holds no activity for {month} ({block.stats['file_lines']} lines)")
    block.stats = {"download_url": info["url"], "url_attempts": info["attempts"], **block.stats,
                   "download_parse_seconds": round(time.monotonic() - started, 3)}
    return block
