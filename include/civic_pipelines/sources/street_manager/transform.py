"""Street Manager's transform: one archive's chunks to typed record batches and quarantine rows
(parse, flatten, type, normalise, validate), with the manifest's stats."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from civic_pipelines.sources.base import SchemaDriftError
from civic_pipelines.sources.street_manager.archive import Chunk, ZipWalker, _member_name, pipelined
from civic_pipelines.sources.street_manager.contract import (
    _LONDON,
    BARE_TIME_FIELDS,
    COORDINATE_FIELDS,
    KNOWN_EVENT_TYPES,
    LANDED_TYPE,
    OBJECT_FIELDS,
    OBJECT_TYPES,
    QUARANTINE_SCHEMA,
    REFERENCE_FIELDS,
    TIMESTAMP,
    TIMESTAMP_FIELDS,
    ArchiveTruncated,
    _parse_schema,
    _timestamps,
    data_schema,
    normalise_event_type,
)
from civic_pipelines.sources.street_manager.coordinates import bng_wkt_to_wgs84

log = logging.getLogger(__package__)  # one logger for the source, whichever module logs

PARSE_BLOCK = 1 << 20  # pyarrow.json block (its unit of parallel parsing)


class ArchiveReader:
    """One archive's chunks to typed record batches and quarantine rows, with the stats."""

    def __init__(self, part: str, month: str, landed_at: datetime) -> None:
        self.part = part
        self.month = month
        self.landed_at = landed_at
        self.schema = data_schema(part)
        self.fields = OBJECT_FIELDS[part]
        # The raw table's columns, in order, whichever parser (pyarrow or the exact one) read the chunk.
        self.raw_names = [
            "event_reference",
            "event_type",
            "event_time",
            "object_type",
            "object_reference",
            "version",
            "_object_data_present",
            *self.fields,
            "extras",
        ]
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
                raise SchemaDriftError(
                    f"required field {name} is missing from all {self.events} events of the "
                    f"{self.part} archive for {self.month}: the publisher changed the format"
                )
        never = [name for name in self.fields if name not in self.present_fields]
        drift = {
            "new_fields": dict(sorted(self.new_fields.items())),
            "missing_fields": never,
            "type_changes": dict(sorted(self.type_changes.items())),
        }
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
            return (
                pc.cast(array, pa.string())
                if not pa.types.is_boolean(array.type)
                else pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
            )
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
            return pc.if_else(
                digits,
                pc.cast(pc.if_else(digits, pc.utf8_trim_whitespace(array), "0"), pa.int64()),
                pa.scalar(None, pa.int64()),
            )
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
        arrays = []
        for name in self.raw_names:
            array = columns.get(name)
            if array is None:
                kind = pa.int64() if name in ("event_reference", "version") else pa.string()
                array = pa.nulls(n, kind)
            elif name not in ("event_reference", "version", "_object_data_present", "extras"):
                if array.null_count < n:
                    self.present_fields.add(name)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=self.raw_names)

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
        for name in self.raw_names:
            kind = (
                pa.int64()
                if name in ("event_reference", "version")
                else (pa.bool_() if name == "_object_data_present" else pa.string())
            )
            columns[name] = pa.array(
                [row.get(name, False if name == "_object_data_present" else None) for row in rows], kind
            )
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
        flag(
            pc.not_equal(pc.fill_null(object_type, ""), OBJECT_TYPES[self.part]),
            f"object_type is not {OBJECT_TYPES[self.part]}",
        )
        # The natural key: the first event with a reference wins, within the chunk and the archive.
        references = event_reference.to_pylist()
        fresh = set(references)
        if len(fresh) == len(references) and None not in fresh and self.seen.isdisjoint(fresh) and not any(reasons):
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
                    typed, unparsed = self._bare_times(
                        name, values, typed, unparsed, raw.column(bare[name]).combine_chunks()
                    )
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
            local = datetime(
                local_day.year, local_day.month, local_day.day, hour, minute, second[0] if second else 0, tzinfo=_LONDON
            )
            fixed.append(local.astimezone(UTC))
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
        return pa.Table.from_arrays(
            [
                pa.array([member for member, _, _ in bad], pa.string()),
                pa.array([raw[: 1 << 20].decode("utf-8", "replace") for _, raw, _ in bad], pa.string()),
                pa.array([reason for _, _, reason in bad], pa.string()),
                pa.array([self.month] * n, pa.string()),
                pa.array([self.landed_at] * n, LANDED_TYPE),
            ],
            schema=QUARANTINE_SCHEMA,
        )


class _NeedsExactPath(Exception):
    pass


def _reason_key(reason: str) -> str:
    """Reasons grouped for the manifest (the quarantine file keeps the full text)."""
    for prefix in (
        "member is not valid JSON",
        "member does not inflate",
        "member fails its CRC-32",
        "duplicate event_reference",
        "unparseable event_time",
    ):
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
        type(value), type(value).__name__
    )


def _number_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _blank(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)


def _value_counts(values: pa.Array) -> tuple[list, list]:
    counts = pc.value_counts(values)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()
