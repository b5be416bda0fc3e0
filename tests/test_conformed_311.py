"""The conformed 311 model end to end: replay server -> real extractor -> lake -> dbt -> DuckDB.

Two months of each city land in a temporary lake; `dbt build` of both cities' models (as the two
DAGs select them, `tag:<source>+`) must give one fact row per landed request, every request type
on a shared category, marts that add up to the fact, and after the replay's late edits re-land a
month, still one row per request with the edits applied. A second lake starts with Minneapolis
only: the Minneapolis selection must build before Toronto has ever landed, and Toronto's DAG must
then add its requests incrementally.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dbt_helpers import dbt_build, landed_and_built, query
from replay_env import cities_311, replay_environment

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt"
MONTHS = ["2024-02", "2024-03"]
EDITED_MONTH = MONTHS[1]
CITIES = {"minneapolis": "minneapolis_311", "toronto": "toronto_311", "nyc": "nyc_311"}
BOTH = ["tag:minneapolis_311+", "tag:toronto_311+", "tag:nyc_311+"]
# The SQL macro strip_channel_suffix() (dbt/macros/service_requests.sql) is what the fact uses; this
# is the same pattern, to check the seed against the replay's whole vocabulary, not only the types
# two months happen to draw.
CHANNEL_SUFFIX = re.compile(r"\s*-\s*(open\s*311|self service|ss city|ss)\s*$", re.I)


# ---------------------------------------------------------------- helpers


def cities(lake: Path, warehouse: Path):
    """A replay server with the 311 cities' connections pointed at it, and the lake/warehouse env vars."""

    def small_files(server) -> None:
        server.toronto.set_rows_per_year(20_000)  # small yearly files: the adapter reads them the same way

    return replay_environment(
        lake, warehouse, connections=cities_311, configure=small_files, CIVIC_NO_AIRFLOW_LOOKUP="1"
    )


def land(source: str, months: list[str]) -> list[dict]:
    from civic_pipelines.extract import run_block

    return [run_block(source, month) for month in months]


def landed_rows(lake: Path, source: str) -> int:
    files = sorted((lake / source).glob("month=*/data.parquet"))
    if not files:
        return 0
    with duckdb.connect() as con:
        return con.sql(f"select count(*) from read_parquet({[str(f) for f in files]!r})").fetchall()[0][0]


def fact_counts(warehouse: Path) -> dict[str, int]:
    return dict(query(warehouse, "select city, count(*) from fct_service_requests group by city"))


def local_chicago(epoch_ms: int | None) -> dt.datetime | None:
    if epoch_ms is None:
        return None
    utc = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
    return utc.astimezone(ZoneInfo("America/Chicago")).replace(tzinfo=None)


# ---------------------------------------------------------------- both cities, then late edits


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    def land_every_city(lake: Path) -> dict:  # into $CIVIC_LAKE, which is ``lake``
        return {city: land(source, MONTHS) for city, source in CITIES.items()}

    with landed_and_built(tmp_path_factory.mktemp("conformed_311"), cities, land_every_city, BOTH) as built:
        yield built


def test_fact_holds_every_landed_request_once(built):
    warehouse, lake, server = built["warehouse"], built["lake"], built["server"]
    counts = fact_counts(warehouse)
    for city, source in CITIES.items():
        assert counts[city] == landed_rows(lake, source) == sum(m["rows"] for m in built["manifests"][city]), city
    assert counts["minneapolis"] == sum(len(server.minneapolis.rows_for_month(m)) for m in MONTHS) > 5000
    assert counts["toronto"] > 1000
    # NYC (added by configuration alone): its request ids are the replay's unique_keys
    want_nyc = {row["unique_key"] for m in MONTHS for row in server.generated["nyc_311"].rows_for_month(m)}
    assert {
        r[0] for r in query(warehouse, "select request_id from fct_service_requests where city = 'nyc'")
    } == want_nyc
    (dupes,) = query(
        warehouse,
        "select count(*) from (select city, request_id from fct_service_requests group by all having count(*) > 1)",
    )[0]
    assert dupes == 0
    # Minneapolis's request ids are the replay's OBJECTIDs under the layer year.
    want = {f"{m[:4]}-{row['OBJECTID']}" for m in MONTHS for row in server.minneapolis.rows_for_month(m)}
    got = {r[0] for r in query(warehouse, "select request_id from fct_service_requests where city = 'minneapolis'")}
    assert got == want
    statuses = dict(
        query(warehouse, "select city, list(distinct status order by status) from fct_service_requests group by city")
    )
    assert statuses["minneapolis"] == ["Closed", "Open"]
    assert set(statuses["toronto"]) <= {"Completed", "Cancelled", "Unknown"}
    # the warn/error tests on the fact and the marts ran in the build, and the error-level ones passed
    nodes = built["nodes"]
    assert nodes["unique_combination_of_columns_fct_service_requests_city__request_id"] == ("pass", 0)
    assert nodes["assert_fct_service_requests_block_not_above_landed"] == ("pass", 0)
    status_test = next(name for name in nodes if name.startswith("accepted_values_fct_service_requests_status"))
    assert nodes[status_test] == ("pass", 0)
    # the replay makes a few requests closed before they were opened: the warn test sees them
    (dirty,) = query(warehouse, "select count(*) from fct_service_requests where closed_at < opened_at")[0]
    assert nodes["assert_service_requests_opened_before_closed"] == ("warn" if dirty else "pass", dirty)


def test_every_request_type_is_on_a_shared_category(built):
    warehouse, nodes = built["warehouse"], built["nodes"]
    assert nodes["assert_service_request_types_mapped"] == ("pass", 0)
    assert query(
        warehouse, "select count(*) from fct_service_requests where major_category is null or minor_category is null"
    ) == [(0,)]
    # the seed covers the replay's whole vocabulary, not only what two months drew
    from civic_pipelines.replay import minneapolis, toronto

    seed = {
        (r["city"], r["request_type"])
        for r in csv.DictReader(open(DBT_DIR / "seeds" / "service_category_map.csv", newline=""))
    }
    mpls = {CHANNEL_SUFFIX.sub("", t).strip() for _s, _r, t, _title in minneapolis.CATEGORIES}
    tor = {t[0] for t in toronto.SERVICE_TYPES} | {toronto.UNKNOWN_TYPE[0], toronto.MALFORMED_TYPE[0]}
    tor |= {row[6] for rows in toronto.load_sample_rows().values() for row in rows}
    import tomllib

    nyc_config = tomllib.loads((DBT_DIR.parent / "include/civic_pipelines/datasets/nyc_311.toml").read_text())
    complaints = nyc_config["replay"]["tables"]["complaints"]
    nyc = {row[complaints["columns"].index("complaint_type")] for row in complaints["rows"]}
    missing = {("minneapolis", t) for t in mpls} | {("toronto", t) for t in tor} | {("nyc", t) for t in nyc}
    assert missing - seed == set()
    # channel variants share one standard type: "Pothole" and "Pothole - Open311"
    pairs = dict(
        query(
            warehouse,
            """
        select request_type, standard_request_type from fct_service_requests
        where city = 'minneapolis' and request_type in ('Pothole', 'Pothole - Open311')
        group by all""",
        )
    )
    assert pairs == {"Pothole": "Pothole", "Pothole - Open311": "Pothole"}
    # majors are few and shared: both cities use most of them
    majors = dict(
        query(warehouse, "select city, count(distinct major_category) from fct_service_requests group by city")
    )
    assert majors["minneapolis"] >= 12 and majors["toronto"] >= 10
    (seed_majors,) = query(warehouse, "select count(distinct major_category) from service_category_map")[0]
    assert seed_majors <= 14


def test_marts_add_up_to_the_fact(built):
    warehouse = built["warehouse"]
    facts = fact_counts(warehouse)
    by_month = dict(query(warehouse, "select city, sum(requests) from mart_requests_by_category_month group by city"))
    by_area = dict(query(warehouse, "select city, sum(requests) from mart_requests_by_area group by city"))
    assert by_month == facts == by_area
    for city, share, wards in query(
        warehouse,
        """
            select city, sum(share_of_city_requests), count(distinct area) filter (where regexp_matches(area, ' \\(\\d\\d\\)$'))
            from mart_requests_by_area group by city""",
    ):
        assert share == pytest.approx(1.0), city
        assert wards == (25 if city == "toronto" else 0), city  # no area in Minneapolis's lake; 25 wards
    # Area totals and ranks agree with the fact.
    ward_totals = dict(
        query(warehouse, "select area, count(*) from fct_service_requests where city = 'toronto' group by area")
    )
    mart_totals = dict(
        query(warehouse, "select distinct area, area_requests from mart_requests_by_area where city = 'toronto'")
    )
    assert mart_totals == ward_totals
    (top_area,) = query(
        warehouse, "select distinct area from mart_requests_by_area where city = 'toronto' and area_rank = 1"
    )[0]
    assert ward_totals[top_area] == max(ward_totals.values())
    # time to close: Minneapolis only (Toronto publishes no close date); median <= p90
    closed = dict(
        query(warehouse, "select city, count(*) from fct_service_requests where hours_to_close >= 0 group by city")
    )
    mart_closed = dict(query(warehouse, "select city, sum(closed_requests) from mart_time_to_close group by city"))
    assert mart_closed == closed and "toronto" not in mart_closed and closed["minneapolis"] > 5000
    (bad,) = query(
        warehouse, "select count(*) from mart_time_to_close where not (median_hours_to_close <= p90_hours_to_close)"
    )[0]
    assert bad == 0
    # seasons follow the local month: February is winter, March spring
    seasons = set(query(warehouse, "select distinct month(opened_month), season from fct_service_requests"))
    assert {(2, "winter"), (3, "spring")} <= seasons and all(
        s == {12: "winter", 1: "winter", 2: "winter", 3: "spring"}[m] for m, s in seasons
    )


def test_late_edits_replace_rows_in_the_relanded_month(built):
    server, warehouse, work, lake = built["server"], built["warehouse"], built["work"], built["lake"]
    before_landed = dict(
        query(warehouse, "select city || ' ' || _block_month, max(_landed_at) from fct_service_requests group by 1")
    )

    mpls_edited = server.minneapolis.apply_late_edits(EDITED_MONTH, 5)
    mpls_ids = [f"{EDITED_MONTH[:4]}-{oid}" for oid in mpls_edited]
    id_list = ", ".join(f"'{i}'" for i in mpls_ids)
    mpls_before = {
        r[0]: r[1:]
        for r in query(
            warehouse,
            f"select request_id, status, closed_at from fct_service_requests where city = 'minneapolis' and request_id in ({id_list})",
        )
    }
    tor_edits = server.toronto.apply_late_edits(int(EDITED_MONTH[:4]), EDITED_MONTH, 5)
    tor_times = sorted({dt.datetime.strptime(e["creation_date"][:19], "%Y-%m-%d %H:%M:%S") for e in tor_edits})
    time_list = ", ".join(f"timestamp '{t}'" for t in tor_times)
    tor_sql = f"select opened_at, request_id, status from fct_service_requests where city = 'toronto' and opened_at in ({time_list})"
    tor_before = query(warehouse, tor_sql)
    nyc_edited = server.generated["nyc_311"].apply_late_edits(EDITED_MONTH, 5)

    for city, source in CITIES.items():
        manifests = land(source, MONTHS)
        # the source's watermark moved for the whole year: the unchanged month keeps its landing
        assert [m["skipped"] for m in manifests] == [True, False], (city, manifests)
    built["nodes"] = dbt_build(work, BOTH)

    counts = fact_counts(warehouse)
    for city, source in CITIES.items():
        assert counts[city] == landed_rows(lake, source), city
    (dupes,) = query(
        warehouse,
        "select count(*) from (select city, request_id from fct_service_requests group by all having count(*) > 1)",
    )[0]
    assert dupes == 0, "one row per request after the re-landing"
    after_landed = dict(
        query(warehouse, "select city || ' ' || _block_month, max(_landed_at) from fct_service_requests group by 1")
    )
    for city in CITIES:
        assert after_landed[f"{city} {MONTHS[0]}"] == before_landed[f"{city} {MONTHS[0]}"], "untouched block kept"
        assert after_landed[f"{city} {EDITED_MONTH}"] > before_landed[f"{city} {EDITED_MONTH}"], (
            "re-landed block replaced"
        )

    # Minneapolis: every edited request's status and close date are the replay's new values
    new_rows = {
        f"{EDITED_MONTH[:4]}-{r['OBJECTID']}": r
        for r in server.minneapolis.rows_for_month(EDITED_MONTH)
        if r["OBJECTID"] in set(mpls_edited)
    }
    mpls_after = {
        r[0]: r[1:]
        for r in query(
            warehouse,
            f"select request_id, status, closed_at from fct_service_requests where city = 'minneapolis' and request_id in ({id_list})",
        )
    }
    assert set(mpls_after) == set(mpls_ids)
    for request_id, row in new_rows.items():
        want = ("Closed" if row["CLOSEDDATETIME"] is not None else "Open", local_chicago(row["CLOSEDDATETIME"]))
        assert mpls_after[request_id] == want, request_id
        assert mpls_after[request_id] != mpls_before[request_id], f"{request_id} did not change"

    # Toronto: the edited requests keep their ids (status is not part of the key) and take the new status
    tor_after = query(warehouse, tor_sql)
    assert sorted(r[:2] for r in tor_after) == sorted(r[:2] for r in tor_before)
    for edit in tor_edits:
        at = dt.datetime.strptime(edit["creation_date"][:19], "%Y-%m-%d %H:%M:%S")
        old = [r[2] for r in tor_before if r[0] == at]
        new = [r[2] for r in tor_after if r[0] == at]
        assert edit["new_status"] in new and edit["old_status"] in old, edit
        if len(new) == 1:
            assert new != old, edit

    # NYC: the edited requests are closed now, with a close date, still one row each
    keys = ", ".join(f"'{k}'" for k in nyc_edited)
    nyc_after = query(
        warehouse,
        f"select request_id, status, closed_at from fct_service_requests where city = 'nyc' and request_id in ({keys})",
    )
    assert sorted(r[0] for r in nyc_after) == sorted(nyc_edited)
    assert all(r[1] == "Closed" and r[2] is not None for r in nyc_after)

    # the marts follow the fact
    by_month = dict(query(warehouse, "select city, sum(requests) from mart_requests_by_category_month group by city"))
    assert by_month == counts
    assert built["nodes"]["assert_fct_service_requests_block_not_above_landed"] == ("pass", 0)


# ---------------------------------------------------------------- one city first


def test_builds_with_only_minneapolis_landed_then_toronto_joins(tmp_path):
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    with cities(lake, warehouse):
        land("minneapolis_311", MONTHS[:1])
        assert not (lake / "toronto_311").exists()

        # The Minneapolis DAG's selection on a fresh warehouse: Toronto's staging view is not built.
        nodes = dbt_build(tmp_path, ["tag:minneapolis_311+"])
        assert "stg_toronto_311__requests" not in nodes and nodes["fct_service_requests"][0] == "success"
        assert fact_counts(warehouse) == {"minneapolis": landed_rows(lake, "minneapolis_311")}

        # Every 311 model, Toronto's lake still empty: its staging view reads as empty.
        nodes = dbt_build(tmp_path, BOTH)
        assert nodes["stg_toronto_311__requests"][0] == "success"
        assert query(warehouse, "select count(*) from stg_toronto_311__requests") == [(0,)]
        assert nodes["assert_fct_service_requests_block_not_above_landed"] == ("pass", 0)
        assert fact_counts(warehouse) == {"minneapolis": landed_rows(lake, "minneapolis_311")}

        # Toronto lands and its DAG's selection adds its requests to the existing fact.
        land("toronto_311", MONTHS[:1])
        nodes = dbt_build(tmp_path, ["tag:toronto_311+"])
        assert "stg_minneapolis_311__requests" not in nodes
        assert fact_counts(warehouse) == {
            "minneapolis": landed_rows(lake, "minneapolis_311"),
            "toronto": landed_rows(lake, "toronto_311"),
        }
        assert nodes["assert_service_request_types_mapped"] == ("pass", 0)


# ---------------------------------------------------------------- year edges and requests without a location


def test_year_edge_requests_and_requests_without_a_location_reach_the_fact(tmp_path):
    """Issue 14: Minneapolis layers filed by the publisher's local year (America/Chicago) and
    Toronto rows with an empty Ward or postal prefix: every such request is one fact row, the
    staging and fact tests (unique request ids, not-null layer year) pass."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    months = ["2023-12", "2024-01"]
    with cities(lake, warehouse) as server:
        mpls = server.minneapolis
        mpls.set_rows_per_month(2000)
        mpls.set_layer_time_zone("America/Chicago")
        server.toronto.set_location_quirks(True)
        empty = {}
        for row in server.toronto.rows(2024):
            if not (row["Ward"] and row["First 3 Chars of Postal Code"]) and row["Creation Date"][:4] == "2024":
                empty[row["Creation Date"][:7]] = empty.get(row["Creation Date"][:7], 0) + 1
        toronto_month = max(empty, key=empty.get)
        land("minneapolis_311", months)
        land("toronto_311", [toronto_month])
        nodes = dbt_build(tmp_path, ["tag:minneapolis_311+", "tag:toronto_311+"])

        # Minneapolis: every request of both months once, its id under the layer it is filed in.
        want = {f"{mpls.layer_of(r['OPENEDDATETIME'])}-{r['OBJECTID']}" for m in months for r in mpls.rows_for_month(m)}
        got = {r[0] for r in query(warehouse, "select request_id from fct_service_requests where city = 'minneapolis'")}
        assert got == want and len(want) == 4000
        edge = {i for i in want if i.startswith("2023-") and int(i.split("-")[1]) >= 24_000_000}
        assert 0 < len(edge) < 100  # opened on 1 January UTC, filed in the 2023 layer
        assert nodes["not_null_stg_minneapolis_311__requests_layer_year"] == ("pass", 0)
        assert nodes["unique_stg_minneapolis_311__requests_request_id"] == ("pass", 0)
        assert nodes["unique_combination_of_columns_fct_service_requests_city__request_id"] == ("pass", 0)

        # Toronto: the rows without a location are in the fact, with no area.
        month_rows = server.toronto.rows_for_month(toronto_month)
        no_ward = sum(not r["Ward"] for r in month_rows)
        no_postal = sum(not r["First 3 Chars of Postal Code"] for r in month_rows)
        assert no_ward + no_postal == empty[toronto_month] > 0
        assert fact_counts(warehouse)["toronto"] == landed_rows(lake, "toronto_311") == len(month_rows)
        assert query(
            warehouse,
            "select count(*) filter (where ward is null), count(*) filter (where postal_prefix is null) "
            "from stg_toronto_311__requests",
        ) == [(no_ward, no_postal)]
        (no_area,) = query(
            warehouse, "select count(*) from fct_service_requests where city = 'toronto' and area is null"
        )[0]
        assert no_area >= no_ward
