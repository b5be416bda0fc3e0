"""SRWR's contract: the source's spec, the planner (which export file holds a month), the record
layouts and each table's schema, and how a record's fields are read (codes, dates and times, the row)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import pyarrow as pa

from civic_pipelines.core import contract
from civic_pipelines.core.contract import LANDED_TYPE  # noqa: F401 - re-exported for the package
from civic_pipelines.http import SourceHTTPError
from civic_pipelines.months import parse_month
from civic_pipelines.sources import declared
from civic_pipelines.sources.base import NotPublished

SPEC = declared.SRWR_SPEC  # declared with its capabilities in sources/declared.py: parsing reads it there

MONTH_CODES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
LONDON = ZoneInfo("Europe/London")
URL_ATTEMPTS = 4  # step 1 + step 2 tries per probe or download (a fresh pre-signed URL each time)
HTTP_CHUNK = 1 << 20
MAX_RECORD_CHARS = 1 << 20  # a quoted field still open after this much text: the quote never closes
CHUNK_ROWS = 65_536  # records per Arrow chunk of held lines
ZIP_MAGIC = b"PK\x03\x04"
TIMESTAMP_TYPE = pa.timestamp("us")

ACTIVITY, PHASE, UNDERTAKER_PHASE, SITE, DISTRICT, UNKNOWN = (
    "activity",
    "phase",
    "undertaker_phase",
    "site",
    "district",
    "unknown_records",
)
DIRECTORY = "district_directory"  # one row per district key listed anywhere in the file (099)
# How an activity got its block month (the activity table's ``placement``): see *Which month*.
PLACED_BY_START, PLACED_BEFORE, PLACED_AFTER, PLACED_UNDATED = ("start", "before_period", "after_period", "undated")


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
    "007": (
        PHASE,
        [
            Column("location_text", 6),
            Column("phase_number", 7, "int", filled=True),
            Column("work_category_code", 9, "code", filled=True),
            Column("status_code", 10, "code", filled=True),
            Column("coordinates", 12),
        ],
    ),
    "008": (
        UNDERTAKER_PHASE,
        [
            Column("phase_number", 3, "int", filled=True),
            Column("start_date", 4, filled=True),
            Column("start_time", 6),
            Column("end_date", 8),
            Column("end_time", 9),
            Column("traffic_management_type_code", 20, "code"),
            Column("footway", 21),
        ],
    ),
    "010": (SITE, [Column("location_code", 9, "code", filled=True)]),
    "099": (
        DISTRICT,
        [
            Column("district_key_1", 3, filled=True),
            Column("district_key_2", 4, filled=True),
            Column("organisation_name", 5, filled=True),
        ],
    ),
}
LAYOUT_CHECK_MIN = 5  # records of a type a file needs before its layout is judged
_CODE_RE = re.compile(r"^\s*\d{1,2}\s*$")  # contract: codes are two digits, sometimes one
MIN_FIELDS = {rt: max(c.position for c in columns) + 1 for rt, (_, columns) in LAYOUTS.items()}
TABLE_OF = {rt: table for rt, (table, _) in LAYOUTS.items()}
# Listed by the contract's consumer but not decoded here: they land in unknown_records.
LISTED_UNDECODED = ("000", "002", "003", "004", "006", "009", "036", "041", "098")

# Contract code lists (incomplete): for documentation and dbt seeds, not applied in the lake.
WORK_CATEGORY_NAMES = {"01": "Minor With Excavation", "26": "Unexpected Buried Object"}
STATUS_NAMES = {
    "01": "Potential",
    "04": "Proposed",
    "05": "In Progress",
    "07": "Closed",
    "15": "In Force",
    "18": "Completed",
}


def _schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return contract.data_schema(
        [("activity_id", pa.string()), *columns, ("field_count", pa.int32()), ("raw_fields", pa.list_(pa.string()))]
    )


def _table_columns(record_type: str) -> list[tuple[str, pa.DataType]]:
    columns = [(c.name, ARROW[c.kind]) for c in LAYOUTS[record_type][1]]
    if record_type == "001":
        columns += [("first_start_at", TIMESTAMP_TYPE), ("placement", pa.string())]
    if record_type == "008":
        columns += [("start_at", TIMESTAMP_TYPE), ("end_at", TIMESTAMP_TYPE)]
    return columns


SCHEMAS: dict[str, pa.Schema] = {TABLE_OF[rt]: _schema(_table_columns(rt)) for rt in LAYOUTS}
SCHEMAS[UNKNOWN] = contract.data_schema(
    [
        ("record_type", pa.string()),
        ("activity_id", pa.string()),
        ("field_count", pa.int32()),
        ("raw_line", pa.string()),
        ("raw_fields", pa.list_(pa.string())),
    ]
)
SCHEMAS[DIRECTORY] = contract.data_schema(
    [
        ("district_key", pa.string()),
        ("district_key_1", pa.string()),
        ("district_key_2", pa.string()),
        ("organisation_name", pa.string()),
        ("organisation_names", pa.list_(pa.string())),
        ("record_count", pa.int32()),
        ("activity_count", pa.int32()),
        ("field_count", pa.int32()),
        ("raw_fields", pa.list_(pa.string())),
    ]
)
QUARANTINE_SCHEMA = contract.quarantine_schema(
    [("record_type", pa.string()), ("activity_id", pa.string()), ("raw_line", pa.string())]
)


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
        return Decoded(
            record_type=fields[1].strip() if len(fields) > 1 else None,
            fields=fields,
            error=f"{len(fields)} field(s): a record needs at least 3 (row[1] record type, row[2] activity id)",
        )
    record_type, activity_id = fields[1].strip(), fields[2].strip()
    if not activity_id and record_type != "099":  # a district record may list a district on its own
        return Decoded(record_type, None, fields, "missing activity id")
    activity_id = activity_id or None
    needed = MIN_FIELDS.get(record_type)
    if needed is not None and len(fields) < needed:
        return Decoded(
            record_type,
            activity_id,
            fields,
            f"record type {record_type} needs at least {needed} fields, got {len(fields)}",
        )
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
        raise NotPublished(
            f"{month} is the current month (today is {today.isoformat()}): its month file appears "
            "once the month has ended"
        )
    raise NotPublished(f"{month} is in the future (today is {today.isoformat()})")


def period_months(identifier: str, today: date) -> list[str]:
    """The calendar months a year or month file covers."""
    if len(identifier) == 4 and identifier.isdigit():
        return [f"{identifier}-{m:02d}" for m in range(1, 13)]
    if identifier in MONTH_CODES:
        return [f"{today.year:04d}-{MONTH_CODES.index(identifier) + 1:02d}"]
    raise ValueError(f"identifier {identifier!r} is not a year or a month code")
