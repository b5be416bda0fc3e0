"""A CKAN dataset file's column rules and the typing of one column of published text.

Owns: the ``fields``, ``splits`` and ``date_bands`` tables of the ``[adapter]`` table (each checked
as it is read, the error naming the file and the key), the lake types a field may take, and the
column-wise cleaning (trim, null values) and typing (fixed-width timestamps, numbers) every value
goes through. :mod:`civic_pipelines.adapters.ckan` reads the rest of the table and the files.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.adapters import adapter_config_error as _config_error
from civic_pipelines.core import contract

TIMESTAMP_TYPE = pa.timestamp("us")  # naive: the publisher's wall time, as published
ARROW_TYPES = contract.arrow_types(TIMESTAMP_TYPE)
_INT_RE = r"^[+-]?[0-9]{1,18}$"
_FLOAT_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def normalised_name(name: str) -> str:
    """A header or resource name compared loosely: no BOM, runs of spaces collapsed, case folded."""
    return " ".join(str(name).replace("\ufeff", "").split()).casefold()


def fill_year(template: str, year: int) -> str:
    # str.replace, not str.format: the templates are often regexes with {m,n} quantifiers.
    return template.replace("{year}", f"{year:04d}")


# ---------------------------------------------------------------- configuration


class Field:
    """One configured CSV column: header name (and aliases), lake name, type and cleaning rules."""

    KEYS = {"source", "name", "type", "required", "nullable", "aliases", "trim", "null_values", "format", "description"}

    def __init__(self, table: dict, path: Path, date_format: str) -> None:
        unknown = set(table) - self.KEYS
        if unknown:
            raise _config_error(path, f"field {table.get('source')!r}: unknown key(s) {sorted(unknown)}")
        try:
            self.source = str(table["source"])
            self.name = str(table["name"])
        except KeyError as missing:
            raise _config_error(path, f"every field needs source and name; {table} lacks {missing}") from None
        self.type = str(table.get("type", "string"))
        if self.type not in ARROW_TYPES:
            raise _config_error(
                path, f"field {self.source}: type must be one of {sorted(ARROW_TYPES)}, not {self.type!r}"
            )
        self.arrow_type = ARROW_TYPES[self.type]
        self.required = bool(table.get("required", False))
        # required: the column must be in the file's header (gone = drift, the block fails).
        # nullable: an empty value is still a row (it lands as null and is counted); without it an
        # empty value of a required column sends the row to quarantine.
        self.nullable = bool(table.get("nullable", False))
        self.aliases = [str(a) for a in table.get("aliases") or []]
        self.trim = bool(table.get("trim", True))
        self.null_values = [str(v) for v in table.get("null_values", [""])]
        self.format = str(table.get("format") or date_format)
        if self.type == "timestamp":
            self.width = _fixed_width(self.format, path, self.source)


def _fixed_width(fmt: str, path: Path, what: str) -> int:
    samples = (datetime(2001, 5, 3, 4, 5, 6), datetime(2024, 9, 1, 0, 0, 0), datetime(2099, 12, 28, 23, 59, 58))
    widths = {len(day.strftime(fmt)) for day in samples}
    if len(widths) != 1:
        raise _config_error(path, f"{what}: date format {fmt!r} must be fixed-width (no %b, %B, %-d ...)")
    return widths.pop()


class Split:
    """A regex with named groups that splits a cleaned column into lake columns."""

    def __init__(self, table: dict, path: Path, by_source: dict) -> None:
        unknown = set(table) - {"field", "pattern", "types", "description"}
        if unknown:
            raise _config_error(path, f"split: unknown key(s) {sorted(unknown)}")
        source = table.get("field")
        if source not in by_source:
            raise _config_error(path, f"split field {source!r} is not among the fields' sources")
        self.field = by_source[source]
        self.pattern = str(table.get("pattern") or "")
        try:
            groups = list(re.compile(self.pattern).groupindex)
            pc.extract_regex(pa.array([], pa.string()), self.pattern)  # RE2 must accept it too
        except (re.error, pa.ArrowInvalid) as error:
            raise _config_error(path, f"split of {source}: bad pattern {self.pattern!r} ({error})") from None
        if not groups:
            raise _config_error(path, f"split of {source}: the pattern needs named groups (?P<name>...)")
        types = dict(table.get("types") or {})
        if set(types) - set(groups):
            raise _config_error(
                path, f"split of {source}: types for unknown group(s) {sorted(set(types) - set(groups))}"
            )
        self.outputs = []
        for group in groups:
            kind = str(types.get(group, "string"))
            if kind not in ("string", "int32", "int64", "float64"):
                raise _config_error(
                    path, f"split of {source}: group {group} type must be string, int32, int64 or float64"
                )
            self.outputs.append((group, kind))


class DateBands:
    """A lake column whose value depends on a timestamp field: the first band whose ``before``
    is later than the value, else the open-ended last band."""

    def __init__(self, table: dict, path: Path, by_source: dict) -> None:
        unknown = set(table) - {"name", "field", "bands", "description"}
        if unknown:
            raise _config_error(path, f"date_bands: unknown key(s) {sorted(unknown)}")
        self.name = str(table.get("name") or "")
        source = table.get("field")
        if not self.name or source not in by_source or by_source[source].type != "timestamp":
            raise _config_error(path, "date_bands need a name and a field of type timestamp")
        self.field = by_source[source]
        bands = list(table.get("bands") or [])
        if not bands or "before" in bands[-1] or any("before" not in band for band in bands[:-1]):
            raise _config_error(path, f"date_bands {self.name}: every band but the last needs before; the last none")
        self.bounds, self.values = [], []
        for band in bands:
            if "value" not in band:
                raise _config_error(path, f"date_bands {self.name}: every band needs a value")
            self.values.append(str(band["value"]))
            if "before" in band:
                try:
                    self.bounds.append(datetime.fromisoformat(str(band["before"])))
                except ValueError:
                    raise _config_error(path, f"date_bands {self.name}: before {band['before']!r} is not ISO") from None
        if self.bounds != sorted(self.bounds):
            raise _config_error(path, f"date_bands {self.name}: before bounds must increase")

    def column(self, values: pa.ChunkedArray | pa.Array) -> pa.Array:
        result = pa.scalar(self.values[-1])
        for bound, value in reversed(list(zip(self.bounds, self.values))):
            result = pc.if_else(pc.less(values, pa.scalar(bound, TIMESTAMP_TYPE)), pa.scalar(value), result)
        return pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), result)


# ---------------------------------------------------------------- values


def clean_strings(values, field: Field):
    """Trimmed (when configured) with the field's null values as nulls."""
    if field.trim:
        values = pc.utf8_trim_whitespace(values)
    if field.null_values:
        values = pc.if_else(
            pc.is_in(values, pa.array(field.null_values, pa.string())), pa.scalar(None, pa.string()), values
        )
    return values


def parse_timestamps(values, fmt: str, width: int, fraction_digits: int):
    """Fixed-width strings to naive timestamp[us]; anything else (impossible dates included) is null."""
    return contract.text_to_timestamps(values, fmt, width, unit="us", fraction_digits=fraction_digits)


def typed(values, kind: str, field: Field | None = None):
    """Cleaned strings to the kind; returns (typed column, mask of present values that did not parse)."""
    if kind == "string":
        return values, pc.and_(pc.is_valid(values), pc.is_null(values))  # nothing fails to be a string
    if kind == "timestamp":
        parsed = parse_timestamps(values, field.format, field.width, 9)
    else:
        return contract.text_to_numbers(values, kind, _FLOAT_RE if kind == "float64" else _INT_RE)
    bad = pc.and_(pc.is_valid(values), pc.is_null(parsed))
    return parsed, bad
