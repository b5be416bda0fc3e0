"""The replay server's steerable state: the fault switches (counts that fire and count down) and the
request log, as a test sees them in-process and the ``/_replay/`` control endpoints expose them.

Fault switches (each a count, decremented as it fires, only on routes marked ``faultable``, i.e.
the data endpoints such as ``/resource/``):

    status_429      429 with ``Retry-After: <retry_after>`` and a JSON error body
    status_503      503 (a burst of n)
    status_202      202 with the route's "still processing" body (``[]`` for SODA)
    reset_mid_page  the full Content-Length, half the body, then the socket is reset
    malformed_row   the next n data pages each get two contract-breaking rows (one without the
                    key, one with an unparsable timestamp; the API module makes them)
    duplicate_row   the page's first row repeated with a later timestamp (API module applies it)
    status_500      500 (a burst of n)
    status_502      502 with an HTML body, as a load balancer sends it (a burst of n)
    status_401      401 ``invalid_token``: an expired or revoked credential (API modules whose
                    real service answers otherwise, e.g. ArcGIS's 498, replace the body)
    delay           the next n data requests wait ``delay_seconds`` before answering, so a client
                    with a shorter read timeout times out

Fault switches an API module implements where its API has the notion (the module's docstring says
which; ``fired`` shows whether one did):

    empty_month     the next n block queries find no records (or an archive with none)
    page_overlap    the next n pages start with the last rows of the previous page, as offset
                    paging does when rows are inserted ahead of the cursor while it walks
    drop_field      the next n pages lose one contract field entirely
    new_field       the next n pages carry a field the contract lacks
    retype_field    the next n pages carry one field as another JSON type (a number as text)
    truncate_archive  the next n archive downloads end early (a complete HTTP response of a
                    truncated file)
    corrupt_archive   the next n archive downloads have garbage bytes in the middle

``field`` (``POST /_replay/faults {"drop_field": 1, "field": "beat"}``) names the wire field that
``drop_field`` / ``retype_field`` act on; unset (null), each API module picks its own default
(its docstring says which). An API whose real service answers a core fault in another shape
(ArcGIS's 498 for a bad token, Socrata's 403 ``permission_denied`` for a bad app token) passes
``on_fault`` to ``add_route``, or calls :func:`fault_response` itself with one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

FAULTS = (
    "status_429",
    "status_503",
    "status_202",
    "reset_mid_page",
    "malformed_row",
    "duplicate_row",
    "status_500",
    "status_502",
    "status_401",
    "delay",
    "empty_month",
    "page_overlap",
    "drop_field",
    "new_field",
    "retype_field",
    "truncate_archive",
    "corrupt_archive",
)


class Faults:
    """Thread-safe fault counters. ``faults.set(status_429=2)``, ``faults["status_503"] = 3``,
    ``faults.take("status_429")`` (fires: returns how many were taken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {name: 0 for name in FAULTS}
        self.fired = {name: 0 for name in FAULTS}
        self.retry_after: float = 1
        self.delay_seconds: float = 2
        self.field: str | None = None  # the wire field drop_field / retype_field act on (None: the API's choice)

    def set(self, **values) -> None:
        self.update(values)

    def update(self, values: dict) -> None:
        with self._lock:
            for name, value in values.items():
                if name in ("retry_after", "delay_seconds"):
                    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                        raise ValueError(f"{name} must be a number of seconds >= 0")
                    setattr(self, name, value)
                    continue
                if name == "field":
                    if value is not None and (not isinstance(value, str) or not value):
                        raise ValueError("field must be a wire field name or null")
                    self.field = value
                    continue
                if name not in self._counts:
                    raise ValueError(
                        f"unknown fault {name!r}; known: {', '.join(FAULTS)}, retry_after, delay_seconds, field"
                    )
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"fault {name} needs a count >= 0")
                self._counts[name] = value

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def __setitem__(self, name: str, value: int) -> None:
        self.update({name: value})

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    def take(self, name: str, n: int = 1) -> int:
        with self._lock:
            taken = min(self._counts[name], n)
            self._counts[name] -= taken
            self.fired[name] += taken
            return taken

    def clear(self) -> None:
        with self._lock:
            for name in FAULTS:
                self._counts[name] = 0
                self.fired[name] = 0
            self.retry_after = 1
            self.delay_seconds = 2
            self.field = None

    def snapshot(self) -> dict:
        with self._lock:
            return {
                **self._counts,
                "retry_after": self.retry_after,
                "delay_seconds": self.delay_seconds,
                "field": self.field,
                "fired": dict(self.fired),
            }


class ReplayState:
    """What a test can see and steer in-process: fault switches and the request log."""

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._reset_hooks: list[Callable[[], None]] = []

    def add_reset_hook(self, hook: Callable[[], None]) -> None:
        """An API's own switches, cleared with the core's by every reset."""
        self._reset_hooks.append(hook)

    def log(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[str]:
        """Paths with raw query strings, in arrival order (control requests excluded)."""
        with self._lock:
            return [e["path"] + ("?" + e["query"] if e["query"] else "") for e in self._requests]

    def request_details(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._requests]

    def reset(self) -> None:
        self.faults.clear()
        for hook in self._reset_hooks:
            hook()
        with self._lock:
            self._requests.clear()
