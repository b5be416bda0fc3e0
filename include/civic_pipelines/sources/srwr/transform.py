"""SRWR's transform: one export file's records split as they arrive, held only while their activity
may belong to the block, then decoded, checked for layout drift and built into the block's tables."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pyarrow as pa

from civic_pipelines.adapters.streamed_text import Utf8Stream, chain_first, first_bytes
from civic_pipelines.core.zipstream import FirstMatch, ZipErrors
from civic_pipelines.http import TransientBodyError
from civic_pipelines.months import format_month, parse_month
from civic_pipelines.sources.base import BlockData, SchemaDriftError
from civic_pipelines.sources.srwr.contract import (
    _CODE_RE,
    _INT_RE,
    ACTIVITY,
    CHUNK_ROWS,
    DIRECTORY,
    LANDED_TYPE,
    LAYOUT_CHECK_MIN,
    LAYOUTS,
    MAX_RECORD_CHARS,
    PLACED_AFTER,
    PLACED_BEFORE,
    PLACED_BY_START,
    PLACED_UNDATED,
    QUARANTINE_SCHEMA,
    SCHEMAS,
    TABLE_OF,
    UNKNOWN,
    ZIP_MAGIC,
    Decoded,
    SrwrError,
    _text,
    broken,
    decode,
    decode_row,
    period_months,
    undertaker_times,
)

# A zip cut short or damaged (a member that does not inflate or fails its CRC-32) is worth a fresh
# download; one that cannot be read forward is not.
ZIP_ERRORS = ZipErrors(truncated=TransientBodyError, corrupt=TransientBodyError, unsupported=SrwrError)


# ---------------------------------------------------------------- streaming the file


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
            self.chunks.append(
                pa.table(
                    {
                        "line": pa.array(self._lines, pa.int64()),
                        "activity_id": pa.array(self._ids, pa.string()),
                        "text": pa.array(self._texts, pa.large_string()),
                        "error": pa.array(self._errors, pa.string()),
                    }
                )
            )
            self._ids, self._texts, self._errors, self._lines = [], [], [], []

    def rows(self):
        self.flush()
        for chunk in self.chunks:
            yield from zip(
                chunk["line"].to_pylist(),
                chunk["activity_id"].to_pylist(),
                chunk["text"].to_pylist(),
                chunk["error"].to_pylist(),
            )


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
        return pa.table(
            {
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
            },
            schema=SCHEMAS[DIRECTORY],
        )


def read_file(
    pieces, month: str, identifier: str, today: date, landed_at: datetime, counter: dict | None = None
) -> BlockData:
    """Read one export file (a zip of one CSV) from byte pieces and keep ``month``'s records."""
    started = time.monotonic()
    period = period_months(identifier, today)
    if month not in period:
        raise ValueError(f"{month} is not in the period of file {identifier!r} ({period[0]}..{period[-1]})")
    first_month, last_month = period[0], period[-1]
    block_start = datetime.combine(parse_month(month), datetime.min.time())
    period_start = datetime.combine(parse_month(first_month), datetime.min.time())

    head, pieces = first_bytes(pieces, 4)
    if not head.startswith(ZIP_MAGIC):
        raise SrwrError(f"srwr {identifier}: the download is not a zip (starts {head[:60]!r})")

    member = FirstMatch(chain_first(head, pieces), r"(?i)\.csv$", errors=ZIP_ERRORS, no_match=SrwrError)
    text = Utf8Stream(member, "utf-8")
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
            rows[UNKNOWN].append(
                (activity_id, line, {"record_type": record_type, "raw_line": record_text, "raw_fields": record.fields})
            )
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

    landed = landed_at.astimezone(UTC)
    tables = {name: _build(name, items, month, landed) for name, items in rows.items()}
    tables[DIRECTORY] = directory.table(month, landed)
    quarantine.sort(key=lambda item: ((item[0] or ""), item[1]))
    q = pa.table(
        {
            "record_type": pa.array([item[2] for item in quarantine], pa.string()),
            "activity_id": pa.array([item[0] for item in quarantine], pa.string()),
            "raw_line": pa.array([item[3] for item in quarantine], pa.string()),
            "_reason": pa.array([item[4] for item in quarantine], pa.string()),
            "_block_month": pa.array([month] * len(quarantine), pa.string()),
            "_landed_at": pa.array([landed] * len(quarantine), LANDED_TYPE),
        },
        schema=QUARANTINE_SCHEMA,
    )

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
                    problems.append(
                        f"{record_type} {column.name} (row[{column.position}]) is empty in all {count} records"
                    )
                elif column.kind == "code" and self.given[key] and not self.valid[key]:
                    problems.append(
                        f"{record_type} {column.name} (row[{column.position}]) holds no code in any of {count} records"
                    )
        if problems:
            raise SchemaDriftError(
                f"srwr {identifier}: the record layout changed ({'; '.join(problems)}; widths "
                f"{self.widths()}): a column was removed, added or moved, so the documented "
                "positions cannot be trusted; nothing is landed"
            )


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
