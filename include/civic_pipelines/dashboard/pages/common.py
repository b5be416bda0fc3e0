"""What every dashboard page shares: the page list and which source belongs to which page, the
filters (a month range and the selected sources), the ``Page`` and ``Chart`` results, the query
helpers over a ``Reading`` and the warehouse's own table counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from civic_pipelines.dashboard import figures

MAP_POINTS = 1000  # points drawn per map: a stable sample (the same rows on every load), small enough for SVG
TOP = 15
AREAS_PER_CITY = 10


# ---------------------------------------------------------------- pages and sources

PAGES = {"overview": "Overview", "crime": "Crime", "311": "311", "street-works": "Street works", "mobility": "Mobility"}
CRIME_SOURCES = ["seattle_crime"]
STREET_WORKS_SOURCES = ["street_manager", "srwr"]
MOBILITY_SOURCES = ["mds"]


def service_request_sources(registered: list[str]) -> list[str]:
    """311 sources: every registered ``<city>_311`` (fct_service_requests.city is ``<city>``)."""
    return [name for name in registered if name.endswith("_311")]


def city_of(source: str) -> str:
    return source.removesuffix("_311")


def page_of(source: str) -> str | None:
    if source in CRIME_SOURCES:
        return "crime"
    if source.endswith("_311"):
        return "311"
    if source in STREET_WORKS_SOURCES:
        return "street-works"
    if source in MOBILITY_SOURCES:
        return "mobility"
    return None


# ---------------------------------------------------------------- filters

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class Filters:
    start: date | None = None
    end: date | None = None
    sources: list[str] | None = None  # None: every source of the page
    notes: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, start: str | None, end: str | None, sources: list[str] | None) -> Filters:
        filters = cls()
        for name, value in (("start", start), ("end", end)):
            if not value:
                continue
            if not _MONTH.match(value.strip()):
                filters.notes.append(f"ignored {name} month {value!r}: use YYYY-MM, e.g. 2024-03")
                continue
            year, month = value.strip().split("-")
            setattr(filters, name, date(int(year), int(month), 1))
        if filters.start and filters.end and filters.start > filters.end:
            filters.start, filters.end = filters.end, filters.start
            filters.notes.append("the start month was after the end month: swapped")
        picked = [s.strip() for value in (sources or []) for s in value.split(",") if s.strip()]
        filters.sources = picked or None
        return filters

    def selected(self, options: list[str]) -> list[str]:
        if self.sources is None:
            return list(options)
        unknown = [s for s in self.sources if s not in options]
        if unknown:
            self.notes.append(f"ignored unknown source(s) {', '.join(unknown)} (this page has {', '.join(options)})")
        return [s for s in options if s in self.sources]


# ---------------------------------------------------------------- results


@dataclass
class Chart:
    id: str
    title: str
    model: str
    data: Any = None
    figure: dict | None = None
    empty: str | None = None  # shown instead of the figure
    note: str | None = None
    wide: bool = False

    def as_json(self) -> dict:
        # The figure is drawn into the page; the JSON answer carries only what the chart shows.
        return {name: getattr(self, name) for name in ("id", "title", "model", "data", "empty", "note")}


@dataclass
class Page:
    page: str
    title: str
    source_options: list[str]
    selected: list[str]
    extent: tuple[str | None, str | None] = (None, None)
    start: str | None = None
    end: str | None = None
    figures: list[tuple[str, Any]] = field(default_factory=list)  # headline numbers
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty: str | None = None  # the whole page has nothing to show

    def as_json(self) -> dict:
        return {
            "page": self.page,
            "title": self.title,
            "sources": self.source_options,
            "selected": self.selected,
            "extent": {"first": self.extent[0], "last": self.extent[1]},
            "range": {"start": self.start, "end": self.end},
            "figures": dict(self.figures),
            "charts": [c.as_json() for c in self.charts],
            "notes": self.notes,
            "empty": self.empty,
        }


def month_text(value) -> str | None:
    return value.strftime("%Y-%m") if value is not None else None


def rows(reading, sql: str, **params) -> list[tuple]:
    return reading.cursor.execute(sql, params).fetchall() if params else reading.cursor.execute(sql).fetchall()


def row(reading, sql: str, **params) -> tuple:
    return reading.cursor.execute(sql, params).fetchone()


def month_range(page: Page, filters: Filters, first: date | None, last: date | None) -> tuple[date, date, bool]:
    """The month range to show (the filter, else everything) and whether it covers every month."""
    start = filters.start or first
    end = filters.end or last
    page.extent = (month_text(first), month_text(last))
    page.start, page.end = month_text(start), month_text(end)
    covers_all = (first is None) or (start <= first and end >= last)
    return start, end, covers_all


def not_built(reading, *tables: str) -> str | None:
    absent = [t for t in tables if t not in reading.tables]
    if absent:
        return f"not built yet: {', '.join(absent)} (its source's DAG builds it after landing a block)"
    return None


def chart(
    chart_id: str,
    title: str,
    model: str,
    found: list,
    empty: str,
    data: Any,
    draw: Callable[[], dict],
    *,
    note: str | None = None,
    wide: bool = False,
) -> Chart:
    """A chart over the ``found`` rows: ``draw()`` builds its figure and ``note`` is shown only when
    there are rows; with none, ``empty`` says why instead (drawing nothing)."""
    return Chart(
        chart_id,
        title,
        model,
        data=data,
        figure=draw() if found else None,
        empty=None if found else empty,
        note=note if found else None,
        wide=wide,
    )


def ranking(chart_id: str, title: str, model: str, counts: list[tuple], keys: tuple[str, str], empty: str) -> Chart:
    """A ranking of ``(label, count)`` rows; ``keys`` name the two in the chart's data."""
    label_key, count_key = keys
    return chart(
        chart_id,
        title,
        model,
        counts,
        empty,
        data=[{label_key: label, count_key: n} for label, n in counts],
        draw=lambda: figures.ranking([label for label, _ in counts], [n for _, n in counts], count_key),
    )


def monthly_bars(
    chart_id: str,
    title: str,
    model: str,
    monthly: list[tuple],
    columns: dict[str, str],
    unit: str,
    empty: str,
    *,
    wide: bool = False,
    **layout,
) -> Chart:
    """``(month, *counts)`` rows as bars per month, one series per count: ``columns`` maps each
    count's name in the chart's data to its name in the legend, in the rows' order."""
    return chart(
        chart_id,
        title,
        model,
        monthly,
        empty,
        data=[{"month": month_text(r[0]), **dict(zip(columns, r[1:]))} for r in monthly],
        draw=lambda: figures.stacked_bars(
            [month_text(r[0]) for r in monthly],
            {legend: [r[i + 1] for r in monthly] for i, legend in enumerate(columns.values())},
            unit,
            **layout,
        ),
        wide=wide,
    )


def grouped(found: list[tuple]) -> dict[Any, list[tuple]]:
    """``(group, *rest)`` rows to ``{group: [rest, ...]}`` in row order: one series per group."""
    groups: dict[Any, list[tuple]] = {}
    for group, *rest in found:
        groups.setdefault(group, []).append(tuple(rest))
    return groups


def point_map(
    chart_id: str,
    title: str,
    model: str,
    points: list[tuple],
    empty: str,
    data: dict | None = None,
    note: str | None = None,
) -> Chart:
    """A wide map of ``(group, lon, lat, hover text)`` rows, one colour per group."""
    return chart(
        chart_id,
        title,
        model,
        points,
        empty,
        data={"points_drawn": len(points), **(data or {})},
        draw=lambda: figures.point_map(grouped(points)),
        note=note,
        wide=True,
    )


def empty_page(page: Page, message: str) -> Page:
    page.empty = message
    return page


# ---------------------------------------------------------------- health of the warehouse itself


def table_counts(reading, tables: list[str]) -> dict[str, int | None]:
    counts = {}
    for table in tables:
        counts[table] = row(reading, f'select count(*) from "{table}"')[0] if table in reading.tables else None
    return counts
