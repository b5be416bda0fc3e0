"""The Crime page: offences by month, category and area, and where they happened (``fct_crime_offenses``
and its marts).
"""

from __future__ import annotations

from civic_pipelines.dashboard import figures
from civic_pipelines.dashboard.pages import common
from civic_pipelines.dashboard.pages.common import Filters, Page


def crime(reading, filters: Filters) -> Page:
    page = Page("crime", "Crime (Seattle)", common.CRIME_SOURCES, filters.selected(common.CRIME_SOURCES))
    missing = common.not_built(reading, "fct_crime_offenses", "mart_crime_monthly")
    if not page.selected:
        return common.empty_page(page, "no crime source selected")
    if missing:
        return common.empty_page(page, f"No crime data yet: {missing}.")
    first, last = common.row(reading, "select min(report_month), max(report_month) from mart_crime_monthly")
    if first is None:
        return common.empty_page(page, "No offenses landed yet.")
    start, end, covers_all = common.month_range(page, filters, first, last)
    where = "report_month between $start and $end"
    p = {"start": start, "end": end}

    total, person, property_ = common.row(
        reading,
        f"""
        select coalesce(sum(offenses), 0),
               coalesce(sum(offenses) filter (where crime_against_category = 'PERSON'), 0),
               coalesce(sum(offenses) filter (where crime_against_category = 'PROPERTY'), 0)
        from mart_crime_monthly where {where}""",
        **p,
    )
    page.figures = [
        ("offenses", int(total)),
        ("against persons (violent)", int(person)),
        ("against property", int(property_)),
    ]

    trend = common.rows(
        reading,
        f"""
        select report_month, coalesce(crime_against_category, 'UNKNOWN') as category, sum(offenses)::bigint
        from mart_crime_monthly where {where} group by all order by 1, 2""",
        **p,
    )
    series = common.grouped([(category, month, n) for month, category, n in trend])
    order = ["PERSON", "PROPERTY", "SOCIETY", "NOT_A_CRIME", "UNKNOWN"]
    series = {k: series[k] for k in sorted(series, key=lambda c: order.index(c) if c in order else 99)}
    page.charts.append(
        common.chart(
            "crime-trend",
            "Violent (PERSON) vs property offenses by month",
            "mart_crime_monthly",
            trend,
            "No offenses in this range.",
            data=[{"month": common.month_text(m), "category": c, "offenses": n} for m, c, n in trend],
            draw=lambda: figures.lines(series, "offenses"),
            wide=True,
        )
    )

    if covers_all and "mart_crime_by_area" in reading.tables:
        model, areas = (
            "mart_crime_by_area",
            common.rows(
                reading,
                f"""
            select precinct, sector, beat, offenses from mart_crime_by_area
            order by offenses desc, precinct nulls last, sector nulls last, beat nulls last limit {common.TOP}""",
            ),
        )
    else:
        model, areas = (
            "fct_crime_offenses",
            common.rows(
                reading,
                f"""
            select precinct, sector, beat, count(*) as offenses from fct_crime_offenses where {where}
            group by all order by offenses desc, precinct nulls last, sector nulls last, beat nulls last
            limit {common.TOP}""",
                **p,
            ),
        )
    labels = [f"{pr or '?'} / {se or '?'} / {be or 'no beat'}" for pr, se, be, _ in areas]
    page.charts.append(
        common.chart(
            "crime-areas",
            "Beats with the most offenses (precinct / sector / beat)",
            model,
            areas,
            "No offenses in this range.",
            data=[{"precinct": pr, "sector": se, "beat": be, "offenses": n} for pr, se, be, n in areas],
            draw=lambda: figures.ranking(labels, [n for *_, n in areas], "offenses"),
        )
    )

    offenses = common.rows(
        reading,
        f"""
        select coalesce(offense_parent_group, '(unknown group)') as offense_group, count(*) as offenses
        from fct_crime_offenses where {where} group by all order by offenses desc, offense_group limit {common.TOP}""",
        **p,
    )
    page.charts.append(
        common.ranking(
            "crime-offenses",
            "Offenses by NIBRS offense group",
            "fct_crime_offenses",
            offenses,
            ("offense_group", "offenses"),
            "No offenses in this range.",
        )
    )

    points = common.rows(
        reading,
        f"""
        select coalesce(crime_against_category, 'UNKNOWN'), round(longitude, 5), round(latitude, 5),
               coalesce(offense, '') || ' · ' || coalesce(block_address, '') || ' · ' || strftime(report_datetime, '%Y-%m-%d')
        from fct_crime_offenses
        where {where} and longitude is not null and latitude is not null
        order by hash(offense_id) limit {common.MAP_POINTS}""",
        **p,
    )
    with_point = common.row(
        reading,
        f"select count(*) filter (where longitude is not null), count(*) from fct_crime_offenses where {where}",
        **p,
    )
    page.charts.append(
        common.point_map(
            "crime-map",
            "Where offenses were reported",
            "fct_crime_offenses",
            points,
            "No offense in this range has a location.",
            data={"offenses_with_point": with_point[0], "offenses": with_point[1]},
            note=f"{len(points):,} of {with_point[0]:,} located offenses drawn (a fixed sample); "
            f"{with_point[1] - with_point[0]:,} have no published location.",
        )
    )
    return page
