"""A row of the fault matrix as data: what ``docs/reliability.md`` says it proves (fault, expected)
and the check that proves it. The matrix modules list their rows in tables and run them all through
one test and one runner (``archive_faults.run_row``, ``http_faults.run_row``), so a row's claim is
written once, beside the others, and no two tests repeat the same publish-run-observe steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """``source`` is what the runner opens (for the HTTP matrix the ``case`` parameter, such as
    ``mds:bolt``); ``check`` returns what it observed, published beside the row."""

    source: str
    fault: str
    expected: str
    check: Callable[..., str]
    name: str = ""  # the test id; the check's own name unless one check serves several rows

    def __str__(self) -> str:
        return f"{self.name or self.check.__name__}-{self.source}"
