"""The ArcGIS REST ``where`` dialect the replay's feature layers accept (standardized SQL: ``AND``/``OR``/``NOT``,
comparisons, ``IN``, ``BETWEEN``, ``LIKE``, ``IS NULL``, ``DATE``/``TIMESTAMP`` literals, ``CURRENT_TIMESTAMP`` with
``INTERVAL``), compiled to a row predicate, plus the ranges of a date or id field a clause bounds (so a layer
generates only the months a query touches); and ArcGIS's error envelope, which a clause it cannot run answers.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import operator
import re
import time

from civic_pipelines.replay.clause_parsing import BooleanClauseParser

INVALID_QUERY = "Cannot perform query. Invalid query parameters."
CHECK_PARAMETERS = "Unable to perform query. Please check your parameters."
_KIND = {
    "esriFieldTypeOID": "num",
    "esriFieldTypeInteger": "num",
    "esriFieldTypeSmallInteger": "num",
    "esriFieldTypeDouble": "num",
    "esriFieldTypeSingle": "num",
    "esriFieldTypeBigInteger": "num",
    "esriFieldTypeString": "str",
    "esriFieldTypeDate": "date",
}


class ArcGisError(Exception):
    """An ArcGIS error envelope: ``code``, ``message``, ``details``; ``reason`` goes to a header."""

    def __init__(
        self, message: str = INVALID_QUERY, details: list[str] | None = None, code: int = 400, reason: str = ""
    ) -> None:
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
_KEYWORDS = {
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "BETWEEN",
    "IN",
    "LIKE",
    "ESCAPE",
    "DATE",
    "TIMESTAMP",
    "INTERVAL",
    "CURRENT_TIMESTAMP",
    "CURRENT_DATE",
}
_INTERVAL_MS = {"DAY": 86_400_000, "HOUR": 3_600_000, "MINUTE": 60_000, "SECOND": 1000}
_CMP = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
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
            raise WhereError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "ident" and not value.startswith('"'):
            upper = value.upper()
            if upper in _KEYWORDS:
                kind, value = "kw", upper
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser(BooleanClauseParser):
    """Recursive descent over the tokens into a small AST.

    Booleans: ``("and", [..])``, ``("or", [..])``, ``("not", x)``, ``("cmp", op, a, b)``,
    ``("isnull", a, negated)``, ``("between", a, lo, hi, negated)``, ``("in", a, [..], negated)``,
    ``("like", a, pattern, negated)``. Operands: ``("field", name)``, ``("const", kind, value)``,
    ``("now",)``, ``("today",)``, ``("neg", a)``, ``("arith", op, a, b)``."""

    error = WhereError
    empty_message = "empty where clause"

    def __init__(self, text: str, field_names: dict[str, str]) -> None:
        super().__init__(_tokenize(text))
        self.field_names = field_names  # lower-case -> canonical

    def expect(self, kind: str, value: str | None = None) -> str:
        k, v = self.take()
        if k != kind or (value is not None and v != value):
            raise WhereError(f"expected {value or kind}, found {v!r}")
        return v

    def parse_operand(self):
        return self.parse_not()

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
        return self._left_associative(("+", "-"), self.parse_multiplicative)

    def parse_multiplicative(self):
        return self._left_associative(("*", "/"), self.parse_primary)

    def _left_associative(self, operators: tuple[str, ...], parse_operand):
        """``operand (op operand)*`` with ``op`` among ``operators``, as nested ``("arith", ..)`` from the left."""
        node = parse_operand()
        while self.peek() in [("op", op) for op in operators]:
            op = self.take()[1]
            node = ("arith", op, node, parse_operand())
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


def _three_valued(parts, decisive: bool):
    """SQL's AND (``decisive`` False) or OR (True) over predicates answering True, False or None
    (unknown): the first decisive answer wins; otherwise any unknown makes the answer unknown."""

    def predicate(a):
        unknown = False
        for part in parts:
            r = part(a)
            if r is decisive:
                return decisive
            if r is None:
                unknown = True
        return None if unknown else not decisive

    return predicate


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
        if tag in ("and", "or"):
            return _three_valued([self.compile(child) for child in node[1]], decisive=tag == "or")
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
        return {"=": [(c, c)], "<": [(-_INF, c)], "<=": [(-_INF, c)], ">": [(c, _INF)], ">=": [(c, _INF)]}.get(
            op
        )  # <> / != : unbounded
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


def ranges_overlap(ranges, low: float, high: float) -> bool:
    return any(a <= high and b >= low for a, b in ranges)


# ---------------------------------------------------------------- a layer family
