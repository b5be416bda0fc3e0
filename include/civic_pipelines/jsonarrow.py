"""JSON arrays of flat objects (SODA's wire format) to Arrow columns without Python row objects.

The fast path rewrites ``[{..},{..}]`` (compact, or Socrata's ``}\n,{``) into newline-delimited
JSON and hands it to Arrow's C++ JSON reader, which parses column-wise and releases the GIL (so
the next page can download meanwhile). Should ``},{`` ever occur inside a string value, the split
leaves an unterminated string on a line; Arrow then refuses the page, or returns a different row
count, and the page is parsed again by the exact path (orjson, then Arrow's struct conversion).
Either way every requested field comes back as a string column, absent keys as nulls.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.json as pajson


class JsonPage:
    """One response body: its row count known before parsing, so the next page can be fetched early.

    Only the rewritten text is kept (``size`` is the body's length): the body itself, a second
    copy of the page, is rebuilt from it in the rare case the exact path needs it (``body``)."""

    def __init__(self, body: bytes):
        self.size = len(body)
        start, end = body.find(b"["), body.rfind(b"]")
        if start < 0 or end < start or body[:start].strip() or body[end + 1 :].strip():
            raise ValueError(f"expected a JSON array, got {body[:80]!r}")
        # bytes.replace runs at memory speed (a regex over a 25 MB page costs more than parsing it);
        # the brackets are cut off afterwards as a zero-copy Arrow buffer slice.
        text = body.replace(b"},{", b"}\n{")
        if text.find(b"}\n,{", 0, 1 << 16) >= 0:  # Socrata's style shows within the first rows
            text = text.replace(b"}\n,{", b"}\n{")
        del body
        self._text = text
        start, end = text.find(b"["), text.rfind(b"]")
        self.ndjson = pa.py_buffer(text)[start + 1 : end]
        # A hint (exact for compact and Socrata-style arrays) that lets the next page be requested
        # before this one is parsed; `parsed_rows` is the truth once to_table() has run.
        self.rows = 0 if not text[start + 1 : min(end, start + 64)].strip() else text.count(b"\n", start, end) + 1
        self.parsed_rows: int | None = None

    @property
    def body(self) -> bytes:
        """The page as a JSON array again: equal in content to the body received (a raw newline
        cannot occur inside a JSON string, so every "}\\n{" here was written by ``__init__``)."""
        return self._text.replace(b"}\n{", b"},{")

    def first_keys(self) -> set[str]:
        if not self.rows:
            return set()
        first_line = self.ndjson[:65536].to_pybytes().split(b"\n", 1)[0]
        try:
            return set(orjson.loads(first_line))
        except orjson.JSONDecodeError:
            return set(orjson.loads(self.body)[0])

    def to_table(self, fields: list[str]) -> pa.Table:
        schema = pa.schema([(name, pa.string()) for name in fields])
        table = None
        if not self.rows:
            table = schema.empty_table()
        else:
            try:
                parsed = pajson.read_json(
                    pa.BufferReader(self.ndjson),
                    parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
                )
                if parsed.num_rows == self.rows:
                    table = parsed.select(fields)
            except pa.ArrowInvalid:
                pass
        if table is None:
            table = exact_table(orjson.loads(self.body), fields)
        self.parsed_rows = table.num_rows
        return table


def exact_table(rows: list[dict], fields: list[str]) -> pa.Table:
    struct = pa.array(rows, type=pa.struct([(name, pa.string()) for name in fields]))
    return pa.Table.from_arrays(struct.flatten(), names=fields)
