"""A small SoQL subset for the replay server: ``$where``, ``$order`` and ``$select``.

Owns parsing (to a tiny AST), compiling a ``$where`` to a Python predicate over replay records,
sorting for ``$order``, and finding the bounds a ``$where`` puts on one field (so the server only
generates the months a query can touch). Independent of any dataset: callers pass the field types.

Records are ``(row, system_fields)`` pairs of dicts; a field name starting with ``:`` is read from
the second dict. Field types are Socrata ``dataTypeName`` values: ``text``, ``number``,
``calendar_date`` (floating timestamp) and, for system fields, ``fixed_timestamp``.

Supported ``$where`` grammar (keywords case-insensitive, field names case-sensitive)::

    expr      := or
    or        := and ( OR and )*
    and       := unary ( AND unary )*
    unary     := NOT unary | '(' expr ')' | predicate
    predicate := field op literal | literal op field           op: = == != <> < <= > >=
               | field [NOT] BETWEEN literal AND literal
               | field IS [NOT] NULL
               | field [NOT] IN ( literal, ... )
               | field [NOT] LIKE 'pattern'                    % and _ wildcards
    literal   := 'single quoted' ('' escapes a quote) | number

Comparison follows the column type: numbers numerically, timestamps lexically on their
normalised ISO form (``'2024-01-01'`` means ``2024-01-01T00:00:00.000``), text lexically.
A null (missing) value makes every comparison false, as in SQL.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

from civic_pipelines.replay.clause_parsing import BooleanClauseParser

Record = tuple  # (row: dict, system: dict)


class SoqlError(ValueError):
    """An unparsable or invalid query; the server answers HTTP 400 with the message."""


_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<lp>\()
    | (?P<rp>\))
    | (?P<comma>,)
    | (?P<star>\*)
    | (?P<ident>:?[A-Za-z_@][A-Za-z0-9_]*)
    )""",
    re.X,
)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IS", "NULL", "IN", "LIKE", "TRUE", "FALSE"}
_OPS = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SWAP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "==": "==", "!=": "!=", "<>": "<>"}
_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?Z?$")

SYSTEM_FIELD_TYPES = {":id": "text", ":created_at": "fixed_timestamp", ":updated_at": "fixed_timestamp"}


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text or ""
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            snippet = text[pos:].strip()[:20]
            if snippet.startswith("'"):
                raise SoqlError(f"unterminated string literal at position {pos}")
            raise SoqlError(f"unexpected input at position {pos}: {snippet!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "ident" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        elif kind == "str":
            value = value[1:-1].replace("''", "'")
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def normalize_timestamp(value: str) -> str:
    """``YYYY-MM-DD[THH:MM[:SS[.fff]]]`` -> ``YYYY-MM-DDTHH:MM:SS.fff`` (raises SoqlError)."""
    match = _TS_RE.match(value.strip())
    if not match:
        raise SoqlError(f"could not parse {value!r} as a floating timestamp")
    y, mo, d, hh, mi, ss, frac = match.groups()
    hh, mi, ss = int(hh or 0), int(mi or 0), int(ss or 0)
    ms = int((frac or "0")[:3].ljust(3, "0"))
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and hh < 24 and mi < 60 and ss < 60):
        raise SoqlError(f"timestamp {value!r} is out of range")
    return f"{y}-{mo}-{d}T{hh:02d}:{mi:02d}:{ss:02d}.{ms:03d}"


def to_number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return float(value)


# ---------------------------------------------------------------- $where parser


class _Parser(BooleanClauseParser):
    error = SoqlError
    empty_message = "empty $where"
    trailing_message = "unexpected {token!r} after a complete expression"

    def __init__(self, text: str, fields: dict[str, str]) -> None:
        super().__init__(tokenize(text))
        self.fields = fields

    def expect_kw(self, word: str) -> None:
        kind, value = self.take()
        if kind != "kw" or value != word:
            raise SoqlError(f"expected {word}, found {value!r}")

    def parse_operand(self):
        return self.parse_unary()

    def parse_unary(self):
        kind, value = self.peek()
        if (kind, value) == ("kw", "NOT"):
            self.take()
            return ("not", self.parse_unary())
        if kind == "lp":
            self.take()
            node = self.parse_or()
            if self.take()[0] != "rp":
                raise SoqlError("missing closing parenthesis")
            return node
        return self.parse_predicate()

    def field(self, name: str) -> str:
        if name not in self.fields:
            raise SoqlError(f"no such column: {name}")
        return name

    def literal(self, field: str):
        kind, value = self.take()
        if kind not in ("str", "num"):
            raise SoqlError(f"expected a literal value, found {value!r}")
        return coerce_literal(self.fields[field], kind, value, field)

    def parse_predicate(self):
        kind, value = self.take()
        if kind in ("str", "num"):  # literal op field
            op_kind, op = self.take()
            fkind, fname = self.take()
            if op_kind != "op" or fkind != "ident":
                raise SoqlError("expected <literal> <operator> <column>")
            field = self.field(fname)
            return ("cmp", field, _SWAP[op], coerce_literal(self.fields[field], kind, value, field))
        if kind != "ident":
            raise SoqlError(f"expected a column name, found {value!r}")
        field = self.field(value)
        kind, value = self.take()
        if kind == "op":
            return ("cmp", field, value, self.literal(field))
        negated = False
        if (kind, value) == ("kw", "NOT"):
            negated = True
            kind, value = self.take()
        if (kind, value) == ("kw", "BETWEEN"):
            low = self.literal(field)
            self.expect_kw("AND")
            high = self.literal(field)
            return ("between", field, low, high, negated)
        if (kind, value) == ("kw", "IN"):
            if self.take()[0] != "lp":
                raise SoqlError("expected ( after IN")
            values = [self.literal(field)]
            while self.peek()[0] == "comma":
                self.take()
                values.append(self.literal(field))
            if self.take()[0] != "rp":
                raise SoqlError("missing ) after IN list")
            return ("in", field, values, negated)
        if (kind, value) == ("kw", "LIKE"):
            pkind, pattern = self.take()
            if pkind != "str":
                raise SoqlError("LIKE needs a quoted pattern")
            regex = re.compile(
                "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern), re.S
            )
            return ("like", field, regex, negated)
        if (kind, value) == ("kw", "IS") and not negated:
            if self.peek() == ("kw", "NOT"):
                self.take()
                negated = True
            self.expect_kw("NULL")
            return ("isnull", field, negated)
        raise SoqlError(f"expected an operator after {field}, found {value!r}")


def coerce_literal(field_type: str, kind: str, value: str, field: str):
    if field_type == "number":
        try:
            return to_number(value)
        except ValueError:
            raise SoqlError(f"type mismatch: {field} is a number, {value!r} is not") from None
    if kind == "num":
        raise SoqlError(f"type mismatch: {field} is {field_type}, compared with the number {value}")
    if field_type in ("calendar_date", "fixed_timestamp"):
        return normalize_timestamp(value)
    return value


def parse_where(text: str, fields: dict[str, str]):
    """Parse a ``$where`` into an AST; raises SoqlError on any unknown column or bad syntax."""
    return _Parser(text, fields).parse()


# ---------------------------------------------------------------- compile to a predicate


def _getter(field: str, field_type: str) -> Callable[[Record], object]:
    index = 1 if field.startswith(":") else 0
    if field_type == "number":

        def get(rec, index=index, field=field):
            value = rec[index].get(field)
            if value is None:
                return None
            try:
                return to_number(value)
            except ValueError:
                return None

        return get
    if field_type == "fixed_timestamp":

        def get(rec, index=index, field=field):
            value = rec[index].get(field)
            return None if value is None else value[:23]

        return get
    return lambda rec, index=index, field=field: rec[index].get(field)


def compile_where(node, fields: dict[str, str]) -> Callable[[Record], bool]:
    kind = node[0]
    if kind in ("and", "or"):
        parts = [compile_where(child, fields) for child in node[1]]
        if kind == "and":
            if len(parts) == 2:
                a, b = parts
                return lambda rec: a(rec) and b(rec)
            return lambda rec: all(p(rec) for p in parts)
        if len(parts) == 2:
            a, b = parts
            return lambda rec: a(rec) or b(rec)
        return lambda rec: any(p(rec) for p in parts)
    if kind == "not":
        inner = compile_where(node[1], fields)
        return lambda rec: not inner(rec)
    field = node[1]
    get = _getter(field, fields[field])
    if kind == "cmp":
        op, literal = _OPS[node[2]], node[3]

        def cmp(rec):
            value = get(rec)
            return value is not None and op(value, literal)

        return cmp
    if kind == "between":
        low, high, negated = node[2], node[3], node[4]

        def between(rec):
            value = get(rec)
            return value is not None and ((low <= value <= high) != negated)

        return between
    if kind == "in":
        values, negated = set(node[2]), node[3]

        def is_in(rec):
            value = get(rec)
            return value is not None and ((value in values) != negated)

        return is_in
    if kind == "like":
        regex, negated = node[2], node[3]

        def like(rec):
            value = get(rec)
            return value is not None and (bool(regex.fullmatch(str(value))) != negated)

        return like
    if kind == "isnull":
        negated = node[2]
        return lambda rec: (get(rec) is None) != negated
    raise SoqlError(f"unsupported expression {kind}")  # pragma: no cover


# ---------------------------------------------------------------- bounds on one field


def field_bounds(node, field: str) -> tuple:
    """``(low, low_strict, high, high_strict)`` the expression implies for ``field`` (None = open).

    Conservative: any row matching ``node`` has its ``field`` inside the returned interval."""
    kind = node[0]
    if kind == "and":
        low, low_strict, high, high_strict = None, False, None, False
        for child in node[1]:
            c_low, c_low_strict, c_high, c_high_strict = field_bounds(child, field)
            if c_low is not None and (low is None or c_low > low or (c_low == low and c_low_strict)):
                low, low_strict = c_low, c_low_strict
            if c_high is not None and (high is None or c_high < high or (c_high == high and c_high_strict)):
                high, high_strict = c_high, c_high_strict
        return low, low_strict, high, high_strict
    if kind == "or":
        children = [field_bounds(child, field) for child in node[1]]
        if any(c[0] is None for c in children):
            low, low_strict = None, False
        else:
            low = min(c[0] for c in children)
            low_strict = all(c[1] for c in children if c[0] == low)
        if any(c[2] is None for c in children):
            high, high_strict = None, False
        else:
            high = max(c[2] for c in children)
            high_strict = all(c[3] for c in children if c[2] == high)
        return low, low_strict, high, high_strict
    if kind in ("cmp", "between", "in") and node[1] == field:
        if kind == "cmp":
            op, value = node[2], node[3]
            if op in ("=", "=="):
                return value, False, value, False
            if op == ">":
                return value, True, None, False
            if op == ">=":
                return value, False, None, False
            if op == "<":
                return None, False, value, True
            if op == "<=":
                return None, False, value, False
        elif kind == "between" and not node[4]:
            return node[2], False, node[3], False
        elif kind == "in" and not node[3]:
            return min(node[2]), False, max(node[2]), False
    return None, False, None, False


# ---------------------------------------------------------------- $order and $select

_ORDER_ITEM_RE = re.compile(r"^\s*(:?[A-Za-z_@][A-Za-z0-9_]*)(?:\s+(ASC|DESC))?\s*$", re.I)


def parse_order(text: str, fields: dict[str, str]) -> list[tuple[str, bool]]:
    """``field [ASC|DESC], ...`` -> [(field, descending)]."""
    items = []
    for part in text.split(","):
        match = _ORDER_ITEM_RE.match(part)
        if not match:
            raise SoqlError(f"could not parse $order item {part.strip()!r}")
        field, direction = match.group(1), (match.group(2) or "ASC").upper()
        if field not in fields:
            raise SoqlError(f"no such column: {field}")
        items.append((field, direction == "DESC"))
    return items


def sort_records(records: list, order: list[tuple[str, bool]], fields: dict[str, str]) -> list:
    """Stable multi-key sort; nulls last ascending and first descending (as in PostgreSQL)."""
    out = list(records)
    for field, descending in reversed(order):
        get = _getter(field, fields[field])
        if fields[field] == "number":

            def key(rec, get=get):
                value = get(rec)
                return (True, 0) if value is None else (False, value)
        else:

            def key(rec, get=get):
                value = get(rec)
                return (True, "") if value is None else (False, value)

        out.sort(key=key, reverse=descending)
    return out


_COUNT_RE = re.compile(r"^\s*count\s*\(\s*\*\s*\)\s*(?:AS\s+([A-Za-z_][A-Za-z0-9_]*))?\s*$", re.I)
_SELECT_ITEM_RE = re.compile(r"^\s*(:?\*|:?[A-Za-z_@][A-Za-z0-9_]*)\s*(?:AS\s+([A-Za-z_][A-Za-z0-9_]*))?\s*$", re.I)


def parse_select(text: str, fields: dict[str, str], data_fields: list[str]):
    """-> ``("count", alias)`` or ``("fields", [(source_field, output_name), ...])``.

    ``*`` is every data field, ``:*`` every system field."""
    parts = [part for part in text.split(",")]
    if len(parts) == 1:
        match = _COUNT_RE.match(parts[0])
        if match:
            return ("count", match.group(1) or "count")
    out = []
    for part in parts:
        if _COUNT_RE.match(part):
            raise SoqlError("count(*) can only be selected alone (no $group support in the replay server)")
        match = _SELECT_ITEM_RE.match(part)
        if not match:
            raise SoqlError(f"could not parse $select item {part.strip()!r}")
        name, alias = match.group(1), match.group(2)
        if name == "*":
            out.extend((f, f) for f in data_fields)
        elif name == ":*":
            out.extend((f, f) for f in SYSTEM_FIELD_TYPES)
        elif name in fields:
            out.append((name, alias or name))
        else:
            raise SoqlError(f"no such column: {name}")
    return ("fields", out)
