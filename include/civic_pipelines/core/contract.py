"""The lake contract every source lands by, generic adapters and hand-written sources alike.

* **Columns.** A block's ``data`` table ends with ``_block_month`` (YYYY-MM) and ``_landed_at``
  (UTC, microseconds); its quarantine keeps the offending values as published text, then
  ``_reason`` and the same two block columns (:func:`data_schema`, :func:`quarantine_schema`,
  :func:`block_columns`).
* **Arrow types.** A dataset file names a field's kind (``string``, ``int64``, ``int32``,
  ``float64``, ``timestamp``); :func:`arrow_types` maps it, with the timestamp type the publisher's
  (naive wall time or UTC instants).
* **Coercion.** Published text to numbers (:func:`text_to_numbers`) and timestamps
  (:func:`text_to_timestamps`): a value that does not parse is null, and its mask says so; nothing
  is silently rounded, truncated or rolled over (30 February is not 1 March).
* **Quarantine reasons.** A row goes to quarantine with the first rule it breaks
  (:func:`first_broken_rule`), worded by :func:`missing`, :func:`unparseable` and
  :func:`outside_block`; a block's manifest counts them (:func:`reason_counts`).
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

LANDED_TYPE = pa.timestamp("us", tz="UTC")
BLOCK_MONTH = "_block_month"
LANDED_AT = "_landed_at"
REASON = "_reason"
BLOCK_FIELDS = ((BLOCK_MONTH, pa.string()), (LANDED_AT, LANDED_TYPE))
KINDS = ("string", "int64", "int32", "float64", "timestamp")
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)


# ---------------------------------------------------------------- columns and types


def arrow_types(timestamp: pa.DataType) -> dict[str, pa.DataType]:
    """The lake type of each field kind; ``timestamp`` is the publisher's own time type."""
    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "timestamp": timestamp,
    }


def data_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """A block's data columns, then the block columns."""
    return pa.schema(list(columns) + list(BLOCK_FIELDS))


def quarantine_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """A block's quarantine: the offending row's columns (as published), ``_reason``, the block columns."""
    return pa.schema(list(columns) + [(REASON, pa.string())] + list(BLOCK_FIELDS))


def block_columns(rows: int, month: str, landed_at: datetime) -> dict[str, pa.Array]:
    """``_block_month`` and ``_landed_at``, the same value on each of ``rows`` rows."""
    landed = pa.scalar(landed_at, LANDED_TYPE).as_py()
    return {BLOCK_MONTH: pa.array([month] * rows, pa.string()), LANDED_AT: pa.array([landed] * rows, LANDED_TYPE)}


# ---------------------------------------------------------------- coercion


def text_to_numbers(values, kind: str, pattern: str):
    """Published text to ``kind`` (``int64``, ``int32`` or ``float64``).

    Only text matching ``pattern`` (the publisher's number syntax, a regex) is converted, after
    trimming; an ``int32`` out of range is null. Returns ``(typed, bad)``, ``bad`` the mask of
    present values that did not convert."""
    ok = pc.fill_null(pc.match_substring_regex(values, pattern), False)
    cleaned = pc.utf8_trim_whitespace(pc.if_else(ok, values, pa.scalar(None, pa.string())))
    parsed = pc.cast(cleaned, pa.float64() if kind == "float64" else pa.int64())
    if kind == "int32":
        low, high = INT32_RANGE
        fits = pc.fill_null(pc.and_(pc.greater_equal(parsed, low), pc.less_equal(parsed, high)), False)
        parsed = pc.cast(pc.if_else(fits, parsed, pa.scalar(None, pa.int64())), pa.int32())
    return parsed, pc.and_(pc.is_valid(values), pc.is_null(parsed))


def text_to_timestamps(
    values, fmt: str, width: int, *, unit: str = "us", fraction_digits: int = 9, keep_fraction: bool = True
):
    """Fixed-width text in ``fmt`` (``width`` characters), optionally followed by ``.`` and up to
    ``fraction_digits`` digits, to naive ``timestamp[unit]``; anything else (an impossible date
    included) is null. ``keep_fraction`` adds the fraction (microseconds only)."""
    if keep_fraction and fraction_digits and unit != "us":
        raise ValueError("keep_fraction needs unit='us'")
    head = pc.utf8_slice_codeunits(values, 0, width)
    parsed = pc.strptime(head, format=fmt, unit=unit, error_is_null=True)
    # strptime rolls impossible dates over (30 February -> 1 March): only a round trip proves a date real.
    round_trip = pc.equal(pc.strftime(pc.cast(parsed, pa.timestamp("s")), format=fmt), head)
    tail = pc.utf8_slice_codeunits(values, width, width + 64)
    tail_re = rf"^(\.[0-9]{{1,{fraction_digits}}})?$" if fraction_digits else r"^$"
    valid = pc.fill_null(pc.and_(round_trip, pc.match_substring_regex(tail, tail_re)), False)
    if keep_fraction and fraction_digits:
        digits = pc.utf8_rpad(pc.utf8_slice_codeunits(values, width + 1, width + 7), width=6, padding="0")
        digits = pc.if_else(valid, digits, "000000")
        parsed = pc.add(parsed, pc.cast(pc.cast(digits, pa.int64()), pa.duration("us")))
    return pc.if_else(valid, parsed, pa.scalar(None, pa.timestamp(unit)))


# ---------------------------------------------------------------- quarantine reasons


def missing(name: str) -> str:
    return f"missing {name}"


def unparseable(name: str) -> str:
    return f"unparseable {name}"


def outside_block(name: str, month: str) -> str:
    return f"{name} outside block {month}"


def first_broken_rule(rules: list[tuple[object, str]], rows: int) -> pa.Array:
    """Each row's reason: the text of the first rule (a mask, null meaning unbroken) it breaks, or null."""
    reason = pa.nulls(rows, pa.string())
    for mask, text in reversed(rules):  # built back to front, so the first broken rule wins
        reason = pc.if_else(pc.fill_null(mask, False), pa.scalar(text), reason)
    return reason


def reason_counts(reasons, into: dict[str, int] | None = None) -> dict[str, int]:
    """How many rows each reason sent to quarantine (added to ``into`` when given)."""
    counts = {} if into is None else into
    if len(reasons):
        for item in pc.value_counts(reasons).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    return counts


def count_true(mask) -> int:
    return pc.sum(mask).as_py() or 0
