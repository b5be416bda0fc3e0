"""One month's block from the rows of a CKAN year file: month assignment, validation with
quarantine, the derived columns and the derived key (the CKAN adapter reads the file; see
:mod:`civic_pipelines.adapters.ckan`).

**Month assignment.** A row belongs to the month of its date field (parsed with the fixed-width
``date_format``, an optional fraction of up to ``date_fraction_digits`` digits, kept to the
microsecond; impossible dates such as 30 February are rejected by a round trip). A row dated in
another year of a yearly file is quarantined in that file's January (earlier years) or December
(later years) block. A row whose date is missing or unparseable cannot be dated: when the format
starts with ``%Y-%m`` and the value starts with a valid month of the file's year it goes to that
month (``2024-02-30`` to February), otherwise to the month of the last dated row before it in the
file (yearly files are sorted by date), or January when there is none; it is quarantined there. A
line with the wrong field count goes by its own date field in the same way, or to January when
that cannot be read. So every line of the year lands or is quarantined in exactly one block.

**Quarantine reasons** (the first broken rule): ``<n> fields where the header has <m>``,
``missing <date>``, ``unparseable <date>``, ``<date> outside the file's year <YYYY>``,
``missing <required field>``, ``unparseable <required field>``. An optional value that does not
parse as its type lands as null and is counted (``nulled_values``). ``required`` asks for the column
in the header; a required field that is also ``nullable`` (a location that may be empty) lands
its rows with a null there, counted per field in ``empty_values``, instead of quarantining them.

**Derived columns.** ``splits``: a regex with named groups (RE2 syntax) applied to a cleaned
column, one lake column per group (``Name (12)`` to name and number); values that do not match
keep the column as published and get nulls in the parts (counted as ``unmatched_splits``).
``date_bands``: a column whose value depends on the row's date (``before`` bounds in order, the
last band open-ended), e.g. which ward system applies.

**Key.** ``key`` names a field that identifies a row, or, for files without one, a table
``{name, hash_of}``: the key is then the first 16 hex digits of BLAKE2b over the canonical text of
the listed typed, cleaned values plus an occurrence number that tells identical rows apart in file
order. Leave mutable fields (a status) out of ``hash_of``, so a late edit changes a row instead of
replacing its key. Rows are landed in date then key order, so the block's checksum only moves when
its content does.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.adapters.ckan_fields import Field, clean_strings, parse_timestamps, typed
from civic_pipelines.core import contract

if TYPE_CHECKING:
    from civic_pipelines.adapters.ckan import CkanResourceSource

_count = contract.count_true


class FileMonths:
    """Month assignment across a file's batches (carries the last dated row's month)."""

    def __init__(self, year: int, month: str | None) -> None:
        self.year = year
        self.month = month
        self.last = f"{year:04d}-01"
        self.parsed = 0  # date values that parse (file-wide), and present ones that do not
        self.unparsed = 0
        self.example: str | None = None

    def months(self, date_raw, source: CkanResourceSource) -> pa.Array:
        """The block month of each row (see the module docstring)."""
        values = clean_strings(date_raw, source.date_field)
        parsed = parse_timestamps(values, *source.date_args)
        self.parsed += pc.count(parsed).as_py() or 0
        failed = pc.and_(pc.is_valid(values), pc.is_null(parsed))
        failures = _count(failed)
        if failures:
            self.unparsed += failures
            if self.example is None:
                self.example = pc.filter(values, failed)[0].as_py()
        years = pc.year(parsed)
        own = pc.strftime(parsed, format="%Y-%m")
        in_year = pc.fill_null(pc.equal(years, self.year), False)
        first, last = f"{self.year:04d}-01", f"{self.year:04d}-12"
        dated = pc.if_else(in_year, own, pc.if_else(pc.less(years, self.year), first, last))
        # Undated rows: by the value's month prefix, else the last dated row before them.
        in_year_month = pc.if_else(in_year, own, pa.scalar(None, pa.string()))
        previous = pc.fill_null(pc.fill_null_forward(in_year_month), self.last)
        tail = pc.drop_null(in_year_month)
        if len(tail):
            self.last = tail[-1].as_py()
        undated = previous
        if source.date_format.startswith("%Y-%m"):
            prefix = pc.utf8_slice_codeunits(values, 0, 7)
            prefix_ok = pc.fill_null(pc.match_substring_regex(prefix, rf"^{self.year:04d}-(0[1-9]|1[0-2])$"), False)
            undated = pc.if_else(prefix_ok, prefix, previous)
        return pc.if_else(pc.is_valid(parsed), dated, undated)

    def assign(self, date_raw, source: CkanResourceSource) -> pa.Array:
        return pc.fill_null(pc.equal(self.months(date_raw, source), self.month), False)


def validate_block(source: CkanResourceSource, raw: pa.Table, lines: list, month: str, year: int, landed_at: datetime):
    """One block's raw strings checked, typed and derived: (landed rows, quarantine or None, stats)."""
    n = raw.num_rows
    clean = {field.name: clean_strings(raw[field.name], field) for field in source.fields}
    columns, bad = {}, {}
    for field in source.fields:
        if field is source.date_field:
            columns[field.name] = parse_timestamps(clean[field.name], *source.date_args)
            bad[field.name] = pc.and_(pc.is_valid(clean[field.name]), pc.is_null(columns[field.name]))
        else:
            columns[field.name], bad[field.name] = typed(clean[field.name], field.type, field)
    date = columns[source.date_field.name]
    name = source.date_field.name
    rules = [
        (pc.is_null(clean[name]), contract.missing(name)),
        (bad[name], contract.unparseable(name)),
        (pc.not_equal(pc.year(date), year), f"{name} outside the file's year {year}"),
    ]
    for field in source.required:
        if not field.nullable:
            rules.append((pc.is_null(clean[field.name]), contract.missing(field.name)))
        if field.type != "string":
            rules.append((bad[field.name], contract.unparseable(field.name)))
    reason = contract.first_broken_rule(rules, n)
    rejected = pc.is_valid(reason)
    kept = pc.invert(rejected)

    nulled = {}
    for field in source.fields:
        if field.required or field is source.date_field or field.type == "string":
            continue
        count = _count(pc.and_(bad[field.name], kept))
        if count:
            nulled[field.name] = count
    # Landed rows whose nullable field is empty (a request without a location is a request).
    empty = {}
    for field in source.fields:
        if field.nullable:
            count = _count(pc.and_(pc.is_null(clean[field.name]), kept))
            if count:
                empty[field.name] = count

    out, unmatched = {}, {}
    for field in source.fields:
        out[field.name] = columns[field.name]
        for split in source.splits:
            if split.field is not field:
                continue
            values = clean[field.name]
            parts = pc.extract_regex(values, split.pattern)
            matched = pc.is_valid(parts)
            misses = _count(pc.and_(pc.and_(pc.is_valid(values), pc.invert(matched)), kept))
            if misses:
                unmatched[field.name] = misses
            for group, kind in split.outputs:
                part = pc.if_else(matched, pc.struct_field(parts, group), pa.scalar(None, pa.string()))
                out[group] = typed(part, kind)[0]
    for band in source.bands:
        out[band.name] = band.column(columns[band.field.name])
    out.update(contract.block_columns(n, month, landed_at))
    good = pa.table({k: v for k, v in out.items()}).filter(kept)
    identical = 0
    if source.key_field is None:
        ids, identical = hash_keys(source.hash_of, good)
        good = good.append_column(source.key_name, ids)
    good = good.select(source.data_schema.names).cast(source.data_schema)
    if good.num_rows > 1:
        good = good.sort_by([(source.date_field.name, "ascending"), (source.key_name, "ascending")])
    good = good.combine_chunks()

    quarantine = pa.table({field.name: clean[field.name] for field in source.fields}).filter(rejected)
    count = quarantine.num_rows
    quarantine = quarantine.append_column("_raw_line", pa.nulls(count, pa.string()))
    quarantine = quarantine.append_column(contract.REASON, pc.filter(reason, rejected))
    if lines:
        quarantine = pa.concat_tables([quarantine, malformed_table(source.fields, lines)])
    count = quarantine.num_rows
    for name, column in contract.block_columns(count, month, landed_at).items():
        quarantine = quarantine.append_column(name, column)
    quarantine = quarantine.cast(source.quarantine_schema)
    reasons = contract.reason_counts(quarantine[contract.REASON])
    stats = {
        "block_lines": n + len(lines),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "nulled_values": nulled,
        "empty_values": empty,
        "unmatched_splits": unmatched,
        "identical_rows": identical,
    }
    return good, (quarantine if count else None), stats


def malformed_table(fields: list[Field], lines: list) -> pa.Table:
    """Lines with the wrong field count: the leading fields under the field names (best
    effort), the whole line in ``_raw_line``."""
    rows = []
    for expected, actual, text in lines:
        try:
            values = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            values = []
        rows.append((values, text, f"{actual} fields where the header has {expected}"))
    table = {
        field.name: pa.array([(v[i].strip() or None) if i < len(v) else None for v, _, _ in rows], pa.string())
        for i, field in enumerate(fields)
    }
    table["_raw_line"] = pa.array([text for _, text, _ in rows], pa.string())
    table["_reason"] = pa.array([reason for _, _, reason in rows], pa.string())
    return pa.table(table)


def hash_keys(hash_of: list[Field], table: pa.Table) -> tuple[pa.Array, int]:
    """BLAKE2b of the identity fields' canonical text plus an occurrence number (file order)."""
    if table.num_rows == 0:
        return pa.array([], pa.string()), 0
    # One joined text per row, built column-wise (nulls as NUL), then hashed row by row.
    parts = [pc.fill_null(pc.cast(table[field.name], pa.string()), "\x00") for field in hash_of]
    texts = pc.binary_join_element_wise(*parts, "\x1f").to_pylist()
    seen: dict[str, int] = {}
    ids = []
    for text in texts:
        occurrence = seen.get(text, 0)
        seen[text] = occurrence + 1
        ids.append(hashlib.blake2b(f"{text}\x1e{occurrence}".encode(), digest_size=8).hexdigest())
    identical = sum(count - 1 for count in seen.values())
    return pa.array(ids, pa.string()), identical
