"""What the replay's two where-clause parsers (SoQL's ``$where`` in ``soql.py``, ArcGIS's ``where``
in ``arcgis_where.py``) share: a cursor over the dialect's tokens and the ``OR`` / ``AND`` layers,
built as ``("or", [..])`` / ``("and", [..])`` nodes.
"""

from __future__ import annotations


class BooleanClauseParser:
    """Recursive descent over ``(kind, value)`` tokens, keywords as ``("kw", "AND")``. A dialect
    supplies ``parse_operand`` (what ``AND`` joins), ``error`` (raised with a message) and the
    messages for an empty clause and for tokens left after a complete one (``{token!r}``)."""

    error: type[Exception] = ValueError
    empty_message = "empty clause"
    trailing_message = "unexpected {token!r}"

    def __init__(self, tokens: list) -> None:
        self.tokens = tokens
        self.pos = 0

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

    def parse(self):
        if not self.tokens:
            raise self.error(self.empty_message)
        node = self.parse_or()
        if self.pos != len(self.tokens):
            raise self.error(self.trailing_message.format(token=self.peek()[1]))
        return node

    def parse_or(self):
        nodes = [self.parse_and()]
        while self.accept("kw", "OR"):
            nodes.append(self.parse_and())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def parse_and(self):
        nodes = [self.parse_operand()]
        while self.accept("kw", "AND"):
            nodes.append(self.parse_operand())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def parse_operand(self):
        raise NotImplementedError
