"""ArcGIS REST feature-service endpoints for the replay server (Minneapolis 311 today).

A *layer family* is one dataset served as one hosted layer per year, under the real path after
the host, so a client only swaps the base URL::

    /afSMGVsC7QlRK1kZ/arcgis/rest/services/Public_311_{year}/FeatureServer/0

(``/ArcGIS/`` is accepted as well). For each year of the dataset it serves

    GET  <service>?f=json|pjson             service description (``layers``, ``maxRecordCount``)
    GET  <layer>?f=json|pjson               layer metadata: ``maxRecordCount``, ``editingInfo``
                                            (``lastEditDate``, ``schemaLastEditDate``,
                                            ``dataLastEditDate``), ``fields``, ``objectIdField`` ...
    GET|POST <layer>/query                  ``where``, ``outFields``, ``orderByFields``,
                                            ``resultOffset``, ``resultRecordCount``,
                                            ``returnCountOnly``, ``returnIdsOnly``, ``objectIds``,
                                            ``returnGeometry``, ``outSR`` (4326 or 102100/3857), ``f``

Errors use ArcGIS's envelope on HTTP 200: ``{"error": {"code": 400, "message": ..., "details":
[...]}}`` (a bad ``where``, an unknown field, a bad parameter, an unknown service/layer). The reason
the replay rejected a request is also in the ``X-Replay-Error`` header (the body stays ArcGIS's).

Faults. The core's ``Faults`` has a fixed list, so the query endpoint applies the generic ones
itself, and only to ``/query`` requests (layer metadata is never faulted): ``status_429``
(``Retry-After``, ArcGIS's error envelope), ``status_503``, ``status_500``, ``status_502`` (a
proxy's HTML page), ``status_401`` (as ArcGIS answers a bad or expired token: HTTP 200 with the
envelope code 498 ``Invalid token.``), ``delay``, ``reset_mid_page``, ``malformed_row`` (a
feature without OBJECTID and one whose OPENEDDATETIME is ``"not-a-date"``), ``duplicate_row``
(the page's first feature again with a LastUpdateDate one hour later), and on feature pages:
``empty_month`` (no features, no ``exceededTransferLimit``), ``page_overlap`` (offset paging
while features are inserted ahead of the cursor: the page at a non-zero ``resultOffset`` and every
later page of the same query start :data:`OVERLAP_ROWS` features early, until the query starts
again at offset 0), ``drop_field`` (the attribute ``field``, default the layer's date field, gone
from the features and the answer's ``fields``), ``new_field`` (an editor-tracking ``EditDate``
date attribute, as when a publisher turns editor tracking on) and ``retype_field`` (the attribute
``field``, default the first numeric attribute that is not the object id, sent as a JSON string
and declared ``esriFieldTypeString``). ``status_202`` does not apply to ArcGIS. The
ArcGIS-specific ``arcgis_error`` (the next n queries answer the error envelope on HTTP 200) is set
with ``POST /_replay/config {"arcgis": {"arcgis_error": n}}`` and cleared by ``/_replay/reset``.

Configuration per family (``POST /_replay/config {"minneapolis_311": {...}}``): ``late_edits``
(``{"month": "2024-02", "n": 5}`` or a list), ``rows_per_month``, ``max_record_count``,
``accept_epoch_dates``, ``first_year``, ``last_year``, ``layer_time_zone`` (the publisher's rule
for filing a request in a year's layer: ``UTC``, the default, by its UTC year; an IANA zone such as
``America/Chicago`` by its local year, so a UTC month at a year edge spans two layers).

``where`` subset (field names case-insensitive): comparisons ``= <> != < <= > >=``, ``AND``,
``OR``, ``NOT``, parentheses, ``IS [NOT] NULL``, ``[NOT] BETWEEN .. AND ..``, ``[NOT] IN (..)``,
``[NOT] LIKE '..'``; literals: numbers, ``'strings'``, ``DATE 'YYYY-MM-DD[ HH:MM:SS]'``,
``TIMESTAMP 'YYYY-MM-DD HH:MM:SS[.fff]'`` (UTC), ``CURRENT_TIMESTAMP``, ``CURRENT_DATE``,
``INTERVAL 'n' DAY|HOUR|MINUTE|SECOND``, ``+``/``-`` arithmetic, ``NULL``. Comparing a date field
with a bare number (epoch ms) is rejected unless the family's ``accept_epoch_dates`` is on.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import operator
import re
import threading
import time
from collections import OrderedDict
from urllib.parse import parse_qsl

import orjson

from civic_pipelines.replay.server import Request, Response, fault_response, json_response

OVERLAP_ROWS = 3  # features an overlapped page repeats from the previous one
NEW_FIELD = ("EditDate", "esriFieldTypeDate")  # what editor tracking adds to a hosted layer
DEFAULT_MAX_RECORD_COUNT = 2000  # not ArcGIS Online's 1000 or 16000 default: clients must read it
MINNEAPOLIS_PATH = "/afSMGVsC7QlRK1kZ/arcgis/rest/services/Public_311_{year}/FeatureServer/0"
CURRENT_VERSION = 11.5
_WEB_MERCATOR = {"wkid": 102100, "latestWkid": 3857}
_WGS84 = {"wkid": 4326, "latestWkid": 4326}

INVALID_QUERY = "Cannot perform query. Invalid query parameters."
CHECK_PARAMETERS = "Unable to perform query. Please check your parameters."
ARCGIS_FAULT_MESSAGES = {
    400: "Unable to complete operation.",
    500: "Error performing query operation",
    503: "Service Unavailable",
    504: "Your request has timed out.",
}
_KIND = {"esriFieldTypeOID": "num", "esriFieldTypeInteger": "num", "esriFieldTypeSmallInteger": "num",
         "esriFieldTypeDouble": "num", "esriFieldTypeSingle": "num", "esriFieldTypeBigInteger": "num",
         "esriFieldTypeString": "str", "esriFieldTypeDate": "date"}
_UNSUPPORTED = ("geometry", "outstatistics", "groupbyfieldsforstatistics", "having", "time",
                "quantizationparameters", "returndistinctvalues", "returnextentonly")


class ArcGisError(Exception):
    """An ArcGIS error envelope: ``code``, ``message``, ``details``; ``reason`` goes to a header."""

    def __init__(self, message: str = INVALID_QUERY, details: list[str] | None = None, code: int = 400,
                 reason: str = "") -> None:
        super().__init__(reason or message)
        self.code = code
        self.message = message
        self.details = [CHECK_PARAMETERS] if details is None else details
        self.reason = reason or message


class WhereError(ArcGisError):
    """A ``where`` clause the service cannot run."""

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_QUERY, [CHECK_PARAMETERS], 400, f"where: {reason}")


def error_envelope(code: int, message: str, details: list[str] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": list(details or [])}}


# ---------------------------------------------------------------- the where clause

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
      | (?P<str>'(?:[^']|'')*')
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,|\+|-|\*|/)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*|"[^"]+")
    )""",
    re.X,
)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "BETWEEN", "IN", "LIKE", "ESCAPE", "DATE", "TIMESTAMP",
             "INTERVAL", "CURRENT_TIMESTAMP", "CURRENT_DATE"}
_INTERVAL_MS = {"DAY": 86_400_000, "HOUR": 3_600_000, "MINUTE": 60_000, "SECOND": 1000}
_CMP = {"=": operator.eq, "<>": operator.ne, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_FLIP = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?$")


def parse_date_literal(text: str) -> int:
    """``YYYY-MM-DD[ HH:MM[:SS[.fff]]]`` (UTC) to epoch ms."""
    match = _DATE_RE.match(text.strip())
    if not match:
        raise WhereError(f"bad date literal {text!r}")
    y, mo, d, hh, mi, ss, frac = match.groups()
    try:
        _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise WhereError(f"bad date literal {text!r}") from None
    ms = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))) * 1000
    if frac:
        ms += int((frac + "000")[:3])
    return ms


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise WhereError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "ident" and not value.startswith('"'):
            upper = value.upper()
            if upper in _KEYWORDS:
                kind, value = "kw", upper
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens into a small AST.

    Booleans: ``("and", [..])``, ``("or", [..])``, ``("not", x)``, ``("cmp", op, a, b)``,
    ``("isnull", a, negated)``, ``("between", a, lo, hi, negated)``, ``("in", a, [..], negated)``,
    ``("like", a, pattern, negated)``. Operands: ``("field", name)``, ``("const", kind, value)``,
    ``("now",)``, ``("today",)``, ``("neg", a)``, ``("arith", op, a, b)``."""

    def __init__(self, text: str, field_names: dict[str, str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.field_names = field_names  # lower-case -> canonical

    def peek(self, offset: int = 0):
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, kind: str, value: str | None = None) -> bool:
        k, v = self.peek()
        if k == kind and (value is None or v == value):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        k, v = self.take()
        if k != kind or (value is not None and v != value):
            raise WhereError(f"expected {value or kind}, found {v!r}")
        return v

    def parse(self):
        if not self.tokens:
            raise WhereError("empty where clause")
        node = self.parse_or()
        if self.pos != len(self.tokens):
            raise WhereError(f"unexpected {self.peek()[1]!r}")
        return node

    def parse_or(self):
        nodes = [self.parse_and()]
        while self.accept("kw", "OR"):
            nodes.append(self.parse_and())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def parse_and(self):
        nodes = [self.parse_not()]
        while self.accept("kw", "AND"):
            nodes.append(self.parse_not())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def parse_not(self):
        if self.accept("kw", "NOT"):
            return ("not", self.parse_not())
        return self.parse_predicate()

    def parse_predicate(self):
        if self.peek() == ("op", "("):
            self.take()
            node = self.parse_or()
            self.expect("op", ")")
            return node
        left = self.parse_additive()
        kind, value = self.peek()
        if kind == "op" and value in _CMP:
            self.take()
            return ("cmp", value, left, self.parse_additive())
        if self.accept("kw", "IS"):
            negated = self.accept("kw", "NOT")
            self.expect("kw", "NULL")
            return ("isnull", left, negated)
        negated = self.accept("kw", "NOT")
        if self.accept("kw", "BETWEEN"):
            low = self.parse_additive()
            self.expect("kw", "AND")
            return ("between", left, low, self.parse_additive(), negated)
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            values = [self.parse_additive()]
            while self.accept("op", ","):
                values.append(self.parse_additive())
            self.expect("op", ")")
            return ("in", left, values, negated)
        if self.accept("kw", "LIKE"):
            pattern = self.parse_additive()
            if self.accept("kw", "ESCAPE"):
                raise WhereError("LIKE ... ESCAPE is not supported by the replay")
            return ("like", left, pattern, negated)
        raise WhereError(f"expected a comparison after an operand, found {value!r}")

    def parse_additive(self):
        node = self.parse_multiplicative()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            node = ("arith", op, node, self.parse_multiplicative())
        return node

    def parse_multiplicative(self):
        node = self.parse_primary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            node = ("arith", op, node, self.parse_primary())
        return node

    def parse_primary(self):
        kind, value = self.take()
        if kind == "num":
            number = float(value)
            return ("const", "num", int(number) if number.is_integer() and "e" not in value.lower() else number)
        if kind == "str":
            return ("const", "str", value[1:-1].replace("''", "'"))
        if kind == "op" and value == "-":
            return ("neg", self.parse_primary())
        if kind == "op" and value == "(":
            raise WhereError("parenthesised operands are not supported by the replay")
        if kind == "kw":
            if value in ("DATE", "TIMESTAMP"):
                literal = self.expect("str")[1:-1].replace("''", "'")
                return ("const", "date", parse_date_literal(literal))
            if value == "CURRENT_TIMESTAMP":
                return ("now",)
            if value == "CURRENT_DATE":
                return ("today",)
            if value == "NULL":
                return ("const", "null", None)
            if value == "INTERVAL":
                amount = self.expect("str")[1:-1].strip()
                unit_kind, unit = self.take()
                unit = (unit or "").upper()
                if unit_kind != "ident" or unit not in _INTERVAL_MS:
                    raise WhereError(f"INTERVAL unit must be DAY, HOUR, MINUTE or SECOND, not {unit!r}")
                try:
                    return ("const", "interval", int(float(amount) * _INTERVAL_MS[unit]))
                except ValueError:
                    raise WhereError(f"bad INTERVAL amount {amount!r}") from None
            raise WhereError(f"unexpected keyword {value}")
        if kind == "ident":
            name = value.strip('"')
            if self.peek() == ("op", "("):
                raise WhereError(f"function {name}() is not supported by the replay")
            canonical = self.field_names.get(name.lower())
            if canonical is None:
                raise WhereError(f"unknown field {name!r}")
            return ("field", canonical)
        raise WhereError(f"unexpected {value!r}" if value is not None else "unexpected end of where clause")


class _Compiler:
    """Type-checks the AST against the layer's fields and turns it into a predicate over an
    attribute dict returning True, False or None (SQL unknown)."""

    def __init__(self, kinds: dict[str, str], accept_epoch_dates: bool) -> None:
        self.kinds = kinds  # field -> num|str|date
        self.accept_epoch_dates = accept_epoch_dates
        self.now_ms = int(time.time() * 1000)

    # operands: (kind, fn(attrs) -> value, is_const, const_value)
    def operand(self, node):
        tag = node[0]
        if tag == "field":
            name = node[1]
            return self.kinds[name], (lambda a, n=name: a.get(n)), False, None
        if tag == "const":
            value = node[2]
            return node[1], (lambda a, v=value: v), True, value
        if tag == "now":
            return "date", (lambda a, v=self.now_ms: v), True, self.now_ms
        if tag == "today":
            today = self.now_ms - self.now_ms % 86_400_000
            return "date", (lambda a, v=today: v), True, today
        if tag == "neg":
            kind, fn, const, value = self.operand(node[1])
            if kind not in ("num", "interval"):
                raise WhereError("unary minus needs a number")
            if const:
                return kind, (lambda a, v=-value: v), True, -value
            return kind, (lambda a, f=fn: None if f(a) is None else -f(a)), False, None
        if tag == "arith":
            op = node[1]
            lk, lf, lc, lv = self.operand(node[2])
            rk, rf, rc, rv = self.operand(node[3])
            if op in "*/":
                if (lk, rk) != ("num", "num"):
                    raise WhereError(f"operator {op} needs numbers")
                kind = "num"
            elif (lk, rk) == ("num", "num"):
                kind = "num"
            elif (lk, rk) == ("date", "interval") or (op == "+" and (lk, rk) == ("interval", "date")):
                kind = "date"
            elif (lk, rk) == ("interval", "interval"):
                kind = "interval"
            else:
                raise WhereError(f"cannot apply {op} to {lk} and {rk}")
            fn_op = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[op]
            if lc and rc:
                try:
                    value = fn_op(lv, rv)
                except ZeroDivisionError:
                    raise WhereError("division by zero") from None
                return kind, (lambda a, v=value: v), True, value

            def arith(a, lf=lf, rf=rf, fn_op=fn_op):
                x, y = lf(a), rf(a)
                if x is None or y is None:
                    return None
                try:
                    return fn_op(x, y)
                except ZeroDivisionError:
                    return None

            return kind, arith, False, None
        raise WhereError(f"not an operand: {tag}")

    def _comparable(self, lk: str, rk: str) -> None:
        if lk == rk and lk in ("num", "str", "date"):
            return
        if {lk, rk} == {"date", "num"}:
            if self.accept_epoch_dates:
                return
            raise WhereError("a date field compares with DATE '...' or TIMESTAMP '...', not a number")
        raise WhereError(f"cannot compare {lk} with {rk}")

    @staticmethod
    def _norm(kind: str, fn):
        if kind == "str":
            return lambda a, f=fn: (lambda v: None if v is None else v.casefold())(f(a))
        return fn

    def compile(self, node):
        tag = node[0]
        if tag == "and":
            parts = [self.compile(child) for child in node[1]]

            def pred_and(a, parts=parts):
                unknown = False
                for part in parts:
                    r = part(a)
                    if r is False:
                        return False
                    if r is None:
                        unknown = True
                return None if unknown else True

            return pred_and
        if tag == "or":
            parts = [self.compile(child) for child in node[1]]

            def pred_or(a, parts=parts):
                unknown = False
                for part in parts:
                    r = part(a)
                    if r is True:
                        return True
                    if r is None:
                        unknown = True
                return None if unknown else False

            return pred_or
        if tag == "not":
            inner = self.compile(node[1])
            return lambda a, f=inner: (lambda r: None if r is None else not r)(f(a))
        if tag == "cmp":
            op = _CMP[node[1]]
            lk, lf, lc, lv = self.operand(node[2])
            rk, rf, rc, rv = self.operand(node[3])
            if "null" in (lk, rk):
                return lambda a: None
            self._comparable(lk, rk)
            if lk == "str":  # hosted layers compare strings case-insensitively
                lf, rf = self._norm(lk, lf), self._norm(rk, rf)
                lv = lv.casefold() if lc else lv
                rv = rv.casefold() if rc else rv
            if lc and rc:
                result = op(lv, rv)
                return lambda a, r=result: r
            if node[2][0] == "field" and rc:
                name = node[2][1]
                if lk == "str":
                    return lambda a, n=name, c=rv: (lambda x: None if x is None else op(x.casefold(), c))(a.get(n))
                return lambda a, n=name, c=rv: (lambda x: None if x is None else op(x, c))(a.get(n))

            def pred_cmp(a, lf=lf, rf=rf):
                x, y = lf(a), rf(a)
                if x is None or y is None:
                    return None
                return op(x, y)

            return pred_cmp
        if tag == "isnull":
            _k, fn, _c, _v = self.operand(node[1])
            negated = node[2]
            return lambda a, f=fn: (f(a) is not None) if negated else (f(a) is None)
        if tag == "between":
            kinds = [self.operand(n) for n in node[1:4]]
            (xk, xf, _xc, _xv), (lk, lf, _lc, _lv), (hk, hf, _hc, _hv) = kinds
            if "null" in (xk, lk, hk):
                return lambda a: None
            self._comparable(xk, lk)
            self._comparable(xk, hk)
            xf, lf, hf = self._norm(xk, xf), self._norm(lk, lf), self._norm(hk, hf)
            negated = node[4]

            def pred_between(a):
                x, lo, hi = xf(a), lf(a), hf(a)
                if x is None or lo is None or hi is None:
                    return None
                inside = lo <= x <= hi
                return not inside if negated else inside

            return pred_between
        if tag == "in":
            xk, xf, _xc, _xv = self.operand(node[1])
            values = []
            for item in node[2]:
                k, _f, const, value = self.operand(item)
                if not const:
                    raise WhereError("IN (...) takes constants")
                if k == "null":
                    continue
                self._comparable(xk, k)
                values.append(value.casefold() if k == "str" else value)
            xf = self._norm(xk, xf)
            wanted = frozenset(values)
            negated = node[3]

            def pred_in(a):
                x = xf(a)
                if x is None:
                    return None
                return (x not in wanted) if negated else (x in wanted)

            return pred_in
        if tag == "like":
            xk, xf, _xc, _xv = self.operand(node[1])
            pk, _pf, pc, pattern = self.operand(node[2])
            if xk != "str" or pk != "str" or not pc:
                raise WhereError("LIKE needs a string field and a string pattern")
            regex = re.compile(
                "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern),
                re.IGNORECASE | re.DOTALL,
            )
            negated = node[3]

            def pred_like(a):
                x = xf(a)
                if x is None:
                    return None
                hit = regex.fullmatch(x) is not None
                return not hit if negated else hit

            return pred_like
        raise WhereError(f"not a condition: {tag}")

    def const(self, node):
        """``(kind, value)`` of a constant operand, or None."""
        try:
            kind, _fn, const, value = self.operand(node)
        except WhereError:
            return None
        return (kind, value) if const else None


class Where:
    """A compiled ``where``: ``predicate(attrs) -> True/False/None`` (None when the clause is a
    constant true), ``constant`` (True/False/None), and the AST for partition pruning."""

    def __init__(self, text: str, fields: dict[str, str], accept_epoch_dates: bool = False) -> None:
        names = {name.lower(): name for name in fields}
        self.kinds = {name: _KIND.get(kind, "str") for name, kind in fields.items()}
        self.text = text
        self.ast = _Parser(text, names).parse()
        self.compiler = _Compiler(self.kinds, accept_epoch_dates)
        compiled = self.compiler.compile(self.ast)
        self.constant = None
        if not _has_field(self.ast):
            self.constant = compiled({}) is True
            compiled = None
        self.predicate = compiled

    def matches(self, attrs: dict) -> bool:
        if self.constant is not None:
            return self.constant
        return self.predicate(attrs) is True

    def ranges(self, field: str):
        """A list of inclusive ``(low, high)`` intervals outside which ``field`` cannot match, or
        None when the clause does not bound it (low/high may be +-inf)."""
        return _ranges(self.ast, field, self.compiler)


def _has_field(node) -> bool:
    if isinstance(node, tuple):
        if node and node[0] == "field":
            return True
        return any(_has_field(part) for part in node[1:])
    if isinstance(node, list):
        return any(_has_field(part) for part in node)
    return False


_INF = float("inf")


def _ranges(node, field: str, compiler: _Compiler):
    tag = node[0]
    if tag == "and":
        result = None
        for child in node[1]:
            r = _ranges(child, field, compiler)
            if r is None:
                continue
            if result is None:
                result = r
            else:
                result = [(max(a, c), min(b, d)) for a, b in result for c, d in r if max(a, c) <= min(b, d)]
        return result
    if tag == "or":
        result = []
        for child in node[1]:
            r = _ranges(child, field, compiler)
            if r is None:
                return None
            result.extend(r)
        return result
    if tag == "cmp":
        op, left, right = node[1], node[2], node[3]
        if left == ("field", field):
            const = compiler.const(right)
        elif right == ("field", field):
            const, op = compiler.const(left), _FLIP[op]
        else:
            return None
        if const is None or const[0] not in ("num", "date") or not isinstance(const[1], (int, float)):
            return None
        c = const[1]
        return {"=": [(c, c)], "<": [(-_INF, c)], "<=": [(-_INF, c)], ">": [(c, _INF)],
                ">=": [(c, _INF)]}.get(op)  # <> / != : unbounded
    if tag == "between" and not node[4] and node[1] == ("field", field):
        low, high = compiler.const(node[2]), compiler.const(node[3])
        if low and high and isinstance(low[1], (int, float)) and isinstance(high[1], (int, float)):
            return [(low[1], high[1])]
        return None
    if tag == "in" and not node[3] and node[1] == ("field", field):
        values = [compiler.const(item) for item in node[2]]
        if all(v and isinstance(v[1], (int, float)) for v in values):
            return [(v[1], v[1]) for v in values]
        return None
    return None


def _overlaps(ranges, low: float, high: float) -> bool:
    return any(a <= high and b >= low for a, b in ranges)


# ---------------------------------------------------------------- a layer family


class LayerFamily:
    """One dataset served as one layer per year under ``path_pattern`` (with ``{year}``).

    The dataset needs: ``name``, ``years``/``has_year(year)``, ``layer_months(year)`` (the UTC
    months that may hold the layer's rows), ``layer_month_count(year, month)``,
    ``layer_records(year, month)`` (``(attributes, (x, y, lon, lat))`` of the month filed in the
    layer), ``date_range(month)``, ``object_id_range(month)``, ``editing_info(year)``, ``fields()``,
    ``field_types()``, ``layer_name(year)``, ``date_field``, ``object_id_field``, ``version``,
    ``reset()``, ``set_rows_per_month()``, ``set_years()``, ``set_layer_time_zone()``,
    ``apply_late_edits()``."""

    def __init__(self, dataset, path_pattern: str = MINNEAPOLIS_PATH, name: str | None = None,
                 max_record_count: int = DEFAULT_MAX_RECORD_COUNT, accept_epoch_dates: bool = False) -> None:
        if "{year}" not in path_pattern:
            raise ValueError("path_pattern needs a {year} placeholder")
        self.dataset = dataset
        self.name = name or dataset.name
        self.path_pattern = path_pattern
        self.max_record_count = _positive_int("max_record_count", max_record_count)
        self.accept_epoch_dates = bool(accept_epoch_dates)
        self._initial = (self.max_record_count, self.accept_epoch_dates)
        self._shifts: dict[tuple, int] = {}  # page_overlap: query -> features every later page starts early
        self._shift_lock = threading.Lock()
        service, _, layer = path_pattern.rstrip("/").rpartition("/")
        if not layer.isdigit():
            raise ValueError("path_pattern must end in the layer id, e.g. .../FeatureServer/0")
        self.layer_id = int(layer)
        head, _, tail = service.partition("{year}")
        self._service_re = re.compile(
            "^" + _arcgis_insensitive(re.escape(head)) + r"(?P<year>\d{4})" + re.escape(tail)
            + r"(?P<rest>(?:/[^/]*)*)$"
        )
        prefix = head[: head.rfind("/") + 1]
        self.prefixes = sorted({prefix, prefix.replace("/arcgis/", "/ArcGIS/"), prefix.replace("/ArcGIS/", "/arcgis/")})
        # A month's records filtered by a where clause, per (data version, month, where): a client
        # paging a month asks the same where once per page, and filtering a large month for every
        # page would make the emulator, not the client, the measured cost.
        self._matched: OrderedDict = OrderedDict()
        self._matched_lock = threading.Lock()

    def _matched_month(self, year: int, month: str, where_text: str, compute) -> list:
        key = (self.dataset.version, year, month, where_text, self.accept_epoch_dates)
        with self._matched_lock:
            if key in self._matched:
                self._matched.move_to_end(key)
                return self._matched[key]
        rows = compute()
        with self._matched_lock:
            self._matched[key] = rows
            while len(self._matched) > 16:
                self._matched.popitem(last=False)
        return rows

    def match(self, path: str):
        """``(year, rest segments)`` when the path is under one of this family's services."""
        m = self._service_re.match(path)
        if not m:
            return None
        return int(m.group("year")), [seg for seg in m.group("rest").split("/")[1:]]

    # ------------------------------------------------------------ configuration

    def configure(self, config: dict) -> dict:
        known = {"late_edits", "rows_per_month", "max_record_count", "accept_epoch_dates", "first_year", "last_year",
                 "layer_time_zone"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown {self.name} config key(s) {sorted(unknown)}; known: {sorted(known)}")
        result: dict = {}
        if "max_record_count" in config:
            self.max_record_count = _positive_int("max_record_count", config["max_record_count"])
        if "accept_epoch_dates" in config:
            if not isinstance(config["accept_epoch_dates"], bool):
                raise ValueError("accept_epoch_dates must be true or false")
            self.accept_epoch_dates = config["accept_epoch_dates"]
        if "first_year" in config or "last_year" in config:
            self.dataset.set_years(config.get("first_year"), config.get("last_year"))
        if "layer_time_zone" in config:
            self.dataset.set_layer_time_zone(config["layer_time_zone"])
        if "rows_per_month" in config:
            self.dataset.set_rows_per_month(config["rows_per_month"])
        if "late_edits" in config:
            edits = config["late_edits"]
            edits = edits if isinstance(edits, list) else [edits]
            result["late_edits"] = []
            for edit in edits:
                if not isinstance(edit, dict) or "month" not in edit:
                    raise ValueError('late_edits needs {"month": "YYYY-MM", "n": N}')
                ids = self.dataset.apply_late_edits(edit["month"], int(edit.get("n", 1)))
                year = self.dataset.year_of(edit["month"])
                result["late_edits"].append({"month": edit["month"], "object_ids": ids,
                                             "lastEditDate": self.dataset.layer_last_edit_date(year)})
        result.update(self.describe())
        return result

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "path_pattern": self.path_pattern,
            "seed": ds.seed,
            "rows_per_month": ds.rows_per_month,
            "max_record_count": self.max_record_count,
            "accept_epoch_dates": self.accept_epoch_dates,
            "first_year": ds.first_year,
            "last_year": ds.last_year,
            "layer_time_zone": ds.layer_time_zone,
            "lastEditDate": {str(year): ds.layer_last_edit_date(year) for year in ds.years},
        }

    def reset_data(self) -> None:
        self.max_record_count, self.accept_epoch_dates = self._initial
        self.dataset.reset()

    def clear_shifts(self) -> None:
        with self._shift_lock:
            self._shifts.clear()

    def _effective_offset(self, key: tuple, offset: int, faults) -> int:
        """``resultOffset`` as served: earlier by the features inserted ahead of the cursor."""
        with self._shift_lock:
            if offset == 0:
                self._shifts.pop(key, None)
            elif faults.get("reset_mid_page") == 0 and faults.take("page_overlap"):
                self._shifts[key] = self._shifts.get(key, 0) + OVERLAP_ROWS
            return max(0, offset - self._shifts.get(key, 0))

    # ------------------------------------------------------------ documents

    def service_json(self, year: int) -> dict:
        ds = self.dataset
        return {
            "currentVersion": CURRENT_VERSION,
            "serviceItemId": _item_id(self.name, year),
            "serviceDescription": "",
            "hasVersionedData": False,
            "supportsDisconnectedEditing": False,
            "hasStaticData": False,
            "maxRecordCount": self.max_record_count,
            "supportedQueryFormats": "JSON",
            "capabilities": "Query",
            "description": "",
            "copyrightText": "",
            "spatialReference": dict(_WEB_MERCATOR),
            "allowGeometryUpdates": True,
            "units": "esriMeters",
            "editingInfo": ds.editing_info(year),
            "layers": [{"id": self.layer_id, "name": ds.layer_name(year), "parentLayerId": -1,
                        "defaultVisibility": True, "subLayerIds": None, "minScale": 0, "maxScale": 0,
                        "geometryType": "esriGeometryPoint"}],
            "tables": [],
        }

    def layer_json(self, year: int) -> dict:
        ds = self.dataset
        return {
            "currentVersion": CURRENT_VERSION,
            "id": self.layer_id,
            "name": ds.layer_name(year),
            "type": "Feature Layer",
            "serviceItemId": _item_id(self.name, year),
            "displayField": "TITLE",
            "description": "",
            "copyrightText": "",
            "defaultVisibility": True,
            "editingInfo": ds.editing_info(year),
            "geometryType": "esriGeometryPoint",
            "hasZ": False,
            "hasM": False,
            "minScale": 0,
            "maxScale": 0,
            "extent": {"xmin": -10389600.0, "ymin": 5607500.0, "xmax": -10374500.0, "ymax": 5632900.0,
                       "spatialReference": dict(_WEB_MERCATOR)},
            "hasAttachments": False,
            "objectIdField": ds.object_id_field,
            "uniqueIdField": {"name": ds.object_id_field, "isSystemMaintained": True},
            "globalIdField": "",
            "typeIdField": "",
            "fields": ds.fields(),
            "types": [],
            "templates": [],
            "supportedQueryFormats": "JSON",
            "hasStaticData": False,
            "maxRecordCount": self.max_record_count,
            "standardMaxRecordCount": 32000,
            "tileMaxRecordCount": 8000,
            "maxRecordCountFactor": 1,
            "capabilities": "Query",
            "useStandardizedQueries": True,
            "advancedQueryCapabilities": {
                "supportsPagination": True,
                "supportsOrderBy": True,
                "supportsQueryWithResultType": False,
                "supportsStatistics": False,
                "supportsDistinct": False,
                "supportsReturningQueryExtent": False,
            },
        }

    # ------------------------------------------------------------ query

    def query(self, year: int, params: dict[str, str], faults) -> tuple[dict, bool]:
        """The query response document and whether it is a feature page."""
        ds = self.dataset
        types = ds.field_types()
        oid = ds.object_id_field
        for name in _UNSUPPORTED:
            value = params.get(name, "").strip()
            if value and value.lower() not in ("false", "none", "null"):
                raise ArcGisError(INVALID_QUERY, [CHECK_PARAMETERS],
                                  reason=f"parameter {name} is not supported by the replay")

        where_text = params.get("where", "").strip()
        object_ids = params.get("objectids", "").strip()
        if not where_text and not object_ids:
            raise ArcGisError(INVALID_QUERY, ["'where' parameter is invalid"], reason="where is required")
        where = Where(where_text, types, self.accept_epoch_dates) if where_text else None
        id_filter = None
        if object_ids:
            try:
                id_filter = frozenset(int(v) for v in object_ids.split(",") if v.strip())
            except ValueError:
                raise ArcGisError(INVALID_QUERY, ["'objectIds' parameter is invalid"],
                                  reason="objectIds must be integers") from None

        out_fields = _out_fields(params.get("outfields", ""), types, oid)
        order = _order_by(params.get("orderbyfields", ""), types)
        count_only = _bool_param(params, "returncountonly")
        ids_only = _bool_param(params, "returnidsonly")
        return_geometry = _bool_param(params, "returngeometry", default=True)
        out_sr = _out_sr(params.get("outsr", ""))
        offset = _int_param(params, "resultoffset", 0)
        count = _int_param(params, "resultrecordcount", 0)
        limit = self.max_record_count if count <= 0 else min(count, self.max_record_count)

        months = self._months(year, where, id_filter)
        default_order = not order or order == [(oid, False)]
        if not (count_only or ids_only):
            offset = self._effective_offset((year, where_text, object_ids, params.get("orderbyfields", "")),
                                            offset, faults)

        def matching(records):
            if where is not None and where.constant is False:
                return []
            out = records
            if where is not None and where.constant is None:
                out = [rec for rec in out if where.predicate(rec[0]) is True]
            if id_filter is not None:
                out = [rec for rec in out if rec[0][oid] in id_filter]
            return out

        if count_only:
            if id_filter is None and (where is None or where.constant is True):
                return {"count": sum(ds.layer_month_count(year, m) for m in months)}, False
            return {"count": sum(len(matching(ds.layer_records(year, m))) for m in months)}, False

        if ids_only or not default_order:
            matched = []
            for month in months:
                matched.extend(matching(ds.layer_records(year, month)))
            if not default_order:
                matched = _sort(matched, order)
            if ids_only:
                return {"objectIdFieldName": oid, "objectIds": [rec[0][oid] for rec in matched]}, False
            page = matched[offset:offset + limit]
            more = len(matched) > offset + limit
        else:  # OBJECTID order is month order: generate and filter only the months the page needs
            collected: list = []
            skipped = 0
            for month in months:
                if skipped < offset and id_filter is None and (where is None or where.constant is True):
                    n = ds.layer_month_count(year, month)
                    if skipped + n <= offset:
                        skipped += n
                        continue
                if id_filter is None and where is not None and where.constant is None:
                    rows = self._matched_month(year, month, where_text,
                                               lambda month=month: matching(ds.layer_records(year, month)))
                else:
                    rows = matching(ds.layer_records(year, month))
                k = 0
                if skipped < offset:
                    k = min(offset - skipped, len(rows))
                    skipped += k
                collected.extend(rows[k:k + limit + 1 - len(collected)])  # one slice: no copy of the month
                if len(collected) > limit:
                    break
            page = collected[:limit]
            more = len(collected) > limit

        features = []
        all_fields = len(out_fields) == len(types)
        for attrs, geom in page:
            feature = {"attributes": attrs if all_fields else {f: attrs.get(f) for f in out_fields}}
            if return_geometry:
                feature["geometry"] = {"x": geom[2], "y": geom[3]} if out_sr == 4326 else {"x": geom[0], "y": geom[1]}
            features.append(feature)
        if features and faults.get("reset_mid_page") == 0:
            features = _data_faults(features, faults, ds)
        fields_by_name = {f["name"]: f for f in ds.fields()}
        doc_fields = [_query_field(fields_by_name[f]) for f in out_fields]
        if faults.get("reset_mid_page") == 0:
            features, doc_fields, emptied = _field_faults(features, doc_fields, faults, ds)
            more = more and not emptied
        document = {
            "objectIdFieldName": oid,
            "uniqueIdField": {"name": oid, "isSystemMaintained": True},
            "globalIdFieldName": "",
            "geometryType": "esriGeometryPoint",
            "spatialReference": dict(_WGS84 if out_sr == 4326 else _WEB_MERCATOR),
            "fields": doc_fields,
            "features": features,
        }
        if more:
            document["exceededTransferLimit"] = True
        return document, True

    def _months(self, year: int, where: Where | None, id_filter) -> list[str]:
        """The layer's months a query can touch (by the date field and the object id)."""
        ds = self.dataset
        months = [m for m in ds.layer_months(year) if ds.layer_month_count(year, m) > 0]
        if where is not None and where.constant is False:
            return []
        if id_filter is not None:
            months = [m for m in months if any(ds.object_id_range(m)[0] <= i <= ds.object_id_range(m)[1]
                                               for i in id_filter)]
        if where is None or where.constant is not None:
            return months
        date_ranges = where.ranges(ds.date_field)
        if date_ranges is not None:
            months = [m for m in months if _overlaps(date_ranges, *ds.date_range(m))]
        id_ranges = where.ranges(ds.object_id_field)
        if id_ranges is not None:
            months = [m for m in months if _overlaps(id_ranges, *ds.object_id_range(m))]
        return months


def _arcgis_insensitive(escaped: str) -> str:
    return escaped.replace("/arcgis/", "/(?:arcgis|ArcGIS)/").replace("/ArcGIS/", "/(?:arcgis|ArcGIS)/")


def _item_id(name: str, year: int) -> str:
    import hashlib

    return hashlib.md5(f"{name}:{year}".encode()).hexdigest()


def _query_field(field: dict) -> dict:
    out = {k: field[k] for k in ("name", "type", "alias", "sqlType") if k in field}
    if "length" in field:
        out["length"] = field["length"]
    out.update(domain=None, defaultValue=None)
    return out


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1")
    return value


def _bool_param(params: dict, name: str, default: bool = False) -> bool:
    value = params.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ArcGisError(INVALID_QUERY, [f"'{name}' parameter is invalid"], reason=f"{name} must be true or false")


def _int_param(params: dict, name: str, default: int) -> int:
    value = params.get(name, "").strip()
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ArcGisError(INVALID_QUERY, [f"'{name}' parameter is invalid"],
                          reason=f"{name} must be an integer") from None
    if number < 0:
        raise ArcGisError(INVALID_QUERY, [f"'{name}' parameter is invalid"], reason=f"{name} must be >= 0")
    return number


def _out_sr(value: str) -> int:
    value = value.strip()
    if not value:
        return 102100
    if value.startswith("{"):
        try:
            value = str(orjson.loads(value).get("wkid", ""))
        except (orjson.JSONDecodeError, AttributeError):
            value = "?"
    if value == "4326":
        return 4326
    if value in ("102100", "3857", "102113"):
        return 102100
    raise ArcGisError(INVALID_QUERY, ["'outSR' parameter is invalid"],
                      reason="the replay serves outSR 4326 or 102100/3857 only")


def _out_fields(text: str, types: dict[str, str], oid: str) -> list[str]:
    names = {name.lower(): name for name in types}
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        return [oid]
    if "*" in items:
        return list(types)
    out = []
    for item in items:
        name = names.get(item.strip('"').lower())
        if name is None:
            raise ArcGisError(INVALID_QUERY, [f"'Invalid field: {item}' parameter is invalid"],
                              reason=f"outFields: unknown field {item!r}")
        if name not in out:
            out.append(name)
    return out


def _order_by(text: str, types: dict[str, str]) -> list[tuple[str, bool]]:
    names = {name.lower(): name for name in types}
    order = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.split()
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        name = names.get(parts[0].strip('"').lower())
        if name is None or len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise ArcGisError(INVALID_QUERY, ["'orderByFields' parameter is invalid"],
                              reason=f"orderByFields: cannot order by {item!r}")
        order.append((name, direction == "DESC"))
    return order


def _sort(records: list, order: list[tuple[str, bool]]) -> list:
    out = list(records)
    for name, descending in reversed(order):  # stable sorts, last key first; nulls sort first
        out.sort(key=lambda rec, n=name: _sort_key(rec[0].get(n)), reverse=descending)
    return out


def _sort_key(value):
    return (False, 0) if value is None else (True, value)


def _data_faults(features: list[dict], faults, dataset) -> list[dict]:
    """``malformed_row`` and ``duplicate_row`` on a feature page."""
    date_field, oid = dataset.date_field, dataset.object_id_field
    if faults.take("malformed_row"):
        features = list(features)
        first = dict(features[0]["attributes"])
        first.pop(oid, None)
        second = dict(features[1 % len(features)]["attributes"])
        if date_field in second:
            second[date_field] = "not-a-date"
        if oid in second:
            second[oid] = 999_999_999
        bad = [{**features[0], "attributes": first}, {**features[1 % len(features)], "attributes": second}]
        step = max(1, len(features) // 3)
        for k, feature in enumerate(bad):
            features.insert(min(len(features), (k + 1) * step + k), feature)
    if faults.take("duplicate_row"):
        original = features[0]
        attrs = dict(original["attributes"])
        for name in ("LastUpdateDate",):
            if isinstance(attrs.get(name), int):
                attrs[name] += 3_600_000
        features = list(features) + [{**original, "attributes": attrs}]
    return features


def _field_faults(features: list[dict], fields: list[dict], faults, dataset) -> tuple[list, list, bool]:
    """``empty_month``, ``drop_field``, ``new_field``, ``retype_field`` on a feature page; the
    features' attribute dicts are copied before any change (the dataset's are shared)."""
    emptied = False
    if faults.take("empty_month"):
        features, emptied = [], True
    if faults.take("drop_field"):
        name = faults.field or dataset.date_field
        fields = [f for f in fields if f["name"] != name]
        features = [{**f, "attributes": {k: v for k, v in f["attributes"].items() if k != name}} for f in features]
    if faults.take("new_field"):
        name, kind = NEW_FIELD
        fields = fields + [{"name": name, "type": kind, "alias": name, "sqlType": "sqlTypeOther", "length": 8,
                            "domain": None, "defaultValue": None}]
        features = [{**f, "attributes": {**f["attributes"],
                                         name: f["attributes"].get("LastUpdateDate") or f["attributes"].get(dataset.date_field)}}
                    for f in features]
    if faults.take("retype_field"):
        numeric = ("esriFieldTypeDouble", "esriFieldTypeInteger", "esriFieldTypeSmallInteger", "esriFieldTypeBigInteger",
                   "esriFieldTypeSingle")
        name = faults.field or next((f["name"] for f in fields if f["type"] in numeric), None)
        fields = [{**f, "type": "esriFieldTypeString", "length": 256} if f["name"] == name else f for f in fields]

        def as_text(value):
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return None if value is None else str(value)

        features = [{**f, "attributes": {**f["attributes"], name: as_text(f["attributes"].get(name))}}
                    if name in f["attributes"] else f for f in features]
    return features, fields, emptied


class _NoProcessing:
    """The core's faults without ``status_202``: ArcGIS has no "still processing" answer."""

    def __init__(self, faults) -> None:
        self._faults = faults

    def take(self, name: str, n: int = 1) -> int:
        return 0 if name == "status_202" else self._faults.take(name, n)

    def __getattr__(self, name):
        return getattr(self._faults, name)


def _arcgis_fault_answer(name: str, response: Response) -> Response:
    """The core's HTTP faults in the shapes ArcGIS Online answers them."""
    if name == "status_429":
        return json_response(429, error_envelope(429, "Too many requests. Please try again later."),
                             {"Retry-After": response.headers["Retry-After"]})
    if name == "status_503":
        return json_response(503, error_envelope(503, "Service Unavailable"))
    if name == "status_500":
        return json_response(500, error_envelope(500, ARCGIS_FAULT_MESSAGES[500]))
    if name == "status_401":  # an expired or revoked token: HTTP 200 and code 498, as ArcGIS sends it
        return json_response(200, error_envelope(498, "Invalid token.", ["Invalid token."]))
    return response  # 502: the proxy's HTML page


# ---------------------------------------------------------------- the service


class _ArcGisFaults:
    """ArcGIS-only fault counters (the core's list is fixed): ``arcgis_error``."""

    NAMES = ("arcgis_error",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {name: 0 for name in self.NAMES}
        self.fired = {name: 0 for name in self.NAMES}
        self.error_code = 500

    def take(self, name: str) -> bool:
        with self._lock:
            if self.counts[name] > 0:
                self.counts[name] -= 1
                self.fired[name] += 1
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            for name in self.NAMES:
                self.counts[name] = self.fired[name] = 0
            self.error_code = 500

    def configure(self, config: dict) -> dict:
        known = set(self.NAMES) | {"arcgis_error_code"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown arcgis config key(s) {sorted(unknown)}; known: {sorted(known)}")
        with self._lock:
            for name in self.NAMES:
                if name in config:
                    value = config[name]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name} needs a count >= 0")
                    self.counts[name] = value
            if "arcgis_error_code" in config:
                code = config["arcgis_error_code"]
                if code not in ARCGIS_FAULT_MESSAGES:
                    raise ValueError(f"arcgis_error_code must be one of {sorted(ARCGIS_FAULT_MESSAGES)}")
                self.error_code = code
        return self.describe()

    def describe(self) -> dict:
        with self._lock:
            return {**self.counts, "arcgis_error_code": self.error_code, "fired": dict(self.fired)}


class ArcGisApi:
    """The ArcGIS REST service: any number of layer families, each a dataset served one layer per
    year. ``add_layer_family(dataset, path_pattern)`` then ``server.install(api)``."""

    name = "arcgis"

    def __init__(self) -> None:
        self.families: list[LayerFamily] = []
        self.faults = _ArcGisFaults()
        self._installed = False

    def add_layer_family(self, dataset, path_pattern: str = MINNEAPOLIS_PATH, name: str | None = None,
                         max_record_count: int = DEFAULT_MAX_RECORD_COUNT,
                         accept_epoch_dates: bool = False) -> LayerFamily:
        if self._installed:
            raise RuntimeError("add layer families before installing the API")
        family = LayerFamily(dataset, path_pattern, name, max_record_count, accept_epoch_dates)
        self.families.append(family)
        return family

    def family(self, name: str) -> LayerFamily:
        return next(f for f in self.families if f.name == name)

    def install(self, server) -> None:
        prefixes = sorted({p for family in self.families for p in family.prefixes})
        for prefix in prefixes:
            # not ``faultable``: the core would fault metadata requests too; /query applies them here
            server.add_route(prefix, self.handle, methods=("GET", "POST"))
        for family in self.families:
            server.add_config_handler(family.name, family.configure, family.describe)
            server.add_data_reset_hook(family.reset_data)
        server.add_config_handler("arcgis", self.faults.configure, self.faults.describe)
        server.state.add_reset_hook(self.faults.clear)
        for family in self.families:
            server.state.add_reset_hook(family.clear_shifts)
        self._installed = True

    # ------------------------------------------------------------ handler

    def handle(self, request: Request) -> Response:
        params = _params(request)
        fmt = params.get("f", "").strip().lower()
        for family in self.families:
            hit = family.match(request.path)
            if hit is None:
                continue
            year, rest = hit
            if rest and rest[-1] == "":
                rest = rest[:-1]
            if not family.dataset.has_year(year):
                return _invalid_url(fmt, f"no layer for year {year}")
            if not rest:
                return self._document(fmt, lambda: family.service_json(year))
            if rest[0] != str(family.layer_id) or len(rest) > 2 or (len(rest) == 2 and rest[1].lower() != "query"):
                return _invalid_url(fmt, f"no such layer or operation: {'/'.join(rest)}")
            if len(rest) == 1:
                return self._document(fmt, lambda: family.layer_json(year))
            return self._query(family, year, params, fmt, request)
        return _invalid_url(fmt, f"no ArcGIS service at {request.path}")

    def _document(self, fmt: str, build) -> Response:
        if fmt not in ("json", "pjson"):
            return _format_response(fmt)
        return _render(build(), fmt)

    def _query(self, family: LayerFamily, year: int, params: dict, fmt: str, request: Request) -> Response:
        faults = request.state.faults
        answer = fault_response(_NoProcessing(faults), on_fault=_arcgis_fault_answer)
        if answer is not None:
            return answer
        if fmt not in ("json", "pjson"):
            return _format_response(fmt)
        if self.faults.take("arcgis_error"):
            code = self.faults.error_code
            return _render(error_envelope(code, ARCGIS_FAULT_MESSAGES[code]), fmt,
                           {"X-Replay-Error": "fault: arcgis_error"})
        try:
            document, data_page = family.query(year, params, faults)
        except ArcGisError as exc:
            return _render(error_envelope(exc.code, exc.message, exc.details), fmt,
                           {"X-Replay-Error": _header_safe(exc.reason)})
        response = _render(document, fmt, data_page=data_page)
        if data_page and faults.take("reset_mid_page"):
            response.abort_half = True
        return response


def _params(request: Request) -> dict[str, str]:
    """Query-string and form-body parameters, names lower-cased (ArcGIS REST ignores their case)."""
    pairs = list(request.params)
    if request.method == "POST" and request.body:
        content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
        if "application/x-www-form-urlencoded" in content_type:
            pairs.extend(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return {key.lower(): value for key, value in pairs}


def _render(document: dict, fmt: str, headers: dict | None = None, data_page: bool = False) -> Response:
    if fmt == "pjson":
        return Response(200, orjson.dumps(document, option=orjson.OPT_INDENT_2), headers or {},
                        content_type="text/plain; charset=utf-8", data_page=data_page)
    return Response(200, orjson.dumps(document), headers or {}, data_page=data_page)


def _invalid_url(fmt: str, reason: str) -> Response:
    return _render(error_envelope(400, "Invalid URL", ["Invalid URL"]), "pjson" if fmt == "pjson" else "json",
                   {"X-Replay-Error": _header_safe(reason)})


def _format_response(fmt: str) -> Response:
    if fmt in ("", "html"):  # the REST services directory: a browser page, not JSON
        body = b"<html><head><title>ArcGIS REST Services Directory</title></head><body>replay</body></html>"
        return Response(200, body, {"X-Replay-Error": "f=json or f=pjson expected"},
                        content_type="text/html; charset=utf-8")
    return _render(error_envelope(400, "Unable to complete operation.", ["Invalid format"]), "json",
                   {"X-Replay-Error": _header_safe(f"the replay serves f=json and f=pjson, not f={fmt}")})


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:300]


# ---------------------------------------------------------------- convenience


def install_minneapolis(server, dataset=None, max_record_count: int = DEFAULT_MAX_RECORD_COUNT):
    """Serve Minneapolis 311 (``Public_311_<YEAR>`` layers) on ``server``; returns the dataset.

    Creates a :class:`~civic_pipelines.replay.minneapolis.Minneapolis311Dataset` unless one is
    given, registers it on a new :class:`ArcGisApi` under :data:`MINNEAPOLIS_PATH` and installs it
    (``server.apis["arcgis"]``)."""
    from civic_pipelines.replay.minneapolis import Minneapolis311Dataset

    if dataset is None:
        dataset = Minneapolis311Dataset()
    api = ArcGisApi()
    api.add_layer_family(dataset, MINNEAPOLIS_PATH, max_record_count=max_record_count)
    server.install(api)
    return dataset
