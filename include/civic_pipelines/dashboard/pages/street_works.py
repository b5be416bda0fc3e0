"""The Street works page: England's Street Manager permits and Scotland's SRWR activities, each
section shown when its source is selected (the ``street_works`` marts).
"""

from __future__ import annotations

from civic_pipelines.dashboard import figures
from civic_pipelines.dashboard.pages import common
from civic_pipelines.dashboard.pages.common import Filters, Page


def street_works(reading, filters: Filters) -> Page:
    page = Page(
        "street-works",
        "Street works (England and Scotland)",
        common.STREET_WORKS_SOURCES,
        filters.selected(common.STREET_WORKS_SOURCES),
    )
    if not page.selected:
        return common.empty_page(page, "no street-works source selected")
    england = "street_manager" in page.selected and "mart_works_by_month" in reading.tables
    scotland = "srwr" in page.selected and "mart_srwr_activity_summary" in reading.tables
    if not england and not scotland:
        return common.empty_page(
            page,
            "No street-works data yet: "
            + (
                common.not_built(
                    reading,
                    *(["mart_works_by_month"] if "street_manager" in page.selected else [])
                    + (["mart_srwr_activity_summary"] if "srwr" in page.selected else []),
                )
                or "nothing landed"
            )
            + ".",
        )
    extents = []
    if england:
        extents.append(common.row(reading, "select min(month), max(month) from mart_works_by_month"))
    if scotland:
        extents.append(common.row(reading, "select min(month), max(month) from mart_srwr_activity_summary"))
    firsts = [a for a, _ in extents if a is not None]
    lasts = [b for _, b in extents if b is not None]
    if not firsts:
        return common.empty_page(page, "No street works landed yet.")
    start, end, _ = common.month_range(page, filters, min(firsts), max(lasts))
    p = {"start": start, "end": end}
    where = "month between $start and $end"

    if england:
        _england(reading, page, p, where)
    elif "street_manager" in page.selected:
        page.notes.append(
            "England (Street Manager): " + (common.not_built(reading, "mart_works_by_month") or "no data")
        )
    if scotland:
        _scotland(reading, page, p, where)
    elif "srwr" in page.selected:
        page.notes.append("Scotland (SRWR): " + (common.not_built(reading, "mart_srwr_activity_summary") or "no data"))
    return page


def _england(reading, page: Page, p: dict, where: str) -> None:
    in_progress, completed, permits = common.row(
        reading,
        f"""
        select coalesce(sum(works_in_progress), 0)::bigint, coalesce(sum(works_completed), 0)::bigint,
               coalesce(sum(permits), 0)::bigint
        from mart_works_by_month where {where}""",
        **p,
    )
    page.figures += [
        ("England: permits with events", permits),
        ("in progress (month-ends)", in_progress),
        ("completed", completed),
    ]

    monthly = common.rows(
        reading,
        f"""
        select month, sum(works_in_progress)::bigint, sum(works_completed)::bigint
        from mart_works_by_month where {where} group by month order by month""",
        **p,
    )
    page.charts.append(
        common.monthly_bars(
            "works-monthly",
            "England: permits in progress and completed per month",
            "mart_works_by_month",
            monthly,
            {"works_in_progress": "in progress", "works_completed": "completed"},
            "permits",
            "No works in this range.",
            wide=True,
            barmode="group",
        )
    )

    for key, label, name_col, code_col in (
        ("authorities", "highway authority", "highway_authority", "highway_authority_swa_code"),
        ("promoters", "promoter", "promoter_organisation", "promoter_swa_code"),
    ):
        rows = common.rows(
            reading,
            f"""
            select coalesce({name_col}, {code_col}, '(unknown)') as name, sum(works_in_progress)::bigint as ip,
                   sum(works_completed)::bigint as done
            from mart_works_by_month where {where} group by all
            having sum(works_in_progress) + sum(works_completed) > 0
            order by ip + done desc, name limit {common.TOP}""",
            **p,
        )
        page.charts.append(
            common.chart(
                f"works-{key}",
                f"England: works in progress and completed by {label}",
                "mart_works_by_month",
                rows,
                "No works in this range.",
                data=[{label.replace(" ", "_"): n, "works_in_progress": a, "works_completed": b} for n, a, b in rows],
                draw=lambda: figures.ranking(
                    [n for n, *_ in rows],
                    [a + b for _, a, b in rows],
                    "works",
                    series={"in progress": [a for _, a, _ in rows], "completed": [b for *_, b in rows]},
                ),
            )
        )

    if "int_permit_months" in reading.tables:
        mix = common.rows(
            reading,
            """
            select coalesce(work_category, '(unknown)') as category, count(*) as works
            from int_permit_months
            where not is_test_data and work_status_ref in ('in_progress', 'completed')
              and block_month between $start and $end
            group by all order by works desc, category""",
            **p,
        )
        page.charts.append(
            common.chart(
                "works-categories",
                "England: work category mix (works in progress or completed)",
                "int_permit_months",
                mix,
                "No works in this range.",
                data=[{"work_category": c, "works": n} for c, n in mix],
                draw=lambda: figures.donut([c for c, _ in mix], [n for _, n in mix]),
            )
        )

    if "mart_street_impact" in reading.tables:
        streets = common.rows(
            reading,
            f"""
            select usrn, arg_max(street_name, month) as street, arg_max(highway_authority, month) as authority,
                   sum(impact_score) as impact, sum(works)::bigint as works
            from mart_street_impact where {where} group by usrn
            order by impact desc, usrn limit {common.TOP}""",
            **p,
        )
        page.charts.append(
            common.chart(
                "works-impact",
                "England: highest-impact streets (impact score summed over the months)",
                "mart_street_impact",
                streets,
                "No works in this range.",
                data=[
                    {"usrn": u, "street_name": s, "highway_authority": a, "impact_score": round(i, 3), "works": w}
                    for u, s, a, i, w in streets
                ],
                draw=lambda: figures.ranking(
                    [f"{s or '?'} ({u})" for u, s, *_ in streets],
                    [round(i, 1) for *_, i, _ in streets],
                    "impact score",
                    hover=[f"{a or ''} · {w} works" for _, _, a, _, w in streets],
                ),
            )
        )

        points = common.rows(
            reading,
            f"""
            select coalesce(work_category, '(unknown)'), round(longitude, 5), round(latitude, 5),
                   coalesce(street_name, '') || ' · ' || coalesce(promoter_organisation, '') || ' · ' || work_status_ref
            from int_permit_months
            where not is_test_data and work_status_ref in ('in_progress', 'completed')
              and block_month between $start and $end and longitude is not null and latitude is not null
            order by hash(permit_reference_number, _block_month) limit {common.MAP_POINTS}""",
            **p,
        )
        page.charts.append(
            common.point_map(
                "works-map",
                "England: where works were in progress or completed",
                "int_permit_months",
                points,
                "No located works in this range.",
            )
        )


def _scotland(reading, page: Page, p: dict, where: str) -> None:
    monthly = common.rows(
        reading,
        f"""
        select month, sum(works_in_progress)::bigint, sum(works_completed)::bigint, sum(works_planned)::bigint,
               sum(restrictions)::bigint, sum(status_unknown)::bigint
        from mart_srwr_activity_summary where {where} group by month order by month""",
        **p,
    )
    page.figures += [("Scotland: activities", sum(sum(r[1:]) for r in monthly))]
    statuses = ["in progress", "completed", "planned", "restrictions", "status unknown"]
    page.charts.append(
        common.monthly_bars(
            "srwr-monthly",
            "Scotland: activities per month by status",
            "mart_srwr_activity_summary",
            monthly,
            {status.replace(" ", "_"): status for status in statuses},
            "activities",
            "No Scottish activities in this range.",
        )
    )
    authorities = common.rows(
        reading,
        f"""
        select coalesce(roads_authority, roads_authority_key, '(unknown)') as name, sum(activities)::bigint as n
        from mart_srwr_activity_summary where {where} group by name
        order by n desc, name limit {common.TOP}""",
        **p,
    )
    page.charts.append(
        common.ranking(
            "srwr-authorities",
            "Scotland: activities by roads authority",
            "mart_srwr_activity_summary",
            authorities,
            ("roads_authority", "activities"),
            "No Scottish activities in this range.",
        )
    )
