"""Calendar months: the unit of a block. Parsing, validation, ranges and bounds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_MONTH_RE = re.compile(MONTH_PATTERN)


class BlockPlanError(ValueError):
    """A month range that cannot be planned; the message is meant for the person who asked."""


def parse_month(value: str) -> date:
    if not isinstance(value, str) or not _MONTH_RE.match(value.strip()):
        raise BlockPlanError(f"month {value!r} is not in YYYY-MM form (for example 2024-03)")
    year, month = value.strip().split("-")
    return date(int(year), int(month), 1)


def format_month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def previous_month(day: date) -> date:
    return date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


def month_bounds(month: str) -> tuple[str, str]:
    """ISO bounds [first instant, first instant of the next month) as naive wall-clock strings."""
    start = parse_month(month)
    return f"{start.isoformat()}T00:00:00.000", f"{next_month(start).isoformat()}T00:00:00.000"


def month_range(start: str, end: str) -> list[str]:
    first, last = parse_month(start), parse_month(end)
    if last < first:
        raise BlockPlanError(f"end_month {end} is before start_month {start}")
    months, current = [], first
    while current <= last:
        months.append(format_month(current))
        current = next_month(current)
    return months


def current_month(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return format_month(date(now.year, now.month, 1))


def plan_months(
    start_month: str | None,
    end_month: str | None,
    interval_start: datetime | None,
    interval_end: datetime | None,
    *,
    first_month: str,
    max_blocks: int,
    now: datetime | None = None,
) -> list[str]:
    """The months a run covers: the trigger form's range first, else the run's data interval.

    A month is complete only once it has ended, so the current month (and anything later) is
    refused, as is a range wider than the mapping limit or starting before the source exists.
    """
    this_month = current_month(now)
    if start_month or end_month:
        if not (start_month and end_month):
            raise BlockPlanError("give both start_month and end_month, or neither (to use the run's data interval)")
        months = month_range(start_month, end_month)
    else:
        if interval_start is None or interval_end is None:
            raise BlockPlanError("the run has no data interval and no start_month/end_month params")
        # A run covers the months that END inside its interval (start, end]: a cron at 00:00 on the
        # 1st gives [2026-10-01, 2026-11-01) -> October, and so does a later hour for a publisher
        # that posts during the 1st ([2026-10-01 06:00, 2026-11-01 06:00) -> October).
        months = []
        month = previous_month(date(interval_start.year, interval_start.month, 1))
        while True:
            following = next_month(month)
            month_end = datetime(following.year, following.month, 1, tzinfo=interval_end.tzinfo)
            if month_end > interval_end:
                break
            if month_end > interval_start:
                months.append(format_month(month))
            month = following
        if not months:
            raise BlockPlanError(f"no month ends inside the run's data interval ({interval_start} .. {interval_end})")
    if months[-1] >= this_month:
        raise BlockPlanError(
            f"month {months[-1]} is not complete yet (current month is {this_month}); the latest month you can ask for is "
            f"{format_month(previous_month(parse_month(this_month)))}"
        )
    if months[0] < first_month:
        raise BlockPlanError(f"month {months[0]} is before the source's first month {first_month}")
    if len(months) > max_blocks:
        raise BlockPlanError(
            f"{len(months)} months requested ({months[0]}..{months[-1]}); the limit is {max_blocks} blocks per run: "
            "split the range into several runs"
        )
    return months
