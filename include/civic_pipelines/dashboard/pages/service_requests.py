"""The 311 page: every registered ``<city>_311`` source's requests by month, category and area, time to
close, and a choropleth per city that has boundaries (``fct_service_requests`` and its marts).
"""

from __future__ import annotations

import calendar

from civic_pipelines.dashboard import figures
from civic_pipelines.dashboard.pages import common
from civic_pipelines.dashboard.pages.common import Chart, Filters, Page


def service_requests(reading, filters: Filters, registered: list[str], boundaries) -> Page:
    options = common.service_request_sources(registered)
    page = Page("311", "311 service requests", options, filters.selected(options))
    cities = [common.city_of(s) for s in page.selected]
    if not cities:
        return common.empty_page(page, "no 311 source selected")
    missing = common.not_built(reading, "fct_service_requests", "mart_requests_by_category_month")
    if missing:
        return common.empty_page(page, f"No 311 data yet: {missing}.")
    p0 = {"cities": cities}
    first, last = common.row(
        reading,
        "select min(month), max(month) from mart_requests_by_category_month where list_contains($cities, city)",
        **p0,
    )
    if first is None:
        return common.empty_page(page, f"No requests landed yet for {', '.join(cities)}.")
    start, end, covers_all = common.month_range(page, filters, first, last)
    p = {"cities": cities, "start": start, "end": end}
    in_range = "list_contains($cities, city) and month between $start and $end"
    fact_range = "list_contains($cities, city) and opened_month between $start and $end"

    per_city = common.rows(
        reading,
        f"select city, sum(requests)::bigint from mart_requests_by_category_month "
        f"where {in_range} group by city order by city",
        **p,
    )
    page.figures = [("requests", sum(n for _, n in per_city))] + [(f"{c}", n) for c, n in per_city]

    volume = common.rows(
        reading,
        f"""
        select month, coalesce(major_category, '(unmapped type)') as category, sum(requests)::bigint
        from mart_requests_by_category_month where {in_range} group by all order by 1, 2""",
        **p,
    )
    months = sorted({common.month_text(m) for m, _, _ in volume})
    totals: dict[str, int] = {}
    for _, category, n in volume:
        totals[category] = totals.get(category, 0) + n
    categories = sorted(totals, key=lambda c: -totals[c])
    cells = {(common.month_text(m), c): n for m, c, n in volume}
    page.charts.append(
        common.chart(
            "311-volume",
            "Requests by month and category",
            "mart_requests_by_category_month",
            volume,
            "No requests in this range.",
            data=[{"month": common.month_text(m), "major_category": c, "requests": n} for m, c, n in volume],
            draw=lambda: figures.stacked_bars(
                months, {c: [cells.get((m, c), 0) for m in months] for c in categories}, "requests"
            ),
            wide=True,
        )
    )

    season = common.rows(
        reading,
        f"""
        select city, month(month) as month_of_year, sum(requests)::bigint as requests,
               count(distinct year(month)) as years
        from mart_requests_by_category_month where {in_range} group by all order by 1, 2""",
        **p,
    )
    names = [calendar.month_abbr[m] for m in range(1, 13)]
    by_city: dict[str, list] = {}
    for city, moy, n, years in season:
        by_city.setdefault(city, [None] * 12)[moy - 1] = round(n / years, 1)
    page.charts.append(
        common.chart(
            "311-seasonality",
            "Seasonality: average requests per calendar month",
            "mart_requests_by_category_month",
            season,
            "No requests in this range.",
            data=[
                {"city": c, "month_of_year": m, "requests": n, "years": y, "average": round(n / y, 1)}
                for c, m, n, y in season
            ],
            draw=lambda: figures.stacked_bars(
                names, by_city, "requests per month (average over years)", x_title="month of year", barmode="group"
            ),
            note="Each bar averages the selected years' counts for that calendar month.",
        )
    )

    breakdown = common.rows(
        reading,
        f"""
        select coalesce(major_category, '(unmapped type)'), coalesce(minor_category, '(unmapped type)'),
               sum(requests)::bigint
        from mart_requests_by_category_month where {in_range} group by all order by 3 desc""",
        **p,
    )
    ids, labels, parents, values, majors = [], [], [], [], {}
    for major, _minor, n in breakdown:
        majors[major] = majors.get(major, 0) + n
    for major, n in majors.items():
        ids.append(major), labels.append(major), parents.append(""), values.append(n)
    for major, minor, n in breakdown:
        ids.append(f"{major}/{minor}"), labels.append(minor), parents.append(major), values.append(n)
    page.charts.append(
        common.chart(
            "311-categories",
            "Category breakdown (major and minor category)",
            "mart_requests_by_category_month",
            breakdown,
            "No requests in this range.",
            data=[{"major_category": a, "minor_category": b, "requests": n} for a, b, n in breakdown],
            draw=lambda: figures.sunburst(ids, labels, parents, values),
        )
    )

    if covers_all and "mart_requests_by_area" in reading.tables:
        model = "mart_requests_by_area"
        areas = common.rows(
            reading,
            f"""
            select city, area_system, area, requests from (
                select distinct city, area_system, area, area_requests::bigint as requests from mart_requests_by_area
                where list_contains($cities, city) and area is not null)
            qualify row_number() over (partition by city order by requests desc, area) <= {common.AREAS_PER_CITY}
            order by city, requests desc, area""",
            cities=cities,
        )
    else:
        model = "fct_service_requests"
        areas = common.rows(
            reading,
            f"""
            select city, area_system, area, count(*) as requests from fct_service_requests
            where {fact_range} and area is not null group by city, area_system, area
            qualify row_number() over (partition by city order by requests desc, area) <= {common.AREAS_PER_CITY}
            order by city, requests desc, area""",
            **p,
        )
    no_area = [c for c in cities if c not in {a[0] for a in areas}]
    page.charts.append(
        common.chart(
            "311-areas",
            f"Areas with the most requests (top {common.AREAS_PER_CITY} per city)",
            model,
            areas,
            "No request in this range has an area (Minneapolis publishes points, not areas).",
            data=[{"city": c, "area_system": s, "area": a, "requests": n} for c, s, a, n in areas],
            draw=lambda: figures.ranking(
                [f"{c} · {a}" for c, _, a, _ in areas],
                [n for *_, n in areas],
                "requests",
                hover=[s or "" for _, s, _, _ in areas],
            ),
            note=f"No areas published for: {', '.join(no_area)}." if no_area else None,
        )
    )

    points = common.rows(
        reading,
        f"""
        select city, round(longitude, 5), round(latitude, 5),
               coalesce(request_type, '') || ' · ' || strftime(opened_at, '%Y-%m-%d') || ' · ' || coalesce(status, '')
        from fct_service_requests
        where {fact_range} and longitude is not null and latitude is not null
        qualify row_number() over (partition by city order by hash(request_id)) <= {common.MAP_POINTS}
        order by city""",
        **p,
    )
    located = dict(
        (c, (w, n))
        for c, w, n in common.rows(
            reading,
            f"select city, count(*) filter (where longitude is not null and latitude is not null), count(*) "
            f"from fct_service_requests where {fact_range} group by city",
            **p,
        )
    )
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
        page.charts.append(
            Chart(
                f"311-map-{city}",
                f"Where requests were made: {city}",
                "fct_service_requests",
                data={"points_drawn": drawn, "with_point": with_point, "requests": total},
                figure=figures.point_map(by_city[city]),
                note=f"{drawn:,} of {with_point:,} located requests drawn (a fixed sample); "
                f"{total - with_point:,} without coordinates.",
            )
        )
    if not by_city:
        page.charts.append(
            Chart(
                "311-map",
                "Where requests were made",
                "fct_service_requests",
                data={"points_drawn": 0},
                empty="No request in this range has coordinates (Toronto publishes wards, not points).",
            )
        )

    for city in cities:
        chart = _choropleth(reading, city, boundaries, p, fact_range, covers_all)
        if chart is not None:
            page.charts.append(chart)
    area_cities = [c for c, *_ in areas]
    unconfigured = [c for c in dict.fromkeys(area_cities) if boundaries.get(c) is None]
    if unconfigured:
        # the file names, not the server's folder (viewers see this note; operators know CIVIC_BOUNDARIES)
        page.notes.append(
            "Choropleth: drop a boundary GeoJSON ("
            + ", ".join(boundaries.path(c).name for c in unconfigured)
            + ") in the boundaries folder (CIVIC_BOUNDARIES) to map requests per area "
            "(README, Dashboard)."
        )

    closing = common.rows(
        reading,
        f"""
        select city, coalesce(major_category, '(unmapped type)') as category, count(*) as closed,
               quantile_cont(hours_to_close, 0.5) as median_hours, quantile_cont(hours_to_close, 0.9) as p90_hours
        from fct_service_requests where {fact_range} and hours_to_close >= 0
        group by all order by median_hours desc, city, category""",
        **p,
    )
    page.charts.append(
        common.chart(
            "311-time-to-close",
            "Hours to close by category (median and 90th percentile)",
            "fct_service_requests",
            closing,
            "No closed requests in this range (Toronto publishes no close date).",
            data=[
                {
                    "city": c,
                    "major_category": k,
                    "closed_requests": n,
                    "median_hours": round(m, 2),
                    "p90_hours": round(q, 2),
                }
                for c, k, n, m, q in closing
            ],
            draw=lambda: _time_to_close_figure(closing),
            note="Closed requests opened in the range, with the rule of mart_time_to_close (close not before open).",
        )
    )

    if "mart_time_to_close" in reading.tables:
        cohorts = common.rows(
            reading,
            f"""
            select month, city, sum(closed_requests)::bigint,
                   sum(median_hours_to_close * closed_requests) / sum(closed_requests)
            from mart_time_to_close where {in_range} group by all order by 1, 2""",
            **p,
        )
        series = common.grouped([(city, month, round(hours, 2)) for month, city, _n, hours in cohorts])
        page.charts.append(
            common.chart(
                "311-close-trend",
                "Median hours to close by month opened",
                "mart_time_to_close",
                cohorts,
                "No closed requests in this range.",
                data=[
                    {"month": common.month_text(m), "city": c, "closed_requests": n, "median_hours": round(h, 2)}
                    for m, c, n, h in cohorts
                ],
                draw=lambda: figures.lines(series, "hours (median, weighted over categories)"),
                note="Months are cohorts of the month opened: recent months hold only what has closed so far.",
            )
        )
    return page


def _time_to_close_figure(closing: list[tuple]) -> dict:
    labels = [f"{city} · {category}" for city, category, *_ in closing][: common.TOP]
    medians = [round(m, 1) for *_, m, _ in closing][: common.TOP]
    extra = [round(q - m, 1) for *_, m, q in closing][: common.TOP]
    return figures.ranking(labels, medians, "hours", series={"median hours": medians, "to the 90th percentile": extra})


def _choropleth(reading, city: str, boundaries, params: dict, fact_range: str, covers_all: bool) -> Chart | None:
    shapes = boundaries.get(city)
    if shapes is None:
        return None
    counts = common.rows(
        reading,
        f"select area_system, area, count(*) from fct_service_requests "
        f"where {fact_range} and city = $city and area is not null group by all",
        **{**params, "city": city},
    )
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
        notes.append(
            f"{len(unmatched)} area(s) with requests have no feature in {shapes.path.name}: "
            + ", ".join(unmatched[:5])
            + ("…" if len(unmatched) > 5 else "")
        )
    return Chart(
        f"311-choropleth-{city}",
        f"Requests per area: {city} (boundaries from {shapes.path.name})",
        "fct_service_requests",
        data=[{"area": name, "requests": value} for name, _, value in drawn],
        figure=figures.choropleth(drawn, "requests") if drawn else None,
        empty=None if drawn else f"{shapes.path.name} has no usable feature.",
        note=" ".join(notes) or None,
        wide=True,
    )
