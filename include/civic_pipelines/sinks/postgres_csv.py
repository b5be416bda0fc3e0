"""Arrow to PostgreSQL for the sink: the column type each Arrow type becomes, and a record batch
written as the CSV that PostgreSQL's ``COPY ... (FORMAT csv)`` reads back as those types."""

from __future__ import annotations

import json

import pyarrow as pa


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type, spelled as ``format_type()`` spells it."""
    t = arrow_type
    types = pa.types
    if types.is_dictionary(t):
        return pg_type(t.value_type)
    if types.is_boolean(t):
        return "boolean"
    if types.is_int8(t) or types.is_int16(t) or types.is_uint8(t):
        return "smallint"
    if types.is_int32(t) or types.is_uint16(t):
        return "integer"
    if types.is_int64(t) or types.is_uint32(t):
        return "bigint"
    if types.is_uint64(t):
        return "numeric(20,0)"
    if types.is_float16(t) or types.is_float32(t):
        return "real"
    if types.is_float64(t):
        return "double precision"
    if types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if (
        types.is_string(t)
        or types.is_large_string(t)
        or getattr(types, "is_string_view", lambda _: False)(t)
        or types.is_null(t)
    ):
        return "text"
    if (
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_fixed_size_binary(t)
        or getattr(types, "is_binary_view", lambda _: False)(t)
    ):
        return "bytea"
    if types.is_date(t):
        return "date"
    if types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    if types.is_time(t):
        return "time without time zone"
    if types.is_duration(t):
        return "interval"
    if types.is_nested(t):
        return "jsonb"
    raise TypeError(f"no PostgreSQL type for Arrow type {t}")


def _json(value) -> str:
    try:
        import orjson  # about five times json's speed on a block's nested columns
    except ImportError:
        return json.dumps(value, default=str, ensure_ascii=False)
    return orjson.dumps(value, default=str).decode()


_DURATION_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}


def _csv_column(column: pa.Array, t: pa.DataType) -> pa.Array:
    """A column Arrow's CSV writer can write and PostgreSQL's CSV COPY reads as ``pg_type(t)``."""
    types = pa.types
    if types.is_dictionary(t):
        column, t = column.dictionary_decode(), t.value_type
    if types.is_nested(t):
        # Nested values go to jsonb: JSON text (Arrow's CSV writer has no nested types).
        return pa.array([None if v is None else _json(v) for v in column.to_pylist()], pa.string())
    if (
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_fixed_size_binary(t)
        or getattr(types, "is_binary_view", lambda _: False)(t)
    ):
        return pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string())
    if types.is_duration(t):
        values = column.cast(pa.int64()).to_pylist()
        if t.unit == "ns":
            return pa.array([None if v is None else f"{v // 1000} microseconds" for v in values], pa.string())
        return pa.array([None if v is None else f"{v} {_DURATION_UNITS[t.unit]}" for v in values], pa.string())
    if types.is_null(t) or getattr(types, "is_string_view", lambda _: False)(t):
        return column.cast(pa.string())
    if types.is_float16(t):
        return column.cast(pa.float32())
    return column


def csv_bytes(batch: pa.RecordBatch) -> pa.Buffer:
    import pyarrow.csv as pacsv

    columns = [_csv_column(column, f.type) for column, f in zip(batch.columns, batch.schema)]
    sink = pa.BufferOutputStream()
    # Arrow quotes every string (so "" is an empty string) and writes a null as an empty
    # unquoted field, which is exactly PostgreSQL's CSV convention for NULL.
    pacsv.write_csv(
        pa.RecordBatch.from_arrays(columns, names=batch.schema.names), sink, pacsv.WriteOptions(include_header=False)
    )
    return sink.getvalue()
