"""The Mobility page: dockless trips per provider, month and district, trip statistics and where trips
started (``fct_mobility_trips`` and its marts).
"""

from __future__ import annotations

from civic_pipelines.dashboard import figures
from civic_pipelines.dashboard.pages import common
from civic_pipelines.dashboard.pages.common import Chart, Filters, Page


def mobility(reading, filters: Filters) -> Page:
    """MDS trips: trips per day by provider, by council district, distance and duration
    distributions, vehicles deployed per hour, sanity-rule failures and a map of trip starts. The
    page's "sources" are the MDS providers (one registered source, several operators)."""
    providers = []
    if "mart_mobility_trips_daily" in reading.tables:
        providers = [
            p for (p,) in common.rows(reading, "select distinct provider from mart_mobility_trips_daily order by 1")
        ]
    page = Page("mobility", "Mobility (dockless scooters and bikes, MDS)", providers, filters.selected(providers))
    missing = common.not_built(reading, "fct_mobility_trips", "mart_mobility_trips_daily")
    if missing:
        return common.empty_page(page, f"No mobility data yet: {missing}.")
    if not providers:
        return common.empty_page(page, "No trips landed yet.")
    if not page.selected:
        return common.empty_page(page, "no provider selected")
    first, last = common.row(
        reading,
        "select min(date_trunc('month', trip_date))::date, max(date_trunc('month', trip_date))::date "
        "from mart_mobility_trips_daily where list_contains($providers, provider)",
        providers=page.selected,
    )
    start, end, _ = common.month_range(page, filters, first, last)
    p = {"providers": page.selected, "start": start, "end": end}
    where = "list_contains($providers, provider) and date_trunc('month', trip_date) between $start and $end"

    trips, failing, distance, duration = common.row(
        reading,
        f"""
        select count(*), count(*) filter (where fails_sanity_rules), median(distance_miles), median(duration_seconds) / 60
        from fct_mobility_trips where {where}""",
        **p,
    )
    page.figures = [
        ("trips", trips),
        ("median distance (miles)", round(distance, 2) if distance is not None else None),
        ("median duration (minutes)", round(duration, 1) if duration is not None else None),
        ("trips failing sanity rules", failing),
    ]

    daily = common.rows(
        reading,
        f"""
        select provider, trip_date, sum(trips)::bigint from mart_mobility_trips_daily where {where}
        group by all order by 1, 2""",
        **p,
    )
    series = common.grouped(daily)
    page.charts.append(
        common.chart(
            "mobility-daily",
            "Trips per day by provider",
            "mart_mobility_trips_daily",
            daily,
            "No trips in this range.",
            data=[{"provider": pr, "trip_date": d.isoformat(), "trips": n} for pr, d, n in daily],
            draw=lambda: figures.daily_lines(series, "trips"),
            wide=True,
        )
    )

    districts = common.rows(
        reading,
        f"""
        select coalesce(council_district, '(outside every district)') as district, provider, sum(trips)::bigint
        from mart_mobility_trips_daily where {where} group by all order by 1, 2""",
        **p,
    )
    totals: dict[str, int] = {}
    for district, _, n in districts:
        totals[district] = totals.get(district, 0) + n
    ordered = sorted(totals, key=lambda d: (-totals[d], d))
    cells = {(d, pr): n for d, pr, n in districts}
    page.charts.append(
        common.chart(
            "mobility-districts",
            "Trips by start council district",
            "mart_mobility_trips_daily",
            districts,
            "No trips in this range.",
            data=[{"council_district": d, "provider": pr, "trips": n} for d, pr, n in districts],
            draw=lambda: figures.ranking(
                [f"district {d}" if d[0] != "(" else d for d in ordered],
                [totals[d] for d in ordered],
                "trips",
                series={pr: [cells.get((d, pr), 0) for d in ordered] for pr in page.selected},
            ),
        )
    )

    for key, title, column, width, unit in (
        ("distance", "Trip distance distribution", "distance_miles", 0.25, "miles"),
        ("duration", "Trip duration distribution", "duration_seconds / 60.0", 2.0, "minutes"),
    ):
        cap = common.row(reading, f"select quantile_cont({column}, 0.99) from fct_mobility_trips where {where}", **p)[0]
        bins = common.rows(
            reading,
            f"""
            select provider, floor(least({column}, $cap) / $width) * $width as bin, count(*)
            from fct_mobility_trips where {where} and {column} is not null and {column} >= 0
            group by all order by 1, 2""",
            **p,
            cap=cap or 0,
            width=width,
        )
        groups = common.grouped([(provider, float(b), n) for provider, b, n in bins])
        page.charts.append(
            common.chart(
                f"mobility-{key}",
                f"{title} ({unit})",
                "fct_mobility_trips",
                bins,
                "No trips in this range.",
                data=[{"provider": pr, "bin_start": float(b), "bin_width": width, "trips": n} for pr, b, n in bins],
                draw=lambda: figures.histogram(groups, width, unit),
                note=f"Bins of {width:g} {unit}; trips beyond the 99th percentile ({cap:,.1f} {unit}) in the last bin."
                if cap is not None
                else None,
            )
        )

    if "mart_mobility_vehicles_hourly" in reading.tables:
        hourly = common.rows(
            reading,
            """
            select provider, hour_start, vehicles_deployed from mart_mobility_vehicles_hourly
            where list_contains($providers, provider)
              and date_trunc('month', timezone('America/Chicago', hour_start)) between $start and $end
            order by 1, 2""",
            **p,
        )
        series = common.grouped(hourly)
        page.charts.append(
            common.chart(
                "mobility-vehicles",
                "Vehicles deployed per hour",
                "mart_mobility_vehicles_hourly",
                hourly,
                "No vehicle events in this range.",
                data={
                    "hours": len(hourly),
                    "max_by_provider": {pr: max(n for _, n in pts) for pr, pts in series.items()},
                },
                draw=lambda: figures.daily_lines(series, "vehicles", x_title="hour (UTC)"),
                note="Only events that identify their vehicle count (MDS 0.4 status changes often do not).",
                wide=True,
            )
        )

    if "mart_mobility_trip_sanity" in reading.tables:
        sanity = common.rows(
            reading,
            """
            select provider, sum(trips)::bigint, sum(trips_over_24_hours)::bigint, sum(trips_over_500_miles)::bigint,
                   sum(trips_zero_span_with_duration)::bigint, sum(trips_same_location_with_duration)::bigint,
                   sum(trips_failing)::bigint
            from mart_mobility_trip_sanity
            where list_contains($providers, provider) and block_month between strftime($start, '%Y-%m') and strftime($end, '%Y-%m')
            group by provider order by provider""",
            **p,
        )
        rules = ["over 24 hours", "over 500 miles", "zero time span", "same start and end point"]
        page.charts.append(
            Chart(
                "mobility-sanity",
                "Trips failing the sanity rules (by landed month)",
                "mart_mobility_trip_sanity",
                data=[
                    {
                        "provider": r[0],
                        "trips": r[1],
                        **{k.replace(" ", "_"): v for k, v in zip(rules, r[2:6])},
                        "trips_failing": r[6],
                    }
                    for r in sanity
                ],
                figure=figures.stacked_bars(
                    [r[0] for r in sanity],
                    {k: [r[i + 2] for r in sanity] for i, k in enumerate(rules)},
                    "trips",
                    x_title="provider",
                    barmode="group",
                )
                if any(r[6] for r in sanity)
                else None,
                empty=None
                if any(r[6] for r in sanity)
                else (
                    f"No trip fails a sanity rule in this range ({sum(r[1] for r in sanity):,} trips checked)."
                    if sanity
                    else "No landed blocks in this range."
                ),
            )
        )

    points = common.rows(
        reading,
        f"""
        select provider, round(start_lon, 5), round(start_lat, 5),
               strftime(start_time_local, '%Y-%m-%d %H:%M') || ' · ' || coalesce(round(distance_miles, 2)::varchar, '?') || ' mi'
        from fct_mobility_trips where {where} and start_lon is not null and start_lat is not null
        order by hash(provider, trip_id) limit {common.MAP_POINTS}""",
        **p,
    )
    page.charts.append(
        common.point_map(
            "mobility-map", "Where trips started", "fct_mobility_trips", points, "No located trips in this range."
        )
    )
    return page
