"""The ``page_overlap`` fault's state, shared by the paged query APIs (SODA, ArcGIS): rows are
inserted ahead of a client's cursor, so the page at a non-zero offset and every later page of the
same query start :data:`OVERLAP_ROWS` rows early, until the query starts again at offset 0.
"""

from __future__ import annotations

import threading

OVERLAP_ROWS = 3  # rows an overlapped page repeats from the previous one


class PageOverlap:
    """Per query (any hashable key), how many rows every later page starts early."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shifts: dict[tuple, int] = {}

    def clear(self) -> None:
        with self._lock:
            self._shifts.clear()

    def offset(self, key: tuple, offset: int, faults) -> int:
        """The offset as served: earlier by the rows inserted ahead of this query's cursor (one
        more insertion when the fault fires on this page)."""
        with self._lock:
            if offset == 0:
                self._shifts.pop(key, None)
            elif faults.get("reset_mid_page") == 0 and faults.take("page_overlap"):
                self._shifts[key] = self._shifts.get(key, 0) + OVERLAP_ROWS
            return max(0, offset - self._shifts.get(key, 0))
