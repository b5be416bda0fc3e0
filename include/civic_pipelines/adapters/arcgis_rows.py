"""ArcGIS features to the lake's rows: the configured attributes, the typing of JSON attribute
values, one page's validation with quarantine, and one row per key (the layer, paging and the block
are :mod:`civic_pipelines.adapters.arcgis`).

**Rows.** Attributes become typed columns (``string``, ``int64``, ``int32``, ``float64``,
``timestamp``: epoch ms to ``timestamp[ms, tz=UTC]``); the point geometry's x/y become the
configured columns (lon/lat with ``out_sr = 4326``). A row goes to quarantine, with the first
broken rule as ``_reason``, when the key or another required field is missing or unparseable, or
its date falls outside the block. An optional value of the wrong type lands as null and is counted
(``nulled_values``). Duplicate keys within a block collapse to the row with the latest
``latest_field`` (then the last seen); ``count_duplicates`` fields only have their repeats counted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.adapters import adapter_config_error as _config_error
from civic_pipelines.core import contract
from civic_pipelines.core.contract import INT32_RANGE, INT64_RANGE
from civic_pipelines.months import month_bounds

if TYPE_CHECKING:
    from civic_pipelines.adapters.arcgis import ArcGisFeatureLayerSource

ARROW_TYPES = contract.arrow_types(pa.timestamp("ms", tz="UTC"))  # esriFieldTypeDate: epoch milliseconds
# The Esri field types each configured type reads without loss; another is reported as a type change.
COMPATIBLE_ESRI_TYPES = {
    "string": {"esriFieldTypeString", "esriFieldTypeGUID", "esriFieldTypeGlobalID"},
    "int64": {
        "esriFieldTypeOID",
        "esriFieldTypeInteger",
        "esriFieldTypeSmallInteger",
        "esriFieldTypeBigInteger",
        "esriFieldTypeDouble",
    },  # hosted layers often keep big integers (ids) as doubles
    "int32": {"esriFieldTypeOID", "esriFieldTypeInteger", "esriFieldTypeSmallInteger"},
    "float64": {
        "esriFieldTypeDouble",
        "esriFieldTypeSingle",
        "esriFieldTypeInteger",
        "esriFieldTypeSmallInteger",
        "esriFieldTypeBigInteger",
    },
    "timestamp": {"esriFieldTypeDate"},
}
_BAD = object()  # a present value that does not parse as the field's type


class Field:
    """One configured attribute: wire name, canonical (lake) name, type, required."""

    def __init__(self, table: dict, path: Path) -> None:
        unknown = set(table) - {"source", "name", "type", "required", "description"}
        if unknown:
            raise _config_error(path, f"field {table.get('source')!r}: unknown key(s) {sorted(unknown)}")
        try:
            self.source = str(table["source"])
            self.name = str(table["name"])
            self.type = str(table["type"])
        except KeyError as missing:
            raise _config_error(path, f"every field needs source, name and type; {table} lacks {missing}") from None
        if self.type not in ARROW_TYPES:
            raise _config_error(
                path, f"field {self.source}: type must be one of {sorted(ARROW_TYPES)}, not {self.type!r}"
            )
        self.required = bool(table.get("required", False))
        self.arrow_type = ARROW_TYPES[self.type]


def features_table(
    source: ArcGisFeatureLayerSource,
    features: list,
    wire: dict,
    month: str,
    landed_at: datetime,
    layer_year: int | None = None,
) -> tuple[pa.Table, pa.Table, dict]:
    """One page of features (of ``layer_year``'s layer) to (typed good rows, quarantined rows, counts)."""
    n = len(features)
    attributes = [(f.get("attributes") if isinstance(f, dict) else None) or {} for f in features]
    raw, columns, bad = {}, {}, {}
    for field in source.fields:
        name = wire.get(field.source, field.source)
        values = list(map(dict.get, attributes, repeat(name)))
        raw[field.name] = values
        columns[field.name], bad[field.name] = typed_column(values, field.type)
    if source.geometry:
        geometries = [(f.get("geometry") if isinstance(f, dict) else None) or {} for f in features]
        for axis, name in zip(("x", "y"), source.geometry):
            values = [g.get(axis) if isinstance(g, dict) else None for g in geometries]
            raw[name] = values
            columns[name], bad[name] = typed_column(values, "float64")

    # Quarantine: the first broken rule names the reason (built back to front).
    rules = []
    for field in source.required:
        rules.append(
            (pc.and_(pc.is_null(columns[field.name]), pc.invert(bad[field.name])), contract.missing(field.name))
        )
        rules.append((bad[field.name], contract.unparseable(field.name)))
    start, end = (datetime.fromisoformat(bound).replace(tzinfo=UTC) for bound in month_bounds(month))
    date = columns[source.date_field.name]
    outside = pc.or_(pc.less(date, pa.scalar(start, date.type)), pc.greater_equal(date, pa.scalar(end, date.type)))
    rules.append((pc.fill_null(outside, False), contract.outside_block(source.date_field.name, month)))
    reason = contract.first_broken_rule(rules, n)
    rejected = pc.is_valid(reason)
    kept = pc.invert(rejected)

    nulled = {}
    required = {f.name for f in source.required}
    for name, mask in bad.items():
        if name in required:
            continue
        count = contract.count_true(pc.and_(mask, kept))
        if count:
            nulled[name] = count

    if source.layer_column:
        columns[source.layer_column] = pa.array([layer_year] * n, pa.int32())
    columns.update(contract.block_columns(n, month, landed_at))
    good = pa.table(columns, schema=source.data_schema).filter(kept)

    indices = [i for i, flag in enumerate(rejected.to_pylist()) if flag]
    quarantine = None
    if indices:
        quarantine = pa.table(
            {name: pa.array([_raw_text(values[i]) for i in indices], pa.string()) for name, values in raw.items()}
            | ({source.layer_column: pa.array([layer_year] * len(indices), pa.int32())} if source.layer_column else {})
            | {contract.REASON: pc.filter(reason, rejected)}
            | contract.block_columns(len(indices), month, landed_at),
            schema=source.quarantine_schema,
        )
    return good, quarantine, {"nulled_values": nulled}


def one_row_per_key(table: pa.Table, key: str, latest_field: Field | None) -> tuple[pa.Table, int]:
    """One row per key (the latest ``latest_field``, then the last seen), in key order."""
    if table.num_rows == 0:
        return table, 0
    keys = table[key]
    # Strictly increasing keys are unique: checked first, as it is cheap, while a distinct
    # count of a large block costs a hash table of about 200 bytes a row.
    if keys.null_count == 0 and (table.num_rows < 2 or pc.all(pc.greater(keys[1:], keys[:-1])).as_py()):
        return table, 0  # already one row per key, in key order (pages come in object id order)
    unique = pc.count_distinct(keys).as_py() == table.num_rows
    ordered = table.append_column("_seen", pa.array(range(table.num_rows), pa.int64()))
    sort_keys = [(key, "ascending", "at_end")]
    if latest_field is not None:
        sort_keys.append((latest_field.name, "descending", "at_end"))  # a null update time loses
    sort_keys.append(("_seen", "descending", "at_end"))
    ordered = ordered.sort_by(sort_keys).drop_columns(["_seen"])
    if unique:
        return ordered, 0
    ids = ordered[key].combine_chunks()
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(ids[1:], ids[:-1])])
    deduped = ordered.filter(first)
    return deduped, table.num_rows - deduped.num_rows


_CLEAN_TYPES = {"string": {str, type(None)}, "float64": {int, float, type(None)}}
_INTEGER_TYPES = {int, type(None)}  # int64, int32, timestamp (epoch ms)


def typed_column(values: list, kind: str) -> tuple[pa.Array, pa.Array]:
    """JSON values to an Arrow column of the kind, and the mask of present values that did not fit.

    The common case (every value already of the JSON type) is one Arrow conversion; a column with
    any odd value is converted value by value. Integers are checked in Python because Arrow would
    silently truncate 1.5 to 1."""
    arrow_type = ARROW_TYPES[kind]
    # The exact JSON types present (bool is not int here), found by one pass in C.
    clean = set(map(type, values)) <= _CLEAN_TYPES.get(kind, _INTEGER_TYPES)
    if clean:
        try:
            fits = pa.repeat(False, len(values))
            if kind == "timestamp":
                return pa.array(values, pa.int64()).cast(arrow_type), fits
            column = pa.array(values, arrow_type)
            if kind != "float64" or not pc.any(pc.invert(pc.is_finite(column))).as_py():
                return column, fits
            # a NaN or an infinity: not a value here (value by value below)
        except (pa.ArrowInvalid, OverflowError):
            pass  # out of range (int32, int64): value by value below
    parsed = [_coerce(v, kind) for v in values]
    bad = pa.array([v is _BAD for v in parsed], pa.bool_())
    parsed = [None if v is _BAD else v for v in parsed]
    if kind == "timestamp":
        return pa.array(parsed, pa.int64()).cast(arrow_type), bad
    return pa.array(parsed, arrow_type), bad


def _coerce(value, kind: str):
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            return str(value)
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return _BAD
    if kind == "float64":
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return _BAD
        else:
            return _BAD
        return number if math.isfinite(number) else _BAD
    # integers: exact ints, integral floats, integer strings
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        return _BAD
    low, high = INT32_RANGE if kind == "int32" else INT64_RANGE
    return number if low <= number <= high else _BAD


def _raw_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
