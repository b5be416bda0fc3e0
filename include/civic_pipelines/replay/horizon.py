"""The replay's rolling horizon: how far the emulated publishers' data reaches.

A real publisher keeps publishing: Seattle adds rows every day, Minneapolis opens a new yearly layer
every January, Toronto a new yearly resource. The emulators therefore serve through the current date
rather than up to a year fixed when they were written, so ``make demo`` (which asks for the most
recent complete months) keeps working as the calendar turns.

The clock is ``today()``: the real UTC date, or ``CIVIC_REPLAY_TODAY`` (``YYYY-MM-DD``) when set, so a
replay server started in another process can be pinned to a date; tests may also monkeypatch
``today``. Everything derived from it is deterministic for a given date.

Volumes and tables keyed by year stop at the last year the contracts document. For a later year the
emulators repeat the last documented year's figure (``carried_forward``): a documented figure is
never invented, a later year repeats the last documented one.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from typing import TypeVar

TODAY_ENV = "CIVIC_REPLAY_TODAY"

V = TypeVar("V")


def today() -> _dt.date:
    """The replay's today: ``CIVIC_REPLAY_TODAY`` if set, else the real date in UTC."""
    pinned = os.environ.get(TODAY_ENV)
    if pinned:
        try:
            return _dt.date.fromisoformat(pinned)
        except ValueError:
            raise ValueError(f"{TODAY_ENV} must be YYYY-MM-DD, not {pinned!r}") from None
    return _dt.datetime.now(_dt.UTC).date()


def now() -> _dt.datetime:
    """The replay's clock (UTC): midnight of ``CIVIC_REPLAY_TODAY`` if set, else the real time."""
    if os.environ.get(TODAY_ENV):
        return _dt.datetime.combine(today(), _dt.time(), _dt.UTC)
    return _dt.datetime.now(_dt.UTC)


def last_year(documented_last: int, on: _dt.date | None = None) -> int:
    """The last year served: the documented last one, or today's year once the calendar passed it."""
    return max(documented_last, (on or today()).year)


def last_month(documented_last: str, on: _dt.date | None = None) -> str:
    """The last month served (``YYYY-MM``): the documented last one, or today's month once past it."""
    current = (on or today()).strftime("%Y-%m")
    return max(documented_last, current)


def carried_forward(table: Mapping[int, V], year: int) -> V:
    """``table[year]``; for a year after the last documented one, the last documented year's value."""
    if year in table:
        return table[year]
    last = max(table)
    if year > last:
        return table[last]
    raise KeyError(year)
