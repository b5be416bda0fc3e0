"""What each dashboard page shows: its filters, its figures (headline numbers) and its charts,
each chart with the data behind it, the dbt model that feeds it and an empty state.

Every page function takes a ``Reading`` (a cursor on a consistent warehouse snapshot, see
warehouse.py) and ``Filters`` (a month range and the selected sources) and returns a ``Page``;
the HTML pages draw its charts and the JSON endpoints return its data, so both always agree. A
model that has not been built yet (its source never ran) gives an empty state, never an error.

Charts over "all months" marts (``mart_crime_by_area``, ``mart_requests_by_area``) read the mart
when the range covers every month and aggregate the fact otherwise (same rule, fewer months); the
chart's model link says which one it read.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from civic_pipelines.dashboard import figures

MAP_POINTS = 1000  # points drawn per map: a stable sample (the same rows on every load), small enough for SVG
TOP = 15
AREAS_PER_CITY = 10


# ---------------------------------------------------------------- pages and sources

PAGES = {
    "overview": "Overview",
    "crime": "Crime",
    "311": "311",
    "street-works": "Street works",
    "mobility": "Mobility",
}
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
    def parse(cls, start: str | None, end: str | None, sources: list[str] | None) -> "Filters":
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
        return {"id": self.id, "title": self.title, "model": self.model, "data": self.data, "empty": self.empty,
                "note": self.note}


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
            "page": self.page, "title": self.title, "sources": self.source_options, "selected": self.selected,
            "extent": {"first": self.extent[0], "last": self.extent[1]},
            "range": {"start": self.start, "end": self.end},
            "figures": dict(self.figures), "charts": [c.as_json() for c in self.charts], "notes": self.notes,
            "empty": self.empty,
        }


def _month(value) -> str | None:
    return value.strftime("%Y-%m") if value is not None else None


def _all(reading, sql: str, **params) -> list[tuple]:
    return reading.cursor.execute(sql, params).fetchall() if params else reading.cursor.execute(sql).fetchall()


def _one(reading, sql: str, **params) -> tuple:
    return reading.cursor.execute(sql, params).fetchone()


def _range(page: Page, filters: Filters, first: date | None, last: date | None) -> tuple[date, date, bool]:
    """The month range to show (the filter, else everything) and whether it covers every month."""
    start = filters.start or first
    end = filters.end or last
    page.extent = (_month(first), _month(last))
    page.start, page.end = _month(start), _month(end)
    covers_all = (first is None) or (start <= first and end >= last)
    return start, end, covers_all


def _missing(reading, *tables: str) -> str | None:
    absent = [t for t in tables if t not in reading.tables]
    if absent:
        return f"not built yet: {', '.join(absent)} (its source's DAG builds it after landing a block)"
    return None


def _point_map(chart_id: str, title: str, model: str, points: list[tuple], empty: str, data: dict | None = None,
               note: str | None = None) -> Chart:
    """A wide map of ``(group, lon, lat, hover text)`` rows, one colour per group."""
    groups: dict[str, list] = {}
    for group, lon, lat, text in points:
        groups.setdefault(group, []).append((lon, lat, text))
    return Chart(chart_id, title, model, data={"points_drawn": len(points), **(data or {})},
                 figure=figures.point_map(groups) if points else None,
                 empty=None if points else empty, note=note if points else None, wide=True)


def _empty_page(page: Page, message: str) -> Page:
    page.empty = message
    return page


# ---------------------------------------------------------------- crime


def crime(reading, filters: Filters) -> Page:
    page = Page("crime", "Crime (Seattle)", CRIME_SOURCES, filters.selected(CRIME_SOURCES))
    missing = _missing(reading, "fct_crime_offenses", "mart_crime_monthly")
    if not page.selected:
        return _empty_page(page, "no crime source selected")
    if missing:
        return _empty_page(page, f"No crime data yet: {missing}.")
    first, last = _one(reading, "select min(report_month), max(report_month) from mart_crime_monthly")
    if first is None:
        return _empty_page(page, "No offenses landed yet.")
    start, end, covers_all = _range(page, filters, first, last)
    where = "report_month between $start and $end"
    p = {"start": start, "end": end}

    total, person, property_ = _one(reading, f"""
        select coalesce(sum(offenses), 0),
               coalesce(sum(offenses) filter (where crime_against_category = 'PERSON'), 0),
               coalesce(sum(offenses) filter (where crime_against_category = 'PROPERTY'), 0)
        from mart_crime_monthly where {where}""", **p)
    page.figures = [("offenses", int(total)), ("against persons (violent)", int(person)),
                    ("against property", int(property_))]

    trend = _all(reading, f"""
        select report_month, coalesce(crime_against_category, 'UNKNOWN') as category, sum(offenses)::bigint
        from mart_crime_monthly where {where} group by all order by 1, 2""", **p)
    series: dict[str, list] = {}
    for month, category, n in trend:
        series.setdefault(category, []).append((month, n))
    order = ["PERSON", "PROPERTY", "SOCIETY", "NOT_A_CRIME", "UNKNOWN"]
    series = {k: series[k] for k in sorted(series, key=lambda c: order.index(c) if c in order else 99)}
    page.charts.append(Chart(
        "crime-trend", "Violent (PERSON) vs property offenses by month", "mart_crime_monthly",
        data=[{"month": _month(m), "category": c, "offenses": n} for m, c, n in trend],
        figure=figures.lines(series, "offenses") if trend else None,
        empty=None if trend else "No offenses in this range.", wide=True))

    if covers_all and "mart_crime_by_area" in reading.tables:
        model, areas = "mart_crime_by_area", _all(reading, f"""
            select precinct, sector, beat, offenses from mart_crime_by_area
            order by offenses desc, precinct nulls last, sector nulls last, beat nulls last limit {TOP}""")
    else:
        model, areas = "fct_crime_offenses", _all(reading, f"""
            select precinct, sector, beat, count(*) as offenses from fct_crime_offenses where {where}
            group by all order by offenses desc, precinct nulls last, sector nulls last, beat nulls last
            limit {TOP}""", **p)
    labels = [f"{pr or '?'} / {se or '?'} / {be or 'no beat'}" for pr, se, be, _ in areas]
    page.charts.append(Chart(
        "crime-areas", "Beats with the most offenses (precinct / sector / beat)", model,
        data=[{"precinct": pr, "sector": se, "beat": be, "offenses": n} for pr, se, be, n in areas],
        figure=figures.ranking(labels, [n for *_, n in areas], "offenses") if areas else None,
        empty=None if areas else "No offenses in this range."))

    offenses = _all(reading, f"""
        select coalesce(offense_parent_group, '(unknown group)') as offense_group, count(*) as offenses
        from fct_crime_offenses where {where} group by all order by offenses desc, offense_group limit {TOP}""", **p)
    page.charts.append(Chart(
        "crime-offenses", "Offenses by NIBRS offense group", "fct_crime_offenses",
        data=[{"offense_group": g, "offenses": n} for g, n in offenses],
        figure=figures.ranking([g for g, _ in offenses], [n for _, n in offenses], "offenses") if offenses else None,
        empty=None if offenses else "No offenses in this range."))

    points = _all(reading, f"""
        select coalesce(crime_against_category, 'UNKNOWN'), round(longitude, 5), round(latitude, 5),
               coalesce(offense, '') || ' · ' || coalesce(block_address, '') || ' · ' || strftime(report_datetime, '%Y-%m-%d')
        from fct_crime_offenses
        where {where} and longitude is not null and latitude is not null
        order by hash(offense_id) limit {MAP_POINTS}""", **p)
    with_point = _one(reading, f"select count(*) filter (where longitude is not null), count(*) from fct_crime_offenses where {where}", **p)
    page.charts.append(_point_map(
        "crime-map", "Where offenses were reported", "fct_crime_offenses", points,
        "No offense in this range has a location.",
        data={"offenses_with_point": with_point[0], "offenses": with_point[1]},
        note=f"{len(points):,} of {with_point[0]:,} located offenses drawn (a fixed sample); "
             f"{with_point[1] - with_point[0]:,} have no published location."))
    return page


# ---------------------------------------------------------------- 311


def service_requests(reading, filters: Filters, registered: list[str], boundaries) -> Page:
    options = service_request_sources(registered)
    page = Page("311", "311 service requests", options, filters.selected(options))
    cities = [city_of(s) for s in page.selected]
    if not cities:
        return _empty_page(page, "no 311 source selected")
    missing = _missing(reading, "fct_service_requests", "mart_requests_by_category_month")
    if missing:
        return _empty_page(page, f"No 311 data yet: {missing}.")
    p0 = {"cities": cities}
    first, last = _one(reading, "select min(month), max(month) from mart_requests_by_category_month "
                                "where list_contains($cities, city)", **p0)
    if first is None:
        return _empty_page(page, f"No requests landed yet for {', '.join(cities)}.")
    start, end, covers_all = _range(page, filters, first, last)
    p = {"cities": cities, "start": start, "end": end}
    in_range = "list_contains($cities, city) and month between $start and $end"
    fact_range = "list_contains($cities, city) and opened_month between $start and $end"

    per_city = _all(reading, f"select city, sum(requests)::bigint from mart_requests_by_category_month "
                             f"where {in_range} group by city order by city", **p)
    page.figures = [("requests", sum(n for _, n in per_city))] + [(f"{c}", n) for c, n in per_city]

    volume = _all(reading, f"""
        select month, coalesce(major_category, '(unmapped type)') as category, sum(requests)::bigint
        from mart_requests_by_category_month where {in_range} group by all order by 1, 2""", **p)
    months = sorted({_month(m) for m, _, _ in volume})
    totals: dict[str, int] = {}
    for _, category, n in volume:
        totals[category] = totals.get(category, 0) + n
    categories = sorted(totals, key=lambda c: -totals[c])
    cells = {(_month(m), c): n for m, c, n in volume}
    page.charts.append(Chart(
        "311-volume", "Requests by month and category", "mart_requests_by_category_month",
        data=[{"month": _month(m), "major_category": c, "requests": n} for m, c, n in volume],
        figure=figures.stacked_bars(months, {c: [cells.get((m, c), 0) for m in months] for c in categories},
                                    "requests") if volume else None,
        empty=None if volume else "No requests in this range.", wide=True))

    season = _all(reading, f"""
        select city, month(month) as month_of_year, sum(requests)::bigint as requests,
               count(distinct year(month)) as years
        from mart_requests_by_category_month where {in_range} group by all order by 1, 2""", **p)
    names = [calendar.month_abbr[m] for m in range(1, 13)]
    by_city: dict[str, list] = {}
    for city, moy, n, years in season:
        by_city.setdefault(city, [None] * 12)[moy - 1] = round(n / years, 1)
    page.charts.append(Chart(
        "311-seasonality", "Seasonality: average requests per calendar month", "mart_requests_by_category_month",
        data=[{"city": c, "month_of_year": m, "requests": n, "years": y, "average": round(n / y, 1)}
              for c, m, n, y in season],
        figure=figures.stacked_bars(names, by_city, "requests per month (average over years)",
                                    x_title="month of year", barmode="group") if season else None,
        empty=None if season else "No requests in this range.",
        note="Each bar averages the selected years' counts for that calendar month." if season else None))

    breakdown = _all(reading, f"""
        select coalesce(major_category, '(unmapped type)'), coalesce(minor_category, '(unmapped type)'),
               sum(requests)::bigint
        from mart_requests_by_category_month where {in_range} group by all order by 3 desc""", **p)
    ids, labels, parents, values, majors = [], [], [], [], {}
    for major, minor, n in breakdown:
        majors[major] = majors.get(major, 0) + n
    for major, n in majors.items():
        ids.append(major), labels.append(major), parents.append(""), values.append(n)
    for major, minor, n in breakdown:
        ids.append(f"{major}/{minor}"), labels.append(minor), parents.append(major), values.append(n)
    page.charts.append(Chart(
        "311-categories", "Category breakdown (major and minor category)", "mart_requests_by_category_month",
        data=[{"major_category": a, "minor_category": b, "requests": n} for a, b, n in breakdown],
        figure=figures.sunburst(ids, labels, parents, values) if breakdown else None,
        empty=None if breakdown else "No requests in this range."))

    if covers_all and "mart_requests_by_area" in reading.tables:
        model = "mart_requests_by_area"
        areas = _all(reading, f"""
            select city, area_system, area, requests from (
                select distinct city, area_system, area, area_requests::bigint as requests from mart_requests_by_area
                where list_contains($cities, city) and area is not null)
            qualify row_number() over (partition by city order by requests desc, area) <= {AREAS_PER_CITY}
            order by city, requests desc, area""", cities=cities)
    else:
        model = "fct_service_requests"
        areas = _all(reading, f"""
            select city, area_system, area, count(*) as requests from fct_service_requests
            where {fact_range} and area is not null group by city, area_system, area
            qualify row_number() over (partition by city order by requests desc, area) <= {AREAS_PER_CITY}
            order by city, requests desc, area""", **p)
    no_area = [c for c in cities if c not in {a[0] for a in areas}]
    page.charts.append(Chart(
        "311-areas", f"Areas with the most requests (top {AREAS_PER_CITY} per city)", model,
        data=[{"city": c, "area_system": s, "area": a, "requests": n} for c, s, a, n in areas],
        figure=figures.ranking([f"{c} · {a}" for c, _, a, _ in areas], [n for *_, n in areas], "requests",
                               hover=[s or "" for _, s, _, _ in areas]) if areas else None,
        empty=None if areas else "No request in this range has an area (Minneapolis publishes points, not areas).",
        note=f"No areas published for: {', '.join(no_area)}." if areas and no_area else None))

    points = _all(reading, f"""
        select city, round(longitude, 5), round(latitude, 5),
               coalesce(request_type, '') || ' · ' || strftime(opened_at, '%Y-%m-%d') || ' · ' || coalesce(status, '')
        from fct_service_requests
        where {fact_range} and longitude is not null and latitude is not null
        qualify row_number() over (partition by city order by hash(request_id)) <= {MAP_POINTS}
        order by city""", **p)
    located = dict((c, (w, n)) for c, w, n in _all(
        reading, f"select city, count(*) filter (where longitude is not null and latitude is not null), count(*) "
                 f"from fct_service_requests where {fact_range} group by city", **p))
    by_city: dict[str, dict[str, list]] = {}
    for city, lon, lat, text in points:
        by_city.setdefault(city, {}).setdefault(city, []).append((lon, lat, text))
    for city in cities:
        with_point, total = located.get(city, (0, 0))
        drawn = len(by_city.get(city, {}).get(city, []))
        if not drawn:
            if total:
                page.notes.append(f"Map: {city} publishes no coordinates ({total:,} requests in the range).")
            continue
        page.charts.append(Chart(
            f"311-map-{city}", f"Where requests were made: {city}", "fct_service_requests",
            data={"points_drawn": drawn, "with_point": with_point, "requests": total},
            figure=figures.point_map(by_city[city]),
            note=f"{drawn:,} of {with_point:,} located requests drawn (a fixed sample); "
                 f"{total - with_point:,} without coordinates."))
    if not by_city:
        page.charts.append(Chart("311-map", "Where requests were made", "fct_service_requests", data={"points_drawn": 0},
                                 empty="No request in this range has coordinates (Toronto publishes wards, not points)."))

    for city in cities:
        chart = _choropleth(reading, city, boundaries, p, fact_range, covers_all)
        if chart is not None:
            page.charts.append(chart)
    area_cities = [c for c, *_ in areas]
    unconfigured = [c for c in dict.fromkeys(area_cities) if boundaries.get(c) is None]
    if unconfigured:
        # the file names, not the server's folder (viewers see this note; operators know CIVIC_BOUNDARIES)
        page.notes.append("Choropleth: drop a boundary GeoJSON ("
                          + ", ".join(boundaries.path(c).name for c in unconfigured)
                          + ") in the boundaries folder (CIVIC_BOUNDARIES) to map requests per area "
                            "(README, Dashboard).")

    closing = _all(reading, f"""
        select city, coalesce(major_category, '(unmapped type)') as category, count(*) as closed,
               quantile_cont(hours_to_close, 0.5) as median_hours, quantile_cont(hours_to_close, 0.9) as p90_hours
        from fct_service_requests where {fact_range} and hours_to_close >= 0
        group by all order by median_hours desc, city, category""", **p)
    page.charts.append(Chart(
        "311-time-to-close", "Hours to close by category (median and 90th percentile)", "fct_service_requests",
        data=[{"city": c, "major_category": k, "closed_requests": n, "median_hours": round(m, 2),
               "p90_hours": round(q, 2)} for c, k, n, m, q in closing],
        figure=_time_to_close_figure(closing) if closing else None,
        empty=None if closing else "No closed requests in this range (Toronto publishes no close date).",
        note="Closed requests opened in the range, with the rule of mart_time_to_close (close not before open)."
        if closing else None))

    if "mart_time_to_close" in reading.tables:
        cohorts = _all(reading, f"""
            select month, city, sum(closed_requests)::bigint,
                   sum(median_hours_to_close * closed_requests) / sum(closed_requests)
            from mart_time_to_close where {in_range} group by all order by 1, 2""", **p)
        series = {}
        for month, city, n, hours in cohorts:
            series.setdefault(city, []).append((month, round(hours, 2)))
        page.charts.append(Chart(
            "311-close-trend", "Median hours to close by month opened", "mart_time_to_close",
            data=[{"month": _month(m), "city": c, "closed_requests": n, "median_hours": round(h, 2)}
                  for m, c, n, h in cohorts],
            figure=figures.lines(series, "hours (median, weighted over categories)") if cohorts else None,
            empty=None if cohorts else "No closed requests in this range.",
            note="Months are cohorts of the month opened: recent months hold only what has closed so far."
            if cohorts else None))
    return page


def _time_to_close_figure(closing: list[tuple]) -> dict:
    labels = [f"{city} · {category}" for city, category, *_ in closing][:TOP]
    medians = [round(m, 1) for *_, m, _ in closing][:TOP]
    extra = [round(q - m, 1) for *_, m, q in closing][:TOP]
    return figures.ranking(labels, medians, "hours",
                           series={"median hours": medians, "to the 90th percentile": extra})


def _choropleth(reading, city: str, boundaries, params: dict, fact_range: str, covers_all: bool) -> Chart | None:
    shapes = boundaries.get(city)
    if shapes is None:
        return None
    counts = _all(reading, f"select area_system, area, count(*) from fct_service_requests "
                           f"where {fact_range} and city = $city and area is not null group by all",
                  **{**params, "city": city})
    by_name: dict[str, int] = {}
    by_system: dict[tuple, int] = {}
    for system, area, n in counts:
        by_name[area] = by_name.get(area, 0) + n
        by_system[(system, area)] = n
    drawn, matched = [], set()
    for shape in shapes.areas:
        value = by_system.get((shape.area_system, shape.area)) if shape.area_system else by_name.get(shape.area)
        if value is not None:
            matched.add((shape.area_system, shape.area) if shape.area_system else shape.area)
        drawn.append((shape.area, [list(r) for r in shape.rings], value))
    unmatched = sorted({a for s, a, _ in counts if (s, a) not in matched and a not in matched})
    notes = list(shapes.errors)
    if unmatched:
        notes.append(f"{len(unmatched)} area(s) with requests have no feature in {shapes.path.name}: "
                     + ", ".join(unmatched[:5]) + ("…" if len(unmatched) > 5 else ""))
    return Chart(
        f"311-choropleth-{city}", f"Requests per area: {city} (boundaries from {shapes.path.name})",
        "fct_service_requests",
        data=[{"area": name, "requests": value} for name, _, value in drawn],
        figure=figures.choropleth(drawn, "requests") if drawn else None,
        empty=None if drawn else f"{shapes.path.name} has no usable feature.",
        note=" ".join(notes) or None, wide=True)


# ---------------------------------------------------------------- street works


def street_works(reading, filters: Filters) -> Page:
    page = Page("street-works", "Street works (England and Scotland)", STREET_WORKS_SOURCES,
                filters.selected(STREET_WORKS_SOURCES))
    if not page.selected:
        return _empty_page(page, "no street-works source selected")
    england = "street_manager" in page.selected and "mart_works_by_month" in reading.tables
    scotland = "srwr" in page.selected and "mart_srwr_activity_summary" in reading.tables
    if not england and not scotland:
        return _empty_page(page, "No street-works data yet: " + (_missing(
            reading, *(["mart_works_by_month"] if "street_manager" in page.selected else [])
            + (["mart_srwr_activity_summary"] if "srwr" in page.selected else [])) or "nothing landed") + ".")
    extents = []
    if england:
        extents.append(_one(reading, "select min(month), max(month) from mart_works_by_month"))
    if scotland:
        extents.append(_one(reading, "select min(month), max(month) from mart_srwr_activity_summary"))
    firsts = [a for a, _ in extents if a is not None]
    lasts = [b for _, b in extents if b is not None]
    if not firsts:
        return _empty_page(page, "No street works landed yet.")
    start, end, _ = _range(page, filters, min(firsts), max(lasts))
    p = {"start": start, "end": end}
    where = "month between $start and $end"

    if england:
        _england(reading, page, p, where)
    elif "street_manager" in page.selected:
        page.notes.append("England (Street Manager): " + (_missing(reading, "mart_works_by_month") or "no data"))
    if scotland:
        _scotland(reading, page, p, where)
    elif "srwr" in page.selected:
        page.notes.append("Scotland (SRWR): " + (_missing(reading, "mart_srwr_activity_summary") or "no data"))
    return page


def _england(reading, page: Page, p: dict, where: str) -> None:
    in_progress, completed, permits = _one(reading, f"""
        select coalesce(sum(works_in_progress), 0)::bigint, coalesce(sum(works_completed), 0)::bigint,
               coalesce(sum(permits), 0)::bigint
        from mart_works_by_month where {where}""", **p)
    page.figures += [("England: permits with events", permits), ("in progress (month-ends)", in_progress),
                     ("completed", completed)]

    monthly = _all(reading, f"""
        select month, sum(works_in_progress)::bigint, sum(works_completed)::bigint
        from mart_works_by_month where {where} group by month order by month""", **p)
    page.charts.append(Chart(
        "works-monthly", "England: permits in progress and completed per month", "mart_works_by_month",
        data=[{"month": _month(m), "works_in_progress": a, "works_completed": b} for m, a, b in monthly],
        figure=figures.stacked_bars([_month(m) for m, *_ in monthly],
                                    {"in progress": [a for _, a, _ in monthly],
                                     "completed": [b for *_, b in monthly]}, "permits", barmode="group")
        if monthly else None,
        empty=None if monthly else "No works in this range.", wide=True))

    for key, label, name_col, code_col in (
            ("authorities", "highway authority", "highway_authority", "highway_authority_swa_code"),
            ("promoters", "promoter", "promoter_organisation", "promoter_swa_code")):
        rows = _all(reading, f"""
            select coalesce({name_col}, {code_col}, '(unknown)') as name, sum(works_in_progress)::bigint as ip,
                   sum(works_completed)::bigint as done
            from mart_works_by_month where {where} group by all
            having sum(works_in_progress) + sum(works_completed) > 0
            order by ip + done desc, name limit {TOP}""", **p)
        page.charts.append(Chart(
            f"works-{key}", f"England: works in progress and completed by {label}", "mart_works_by_month",
            data=[{label.replace(' ', '_'): n, "works_in_progress": a, "works_completed": b} for n, a, b in rows],
            figure=figures.ranking([n for n, *_ in rows], [a + b for _, a, b in rows], "works",
                                   series={"in progress": [a for _, a, _ in rows], "completed": [b for *_, b in rows]})
            if rows else None,
            empty=None if rows else "No works in this range."))

    if "int_permit_months" in reading.tables:
        mix = _all(reading, f"""
            select coalesce(work_category, '(unknown)') as category, count(*) as works
            from int_permit_months
            where not is_test_data and work_status_ref in ('in_progress', 'completed')
              and block_month between $start and $end
            group by all order by works desc, category""", **p)
        page.charts.append(Chart(
            "works-categories", "England: work category mix (works in progress or completed)", "int_permit_months",
            data=[{"work_category": c, "works": n} for c, n in mix],
            figure=figures.donut([c for c, _ in mix], [n for _, n in mix]) if mix else None,
            empty=None if mix else "No works in this range."))

    if "mart_street_impact" in reading.tables:
        streets = _all(reading, f"""
            select usrn, arg_max(street_name, month) as street, arg_max(highway_authority, month) as authority,
                   sum(impact_score) as impact, sum(works)::bigint as works
            from mart_street_impact where {where} group by usrn
            order by impact desc, usrn limit {TOP}""", **p)
        page.charts.append(Chart(
            "works-impact", "England: highest-impact streets (impact score summed over the months)",
            "mart_street_impact",
            data=[{"usrn": u, "street_name": s, "highway_authority": a, "impact_score": round(i, 3), "works": w}
                  for u, s, a, i, w in streets],
            figure=figures.ranking([f"{s or '?'} ({u})" for u, s, *_ in streets], [round(i, 1) for *_, i, _ in streets],
                                   "impact score", hover=[f"{a or ''} · {w} works" for _, _, a, _, w in streets])
            if streets else None,
            empty=None if streets else "No works in this range."))

        points = _all(reading, f"""
            select coalesce(work_category, '(unknown)'), round(longitude, 5), round(latitude, 5),
                   coalesce(street_name, '') || ' · ' || coalesce(promoter_organisation, '') || ' · ' || work_status_ref
            from int_permit_months
            where not is_test_data and work_status_ref in ('in_progress', 'completed')
              and block_month between $start and $end and longitude is not null and latitude is not null
            order by hash(permit_reference_number, _block_month) limit {MAP_POINTS}""", **p)
        page.charts.append(_point_map(
            "works-map", "England: where works were in progress or completed", "int_permit_months", points,
            "No located works in this range."))


def _scotland(reading, page: Page, p: dict, where: str) -> None:
    monthly = _all(reading, f"""
        select month, sum(works_in_progress)::bigint, sum(works_completed)::bigint, sum(works_planned)::bigint,
               sum(restrictions)::bigint, sum(status_unknown)::bigint
        from mart_srwr_activity_summary where {where} group by month order by month""", **p)
    page.figures += [("Scotland: activities", sum(sum(r[1:]) for r in monthly))]
    names = ["in progress", "completed", "planned", "restrictions", "status unknown"]
    page.charts.append(Chart(
        "srwr-monthly", "Scotland: activities per month by status", "mart_srwr_activity_summary",
        data=[{"month": _month(r[0]), **{n.replace(' ', '_'): v for n, v in zip(names, r[1:])}} for r in monthly],
        figure=figures.stacked_bars([_month(r[0]) for r in monthly],
                                    {n: [r[i + 1] for r in monthly] for i, n in enumerate(names)}, "activities")
        if monthly else None,
        empty=None if monthly else "No Scottish activities in this range."))
    authorities = _all(reading, f"""
        select coalesce(roads_authority, roads_authority_key, '(unknown)') as name, sum(activities)::bigint as n
        from mart_srwr_activity_summary where {where} group by name
        order by n desc, name limit {TOP}""", **p)
    page.charts.append(Chart(
        "srwr-authorities", "Scotland: activities by roads authority", "mart_srwr_activity_summary",
        data=[{"roads_authority": a, "activities": n} for a, n in authorities],
        figure=figures.ranking([a for a, _ in authorities], [n for _, n in authorities], "activities")
        if authorities else None,
        empty=None if authorities else "No Scottish activities in this range."))


# ---------------------------------------------------------------- mobility


def mobility(reading, filters: Filters) -> Page:
    """MDS trips: trips per day by provider, by council district, distance and duration
    distributions, vehicles deployed per hour, sanity-rule failures and a map of trip starts. The
    page's "sources" are the MDS providers (one registered source, several operators)."""
    providers = []
    if "mart_mobility_trips_daily" in reading.tables:
        providers = [p for (p,) in _all(reading, "select distinct provider from mart_mobility_trips_daily order by 1")]
    page = Page("mobility", "Mobility (dockless scooters and bikes, MDS)", providers, filters.selected(providers))
    missing = _missing(reading, "fct_mobility_trips", "mart_mobility_trips_daily")
    if missing:
        return _empty_page(page, f"No mobility data yet: {missing}.")
    if not providers:
        return _empty_page(page, "No trips landed yet.")
    if not page.selected:
        return _empty_page(page, "no provider selected")
    first, last = _one(reading, "select min(date_trunc('month', trip_date))::date, max(date_trunc('month', trip_date))::date "
                                "from mart_mobility_trips_daily where list_contains($providers, provider)",
                       providers=page.selected)
    start, end, _ = _range(page, filters, first, last)
    p = {"providers": page.selected, "start": start, "end": end}
    where = "list_contains($providers, provider) and date_trunc('month', trip_date) between $start and $end"

    trips, failing, distance, duration = _one(reading, f"""
        select count(*), count(*) filter (where fails_sanity_rules), median(distance_miles), median(duration_seconds) / 60
        from fct_mobility_trips where {where}""", **p)
    page.figures = [("trips", trips), ("median distance (miles)", round(distance, 2) if distance is not None else None),
                    ("median duration (minutes)", round(duration, 1) if duration is not None else None),
                    ("trips failing sanity rules", failing)]

    daily = _all(reading, f"""
        select provider, trip_date, sum(trips)::bigint from mart_mobility_trips_daily where {where}
        group by all order by 1, 2""", **p)
    series: dict[str, list] = {}
    for provider, day, n in daily:
        series.setdefault(provider, []).append((day, n))
    page.charts.append(Chart(
        "mobility-daily", "Trips per day by provider", "mart_mobility_trips_daily",
        data=[{"provider": pr, "trip_date": d.isoformat(), "trips": n} for pr, d, n in daily],
        figure=figures.daily_lines(series, "trips") if daily else None,
        empty=None if daily else "No trips in this range.", wide=True))

    districts = _all(reading, f"""
        select coalesce(council_district, '(outside every district)') as district, provider, sum(trips)::bigint
        from mart_mobility_trips_daily where {where} group by all order by 1, 2""", **p)
    totals: dict[str, int] = {}
    for district, _, n in districts:
        totals[district] = totals.get(district, 0) + n
    ordered = sorted(totals, key=lambda d: (-totals[d], d))
    cells = {(d, pr): n for d, pr, n in districts}
    page.charts.append(Chart(
        "mobility-districts", "Trips by start council district", "mart_mobility_trips_daily",
        data=[{"council_district": d, "provider": pr, "trips": n} for d, pr, n in districts],
        figure=figures.ranking([f"district {d}" if d[0] != "(" else d for d in ordered], [totals[d] for d in ordered],
                               "trips", series={pr: [cells.get((d, pr), 0) for d in ordered] for pr in page.selected})
        if districts else None,
        empty=None if districts else "No trips in this range."))

    for key, title, column, width, unit in (
            ("distance", "Trip distance distribution", "distance_miles", 0.25, "miles"),
            ("duration", "Trip duration distribution", "duration_seconds / 60.0", 2.0, "minutes")):
        cap = _one(reading, f"select quantile_cont({column}, 0.99) from fct_mobility_trips where {where}", **p)[0]
        bins = _all(reading, f"""
            select provider, floor(least({column}, $cap) / $width) * $width as bin, count(*)
            from fct_mobility_trips where {where} and {column} is not null and {column} >= 0
            group by all order by 1, 2""", **p, cap=cap or 0, width=width)
        groups: dict[str, list] = {}
        for provider, b, n in bins:
            groups.setdefault(provider, []).append((float(b), n))
        page.charts.append(Chart(
            f"mobility-{key}", f"{title} ({unit})", "fct_mobility_trips",
            data=[{"provider": pr, "bin_start": float(b), "bin_width": width, "trips": n} for pr, b, n in bins],
            figure=figures.histogram(groups, width, unit) if bins else None,
            empty=None if bins else "No trips in this range.",
            note=f"Bins of {width:g} {unit}; trips beyond the 99th percentile ({cap:,.1f} {unit}) in the last bin."
            if bins and cap is not None else None))

    if "mart_mobility_vehicles_hourly" in reading.tables:
        hourly = _all(reading, f"""
            select provider, hour_start, vehicles_deployed from mart_mobility_vehicles_hourly
            where list_contains($providers, provider)
              and date_trunc('month', timezone('America/Chicago', hour_start)) between $start and $end
            order by 1, 2""", **p)
        series = {}
        for provider, hour, n in hourly:
            series.setdefault(provider, []).append((hour, n))
        page.charts.append(Chart(
            "mobility-vehicles", "Vehicles deployed per hour", "mart_mobility_vehicles_hourly",
            data={"hours": len(hourly), "max_by_provider": {pr: max(n for _, n in pts) for pr, pts in series.items()}},
            figure=figures.daily_lines(series, "vehicles", x_title="hour (UTC)") if hourly else None,
            empty=None if hourly else "No vehicle events in this range.",
            note="Only events that identify their vehicle count (MDS 0.4 status changes often do not)."
            if hourly else None, wide=True))

    if "mart_mobility_trip_sanity" in reading.tables:
        sanity = _all(reading, """
            select provider, sum(trips)::bigint, sum(trips_over_24_hours)::bigint, sum(trips_over_500_miles)::bigint,
                   sum(trips_zero_span_with_duration)::bigint, sum(trips_same_location_with_duration)::bigint,
                   sum(trips_failing)::bigint
            from mart_mobility_trip_sanity
            where list_contains($providers, provider) and block_month between strftime($start, '%Y-%m') and strftime($end, '%Y-%m')
            group by provider order by provider""", **p)
        rules = ["over 24 hours", "over 500 miles", "zero time span", "same start and end point"]
        page.charts.append(Chart(
            "mobility-sanity", "Trips failing the sanity rules (by landed month)", "mart_mobility_trip_sanity",
            data=[{"provider": r[0], "trips": r[1], **{k.replace(' ', '_'): v for k, v in zip(rules, r[2:6])},
                   "trips_failing": r[6]} for r in sanity],
            figure=figures.stacked_bars([r[0] for r in sanity], {k: [r[i + 2] for r in sanity] for i, k in enumerate(rules)},
                                        "trips", x_title="provider", barmode="group")
            if any(r[6] for r in sanity) else None,
            empty=None if any(r[6] for r in sanity) else
            (f"No trip fails a sanity rule in this range ({sum(r[1] for r in sanity):,} trips checked)."
             if sanity else "No landed blocks in this range.")))

    points = _all(reading, f"""
        select provider, round(start_lon, 5), round(start_lat, 5),
               strftime(start_time_local, '%Y-%m-%d %H:%M') || ' · ' || coalesce(round(distance_miles, 2)::varchar, '?') || ' mi'
        from fct_mobility_trips where {where} and start_lon is not null and start_lat is not null
        order by hash(provider, trip_id) limit {MAP_POINTS}""", **p)
    page.charts.append(_point_map("mobility-map", "Where trips started", "fct_mobility_trips", points,
                                  "No located trips in this range."))
    return page


# ---------------------------------------------------------------- health of the warehouse itself


def table_counts(reading, tables: list[str]) -> dict[str, int | None]:
    counts = {}
    for table in tables:
        counts[table] = _one(reading, f'select count(*) from "{table}"')[0] if table in reading.tables else None
    return counts
