"""What the replay's generated datasets share: the real sample rows loaded once per process, the
rows of several months, and the check of a late edit's count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class LoadedOnce:
    """A class whose one instance (e.g. the real sample rows and what a generator learns from
    them) is built on first use and shared by the process: ``get()``."""

    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            instance = cls.__dict__.get("_instance")  # each subclass its own
            if instance is None:
                instance = cls()
                cls._instance = instance
            return instance


class MonthlyRows:
    """For a dataset with ``rows_for_month(month)``."""

    def expected(self, months: str | Iterable[str]) -> list[dict]:
        """All wire rows of the given months, in month order."""
        if isinstance(months, str):
            months = [months]
        out: list[dict] = []
        for month in months:
            out.extend(self.rows_for_month(month))
        return out


def edit_count(n) -> int:
    """A late edit's number of rows, checked."""
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    return n
