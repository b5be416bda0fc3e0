"""The dashboard's server side against a real warehouse: two months of every source landed through
the replay server and the real extractors, `dbt build` of every selection (tests/dashboard_warehouse.py).

Every JSON endpoint's numbers are checked against DuckDB queries of the same warehouse (and the
overview's against the lake's files), every HTML page answers 200 with its charts and model links,
a source without data gives an empty state, and the warehouse-busy behaviour is checked while
another process holds DuckDB's write lock: the dashboard keeps serving its last snapshot (or says
the warehouse is busy) and never stops a writer from opening the file (``test_dashboard_serving.py``, with the standalone
command and who may see the dashboard).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import duckdb
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_warehouse as dw  # noqa: E402
from dashboard_warehouse import PAGES, api, boundaries, built, client, metadata_db, warehouse  # noqa: E402,F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]


def q(warehouse: Path, sql: str, **params) -> list[tuple]:
    return dw.query(warehouse, sql, params)


def chart(payload: dict, chart_id: str) -> dict:
    found = [c for c in payload["charts"] if c["id"] == chart_id]
    assert found, (chart_id, [c["id"] for c in payload["charts"]])
    return found[0]


def month(value) -> str:
    return value.strftime("%Y-%m")


def assert_monthly_rows(shown: dict, fields: tuple[str, ...], warehouse: Path, sql: str) -> None:
    """A chart's rows, read as ``fields`` (the month first), are the rows ``sql`` gives (its first
    column the month's date), in any order."""
    got = sorted(tuple(row[field] for field in fields) for row in shown["data"])
    assert got == sorted((month(m), *rest) for m, *rest in q(warehouse, sql))


# ---------------------------------------------------------------- overview


def lake_count(lake: Path, pattern: str) -> int:
    files = sorted(lake.glob(pattern))
    if not files:
        return 0
    with duckdb.connect() as con:
        return con.execute(f"select count(*) from read_parquet({[str(f) for f in files]!r})").fetchone()[0]


def test_overview_has_a_card_per_source_with_the_lake_and_dbt_test_figures(client, built):
    from civic_pipelines import sources
    from civic_pipelines.dashboard.health import expected_month

    payload = client.get("/civic/api/overview").json()
    cards = {c["source"]: c for c in payload["cards"]}
    assert set(cards) == set(sources.names())
    lake = built / "lake"
    results = {}
    for run in sorted((built / "dbt_target").rglob("run_results.json"), key=lambda p: p.stat().st_mtime):
        results.update({r["unique_id"]: r["status"] for r in json.loads(run.read_text())["results"]})
    manifest = json.loads((built / "dbt_target" / "manifest.json").read_text())
    for name, card in cards.items():
        nested = name in ("street_manager", "mds")  # a folder per part (archive or provider)
        pattern = f"{name}/*/month=*/" if nested else f"{name}/month=*/"
        months = sorted({p.parent.name.split("=")[1] for p in lake.glob(pattern + "_manifest.json")})
        assert card["months"] == months, name
        assert card["rows"] == lake_count(lake, pattern + "data.parquet"), name
        assert card["quarantined"] == lake_count(lake, pattern + "quarantine.parquet"), name
        assert card["expected_month"] == expected_month("monthly")
        assert card["freshness"] == "behind" and card["months_behind"] > 0  # the test data is from 2024
        # dbt tests on the source's models: as run_results.json says
        tag = sources.spec(name).dbt_tag or name
        mine = {
            uid
            for uid, node in manifest["nodes"].items()
            if node["resource_type"] == "test"
            and any(tag in manifest["nodes"].get(dep, {}).get("tags", []) for dep in node["depends_on"]["nodes"])
        }
        ran = {uid: status for uid, status in results.items() if uid in mine}
        assert card["tests_total"] == len(ran), name
        assert len(card["tests_warned"]) == sum(s == "warn" for s in ran.values()), name
        assert len(card["tests_failed"]) == sum(s in ("fail", "error") for s in ran.values()), name
    assert cards["seattle_crime"]["rows"] > 10_000 and cards["seattle_crime"]["months"] == dw.MONTHS
    assert cards["street_manager"]["parts"] == {part: 2 for part in dw.STREET_MANAGER_EVENTS}
    # the 311 data holds requests closed before they were opened: a warn-level test on all three cities
    assert any(
        t["test"] == "assert_service_requests_opened_before_closed" for t in cards["minneapolis_311"]["tests_warned"]
    )
    assert cards["mds"]["incomplete_blocks"] == len(dw.MDS_PROVIDERS)  # a week of the month so far
    assert cards["mds"]["last_status"].startswith("landed, incomplete")
    # the warehouse panel counts rows of the facts
    tables = payload["warehouse"]["tables"]
    assert (
        tables["fct_crime_offenses"] == q(built / "warehouse.duckdb", "select count(*) from fct_crime_offenses")[0][0]
    )


def test_overview_filters_by_month_and_source(client, built):
    payload = client.get(
        "/civic/api/overview", params={"start": "2024-03", "end": "2024-03", "source": ["seattle_crime", "toronto_311"]}
    ).json()
    assert [c["source"] for c in payload["cards"]] == ["seattle_crime", "toronto_311"]
    march = lake_count(built / "lake", "seattle_crime/month=2024-03/data.parquet")
    assert payload["cards"][0]["months"] == ["2024-03"] and payload["cards"][0]["rows"] == march
    html = client.get("/civic/", params={"source": "seattle_crime"}).text
    assert 'data-source-card="seattle_crime"' in html and 'data-source-card="toronto_311"' not in html


# ---------------------------------------------------------------- crime


def test_crime_page_numbers_match_the_warehouse(client, warehouse):
    payload = api(client, "crime")
    assert payload["extent"] == {"first": "2024-02", "last": "2024-03"}
    total, person, prop = q(
        warehouse,
        """
        select count(*), count(*) filter (where crime_against_category = 'PERSON'),
               count(*) filter (where crime_against_category = 'PROPERTY') from fct_crime_offenses""",
    )[0]
    assert payload["figures"] == {"offenses": total, "against persons (violent)": person, "against property": prop}
    trend = chart(payload, "crime-trend")
    assert trend["model"] == "mart_crime_monthly"
    assert_monthly_rows(
        trend,
        ("month", "category", "offenses"),
        warehouse,
        "select report_month, coalesce(crime_against_category, 'UNKNOWN'), offenses from mart_crime_monthly",
    )
    areas = chart(payload, "crime-areas")
    assert areas["model"] == "mart_crime_by_area"  # the whole range: the mart itself
    top = q(
        warehouse,
        "select precinct, sector, beat, offenses from mart_crime_by_area order by offenses desc, "
        "precinct nulls last, sector nulls last, beat nulls last limit 15",
    )
    assert [(a["precinct"], a["sector"], a["beat"], a["offenses"]) for a in areas["data"]] == top
    offenses = chart(payload, "crime-offenses")
    groups = dict(
        q(
            warehouse,
            "select coalesce(offense_parent_group, '(unknown group)'), count(*) from fct_crime_offenses group by 1",
        )
    )
    assert all(groups[r["offense_group"]] == r["offenses"] for r in offenses["data"])
    assert offenses["data"][0]["offenses"] == max(groups.values())
    located = q(
        warehouse, "select count(*) from fct_crime_offenses where longitude is not null and latitude is not null"
    )[0][0]
    crime_map = chart(payload, "crime-map")
    assert crime_map["data"]["points_drawn"] == min(located, 1000)
    assert crime_map["data"]["offenses_with_point"] == located


def test_crime_month_filter_reads_the_fact_for_the_areas(client, warehouse):
    payload = api(client, "crime", start="2024-03", end="2024-03")
    assert payload["range"] == {"start": "2024-03", "end": "2024-03"}
    march = q(warehouse, "select count(*) from fct_crime_offenses where report_month = DATE '2024-03-01'")[0][0]
    assert payload["figures"]["offenses"] == march
    assert {r["month"] for r in chart(payload, "crime-trend")["data"]} == {"2024-03"}
    areas = chart(payload, "crime-areas")
    assert areas["model"] == "fct_crime_offenses"  # one month of an all-months mart: from the fact
    top = q(
        warehouse,
        """select precinct, sector, beat, count(*) from fct_crime_offenses
                          where report_month = DATE '2024-03-01' group by all
                          order by 4 desc, precinct nulls last, sector nulls last, beat nulls last limit 15""",
    )
    assert [(a["precinct"], a["sector"], a["beat"], a["offenses"]) for a in areas["data"]] == top


# ---------------------------------------------------------------- 311


def test_311_page_numbers_match_the_warehouse(client, warehouse, boundaries):
    payload = api(client, "311")
    per_city = dict(q(warehouse, "select city, count(*) from fct_service_requests group by city"))
    assert payload["figures"] == {"requests": sum(per_city.values()), **per_city}
    assert payload["selected"] == ["chicago_311", "minneapolis_311", "nyc_311", "toronto_311"]
    assert_monthly_rows(
        chart(payload, "311-volume"),
        ("month", "major_category", "requests"),
        warehouse,
        "select month, coalesce(major_category, '(unmapped type)'), sum(requests) "
        "from mart_requests_by_category_month group by all",
    )
    season = chart(payload, "311-seasonality")
    expected = q(
        warehouse, "select city, month(month), sum(requests) from mart_requests_by_category_month group by all"
    )
    assert sorted((r["city"], r["month_of_year"], r["requests"]) for r in season["data"]) == sorted(expected)
    categories = chart(payload, "311-categories")
    assert sum(r["requests"] for r in categories["data"]) == sum(per_city.values())
    areas = chart(payload, "311-areas")
    assert areas["model"] == "mart_requests_by_area"
    for city in ("nyc", "toronto"):
        top = q(
            warehouse,
            "select area, count(*) from fct_service_requests where city = $city and area is not null "
            "group by area order by 2 desc, area limit 10",
            city=city,
        )
        assert [(r["area"], r["requests"]) for r in areas["data"] if r["city"] == city] == top
    assert "minneapolis" in areas["note"]  # no areas published
    for city in ("minneapolis", "nyc"):
        located, total = q(
            warehouse,
            "select count(*) filter (where longitude is not null and latitude is not null), "
            "count(*) from fct_service_requests where city = $city",
            city=city,
        )[0]
        city_map = chart(payload, f"311-map-{city}")
        assert city_map["data"] == {"points_drawn": min(located, 1000), "with_point": located, "requests": total}
    assert not [c for c in payload["charts"] if c["id"] == "311-map-toronto"]
    assert any("toronto publishes no coordinates" in n for n in payload["notes"])
    closing = chart(payload, "311-time-to-close")
    expected = {
        (c, k): (n, round(m, 2), round(p, 2))
        for c, k, n, m, p in q(
            warehouse,
            """
        select city, coalesce(major_category, '(unmapped type)'), count(*), quantile_cont(hours_to_close, 0.5),
               quantile_cont(hours_to_close, 0.9)
        from fct_service_requests where hours_to_close >= 0 group by all""",
        )
    }
    assert {
        (r["city"], r["major_category"]): (r["closed_requests"], r["median_hours"], r["p90_hours"])
        for r in closing["data"]
    } == expected
    assert "toronto" not in {r["city"] for r in closing["data"]}  # Toronto publishes no close date
    trend = chart(payload, "311-close-trend")
    assert trend["model"] == "mart_time_to_close"
    closed = dict(
        ((month(m), c), n)
        for m, c, n in q(warehouse, "select month, city, sum(closed_requests) from mart_time_to_close group by all")
    )
    assert {(r["month"], r["city"]): r["closed_requests"] for r in trend["data"]} == closed


def test_311_filters_by_city_and_month(client, warehouse):
    payload = api(client, "311", source="toronto_311", start="2024-03", end="2024-03")
    assert payload["selected"] == ["toronto_311"]
    march = q(
        warehouse,
        "select count(*) from fct_service_requests where city = 'toronto' and opened_month = DATE '2024-03-01'",
    )[0][0]
    assert payload["figures"] == {"requests": march, "toronto": march}
    assert {r["month"] for r in chart(payload, "311-volume")["data"]} == {"2024-03"}
    areas = chart(payload, "311-areas")
    assert areas["model"] == "fct_service_requests"
    top = q(
        warehouse,
        "select area, count(*) from fct_service_requests where city = 'toronto' and area is not null "
        "and opened_month = DATE '2024-03-01' group by area order by 2 desc, area limit 10",
    )
    assert [(r["area"], r["requests"]) for r in areas["data"]] == top
    # Toronto has no coordinates and no close dates: empty states, not errors
    assert chart(payload, "311-map")["empty"]
    assert chart(payload, "311-time-to-close")["empty"]
    # comma-separated sources work too
    both = api(client, "311", source="toronto_311,nyc_311")
    assert both["selected"] == ["nyc_311", "toronto_311"]


def test_311_choropleth_from_a_drop_in_boundary_file(client, warehouse, boundaries):
    folder, counts = boundaries
    payload = api(client, "311", source="toronto_311")
    choropleth = chart(payload, "311-choropleth-toronto")
    drawn = {r["area"]: r["requests"] for r in choropleth["data"]}
    assert drawn == {**counts, "Nowhere Ward (99)": None}  # every feature drawn; the extra one empty
    assert "toronto.geojson" in choropleth["title"]
    html = client.get("/civic/311", params={"source": "toronto_311"}).text
    assert 'data-chart="311-choropleth-toronto"' in html
    # NYC has areas but no boundary file: the page says where to drop one
    payload = api(client, "311", source="nyc_311")
    assert not [c for c in payload["charts"] if c["id"].startswith("311-choropleth")]
    assert any("(nyc.geojson) in the boundaries folder" in n for n in payload["notes"])
    assert not any(str(folder) in n for n in payload["notes"])  # the server's folder is not shown


def test_a_broken_boundary_file_is_a_note_not_an_error(built, tmp_path, warehouse):
    from civic_pipelines.dashboard.app import standalone_app

    dw.write_boundaries(warehouse, tmp_path, "toronto")
    (tmp_path / "nyc.geojson").write_text('{"type": "FeatureCollection", "features": [{"properties": {}}]}')
    with dw.signed_in(TestClient(standalone_app(dw.dashboard_config(built, tmp_path)))) as client:
        payload = api(client, "311", source="nyc_311")
        nyc = chart(payload, "311-choropleth-nyc")
        assert nyc["empty"] and "feature 0" in nyc["note"]
        (tmp_path / "toronto.geojson").write_text("not json")
        payload = api(client, "311", source="toronto_311")
        assert chart(payload, "311-choropleth-toronto")["empty"]


# ---------------------------------------------------------------- street works


def test_street_works_page_numbers_match_the_warehouse(client, warehouse):
    payload = api(client, "street-works")
    permits, in_progress, completed = q(
        warehouse, "select sum(permits), sum(works_in_progress), sum(works_completed) from mart_works_by_month"
    )[0]
    scotland = q(
        warehouse,
        "select sum(works_in_progress + works_completed + works_planned + restrictions "
        "+ status_unknown) from mart_srwr_activity_summary",
    )[0][0]
    assert payload["figures"] == {
        "England: permits with events": permits,
        "in progress (month-ends)": in_progress,
        "completed": completed,
        "Scotland: activities": scotland,
    }
    assert_monthly_rows(
        chart(payload, "works-monthly"),
        ("month", "works_in_progress", "works_completed"),
        warehouse,
        "select month, sum(works_in_progress), sum(works_completed) from mart_works_by_month group by 1",
    )
    authorities = q(
        warehouse,
        """
        select coalesce(highway_authority, highway_authority_swa_code, '(unknown)') as name,
               sum(works_in_progress), sum(works_completed) from mart_works_by_month group by 1
        having sum(works_in_progress) + sum(works_completed) > 0
        order by sum(works_in_progress) + sum(works_completed) desc, name limit 15""",
    )
    assert [
        (r["highway_authority"], r["works_in_progress"], r["works_completed"])
        for r in chart(payload, "works-authorities")["data"]
    ] == authorities
    mix = dict(
        q(
            warehouse,
            "select coalesce(work_category, '(unknown)'), count(*) from int_permit_months "
            "where not is_test_data and work_status_ref in ('in_progress', 'completed') group by 1",
        )
    )
    assert {r["work_category"]: r["works"] for r in chart(payload, "works-categories")["data"]} == mix
    impact = q(
        warehouse,
        "select usrn, round(sum(impact_score), 3) from mart_street_impact group by usrn "
        "order by sum(impact_score) desc, usrn limit 15",
    )
    assert [(r["usrn"], r["impact_score"]) for r in chart(payload, "works-impact")["data"]] == impact
    assert chart(payload, "works-map")["data"]["points_drawn"] == min(
        1000,
        q(
            warehouse,
            """
        select count(*) from int_permit_months where not is_test_data and work_status_ref in ('in_progress', 'completed')
        and longitude is not null and latitude is not null""",
        )[0][0],
    )
    assert_monthly_rows(
        chart(payload, "srwr-monthly"),
        ("month", "in_progress", "completed"),
        warehouse,
        "select month, sum(works_in_progress), sum(works_completed) from mart_srwr_activity_summary group by 1",
    )


def test_street_works_source_filter_shows_scotland_alone(client, warehouse):
    payload = api(client, "street-works", source="srwr", start="2024-03")
    assert payload["selected"] == ["srwr"]
    assert {c["id"] for c in payload["charts"]} == {"srwr-monthly", "srwr-authorities"}
    march = q(warehouse, "select sum(activities) from mart_srwr_activity_summary where month = DATE '2024-03-01'")[0][0]
    assert payload["figures"] == {"Scotland: activities": march}


# ---------------------------------------------------------------- mobility


def test_mobility_page_numbers_match_the_warehouse(client, built, warehouse):
    payload = api(client, "mobility")
    summary = json.loads((built / "built.json").read_text())
    if not summary["mobility"]["built"]:  # the MDS models did not build: the page must say so, not fail
        assert payload["empty"] and payload["charts"] == []
        return
    trips, median_miles = q(warehouse, "select count(*), median(distance_miles) from fct_mobility_trips")[0]
    assert payload["figures"]["trips"] == trips
    assert payload["figures"]["median distance (miles)"] == round(median_miles, 2)
    assert payload["selected"] == sorted(dw.MDS_PROVIDERS)
    daily = q(warehouse, "select provider, trip_date, sum(trips) from mart_mobility_trips_daily group by all")
    assert sorted(
        (r["provider"], r["trip_date"], r["trips"]) for r in chart(payload, "mobility-daily")["data"]
    ) == sorted((p, d.isoformat(), n) for p, d, n in daily)
    districts = chart(payload, "mobility-districts")
    assert sum(r["trips"] for r in districts["data"]) == trips
    for key in ("distance", "duration"):
        column = "distance_miles" if key == "distance" else "duration_seconds"
        counted = q(warehouse, f"select count(*) from fct_mobility_trips where {column} >= 0")[0][0]
        assert sum(r["trips"] for r in chart(payload, f"mobility-{key}")["data"]) == counted
    one = api(client, "mobility", source="voi")
    assert (
        one["figures"]["trips"] == q(warehouse, "select count(*) from fct_mobility_trips where provider = 'voi'")[0][0]
    )


# ---------------------------------------------------------------- HTML, links, figures, assets


def test_every_page_answers_with_its_charts_and_their_model_links(client, built):
    manifest = json.loads((built / "dbt_target" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    for page in ["", *PAGES]:
        response = client.get(f"/civic/{page}")
        assert response.status_code == 200, page
        html = response.text
        assert "cdn.plot.ly" not in html and not re.search(r'src="(https?:)?//', html)  # nothing from outside
        if not page:
            continue
        payload = api(client, page)
        assert payload["charts"], page
        for c in payload["charts"]:
            assert f'data-chart-card="{c["id"]}"' in html
            assert c["model"] in models, c
            summary = " ".join(models[c["model"]]["description"].split()).split(". ")[0]
            assert f'data-model-link="{c["model"]}"' in html and summary[:60] in html.replace("&#34;", '"').replace(
                "&#39;", "'"
            )
            if c["empty"]:
                assert f'data-empty="{c["id"]}"' in html
            else:
                assert f'data-chart="{c["id"]}"' in html
            model_page = client.get(f"/civic/models/{c['model']}")
            assert model_page.status_code == 200 and "data-description" in model_page.text


def test_model_page_shows_the_dbt_description(client, built):
    manifest = json.loads((built / "dbt_target" / "manifest.json").read_text())
    node = manifest["nodes"]["model.civic.mart_crime_monthly"]
    html = client.get("/civic/models/mart_crime_monthly").text
    assert node["description"].split(".")[0] in html
    assert "crime_against_category" in html
    missing = client.get("/civic/models/no_such_model")
    assert missing.status_code == 404 and 'data-empty="model"' in missing.text


def test_figures_are_valid_plotly(client):
    import plotly.graph_objects as go

    for page in PAGES:
        html = client.get(f"/civic/{page}").text
        figures = re.findall(r'<script type="application/json" data-figure="([^"]+)">(.*?)</script>', html, re.S)
        for _chart_id, text in figures:
            figure = json.loads(text)
            go.Figure(figure)  # raises on any property plotly.js does not know


def test_plotly_js_is_served_from_the_installed_package(client):
    import gzip

    import plotly

    html = client.get("/civic/crime").text
    src = re.search(r'<script src="([^"]*plotly-[^"]+\.min\.js)"', html).group(1)
    assert not src.startswith(("http", "//"))
    bundled = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    response = client.get("/civic/" + src.removeprefix("./"), headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200 and response.content == bundled
    assert "immutable" in response.headers["cache-control"]
    time.sleep(1)  # the gzip copy is made in the background
    zipped = client.get("/civic/" + src.removeprefix("./"), headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.content == bundled or gzip.decompress(zipped.content) == bundled
    for asset in ("static/dashboard.css", "static/dashboard.js", "static/icon.svg"):
        assert client.get(f"/civic/{asset}").status_code == 200


def test_filters_that_make_no_sense_are_notes_not_errors(client):
    payload = api(client, "crime", start="March", end="2024-13")
    assert len(payload["notes"]) == 2 and payload["range"] == {"start": "2024-02", "end": "2024-03"}
    payload = api(client, "crime", start="2024-03", end="2024-02")
    assert payload["range"] == {"start": "2024-02", "end": "2024-03"} and "swapped" in payload["notes"][0]
    payload = api(client, "crime", source="nowhere")
    assert payload["selected"] == [] and payload["empty"] and "nowhere" in payload["notes"][0]
    payload = api(client, "crime", start="2030-01", end="2030-02")
    assert payload["figures"]["offenses"] == 0 and chart(payload, "crime-trend")["empty"]
    assert client.get("/civic/crime", params={"start": "2030-01"}).status_code == 200


def test_pages_render_in_well_under_a_second(client):
    for page in ["", *PAGES]:
        client.get(f"/civic/{page}")  # warm
        started = time.perf_counter()
        response = client.get(f"/civic/{page}")
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and elapsed < 1.0, (page, elapsed)
        assert float(response.headers["server-timing"].split("dur=")[1]) < 1000


# ---------------------------------------------------------------- sources without data


def test_a_warehouse_without_data_gives_empty_states(tmp_path):
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    for warehouse_path in (tmp_path / "empty.duckdb", tmp_path / "missing.duckdb"):
        with dw.client_without_build(tmp_path, warehouse_path) as client:
            for page in PAGES:
                response = client.get(f"/civic/{page}")
                assert response.status_code == 200 and 'data-empty="page"' in response.text, page
                payload = api(client, page)
                assert payload["empty"] and payload["charts"] == [], page
            overview = client.get("/civic/api/overview").json()
            assert all(c["months"] == [] and c["freshness"] == "no data" for c in overview["cards"])
            assert client.get("/civic/").status_code == 200


def test_a_model_with_unexpected_columns_is_a_panel_not_a_crash(tmp_path):
    with duckdb.connect(str(tmp_path / "odd.duckdb")) as con:
        con.execute("create table fct_crime_offenses (x integer)")
        con.execute("create table mart_crime_monthly (x integer)")
    with dw.client_without_build(tmp_path, tmp_path / "odd.duckdb") as client:
        html = client.get("/civic/crime")
        assert html.status_code == 200 and "could not read the warehouse" in html.text
        assert client.get("/civic/api/crime").status_code == 500
        assert client.get("/civic/311").status_code == 200  # the other pages are unaffected
