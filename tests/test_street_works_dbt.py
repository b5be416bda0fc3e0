"""Street works in dbt end to end: replay server -> real extractors -> lake -> dbt -> DuckDB.

Two months of Street Manager (permit, activity, section 58; small archives) and SRWR land in a
temporary lake; `dbt build` of both sources' selections (as their DAGs select them, `tag:<source>+`)
must give staging views holding every landed row, one `int_permits_latest` row per permit with the
permit's latest event (computed here in Python from the lake files), marts whose figures are the
ones Python computes from the same files, and passing singular tests. Re-landing a month (forced,
after the replay's late edit) must leave one row per permit with the re-landed month's events.

The replay generates each permit's events within one month and never the seed project's
`New service connection` activity type; real permits span months and real archives have new
connections. So before building, the test adds to the landed blocks what the real archives would
hold: a `WORK_STOP` in March for some permits started in February, and the new-connection activity
type on some February permits. Both are ordinary rows of the lake contract's schema.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbt_helpers import dbt_build, landed_and_built, query
from replay_env import replay_environment, street_works

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt"
MONTHS = ["2024-02", "2024-03"]
PARTS = ("permit", "activity", "section_58")
EVENTS = {"permit": 300, "activity": 40, "section_58": 15}
SRWR_ACTIVITIES = 30
TODAY = "2026-11-23"
SELECT = ["tag:street_manager+", "tag:srwr+"]
LONDON = ZoneInfo("Europe/London")
CROSS_MONTH_PERMITS = 6
NEW_CONNECTION_PERMITS = 8

# mart_street_impact's weights (dbt/models/marts/street_works/mart_street_impact.sql), restated
# here so the test checks the SQL against the documented formula, not against itself.
CATEGORY_POINTS = {
    "minor": 1.0,
    "standard": 2.0,
    "major": 5.0,
    "paa": 5.0,
    "hs2_highway": 2.0,
    "immediate_urgent": 3.0,
    "immediate_emergency": 3.0,
}
TM_FACTOR = {
    "road_closure": 2.0,
    "lane_closure": 1.5,
    "contra_flow": 1.5,
    "convoy_workings": 1.5,
    "multi_way_signals": 1.5,
    "two_way_signals": 1.25,
    "stop_go_boards": 1.25,
    "priority_working": 1.25,
    "give_and_take": 1.0,
    "some_carriageway_incursion": 1.0,
    "no_carriageway_incursion": 0.5,
}


# ---------------------------------------------------------------- helpers


def street_works_environment(lake: Path, warehouse: Path):
    """A replay server with both street-works connections pointed at it, and the lake/warehouse env vars."""
    return replay_environment(
        lake, warehouse, **street_works(EVENTS, SRWR_ACTIVITIES, TODAY), CIVIC_NO_AIRFLOW_LOOKUP="1"
    )


def land_all(lake: Path) -> dict:
    from civic_pipelines.extract import run_block

    manifests = {}
    for month in MONTHS:
        for part in PARTS:
            manifests[(part, month)] = run_block("street_manager", month, part=part, lake=str(lake))
        manifests[("srwr", month)] = run_block("srwr", month, lake=str(lake))
    for key, manifest in manifests.items():
        assert not manifest["skipped"] and manifest["rows"] > 0, (key, manifest)
    return manifests


def permit_file(lake: Path, month: str, part: str = "permit") -> Path:
    return lake / "street_manager" / part / f"month={month}" / "data.parquet"


def lake_rows(lake: Path, part: str) -> list[dict]:
    """Every landed row of a Street Manager part, as Python dicts."""
    rows = []
    for month in MONTHS:
        rows += pq.read_table(permit_file(lake, month, part)).to_pylist()
    return rows


def srwr_rows(lake: Path, table: str) -> list[dict]:
    rows = []
    for month in MONTHS:
        rows += pq.read_table(lake / "srwr" / f"month={month}" / f"{table}.parquet").to_pylist()
    return rows


def order_key(row: dict):
    return (row["event_time"], row["event_reference"])


def latest_per_permit(rows: list[dict]) -> dict[str, dict]:
    latest = {}
    for row in rows:
        ref = row["permit_reference_number"]
        if ref not in latest or order_key(row) > order_key(latest[ref]):
            latest[ref] = row
    return latest


def month_rows(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(permit, block month) -> the permit's latest event in that month's archive."""
    latest = {}
    for row in rows:
        key = (row["permit_reference_number"], row["_block_month"])
        if key not in latest or order_key(row) > order_key(latest[key]):
            latest[key] = row
    return latest


def clean(value):
    value = (value or "").strip()
    return value or None


def is_test_data(row: dict) -> bool:
    return clean(row["promoter_swa_code"]) == "STPR" or (clean(row["street_name"]) or "").lower() == "fake street"


def local_date(instant):
    return instant.astimezone(LONDON).date()


def work_score(row: dict) -> float:
    points = CATEGORY_POINTS.get(row["work_category_ref"], 1.0)
    points += 0.5 if row["is_ttro_required"] == "Yes" else 0.0
    points += 0.5 if row["is_traffic_sensitive"] == "Yes" else 0.0
    tm = TM_FACTOR.get(row["current_traffic_management_type_ref"] or row["traffic_management_type_ref"], 1.0)
    start, end = row["proposed_start_date"], row["proposed_end_date"]
    days = (local_date(end) - local_date(start)).days + 1 if start and end and end >= start else None
    days = min(max(days or 1, 1), 90)
    return points * tm * (1 + math.log(days))


def month_date(block_month: str):
    return datetime.strptime(block_month + "-01", "%Y-%m-%d").date()


# ---------------------------------------------------------------- what the real archives also hold


def add_cross_month_and_new_connection_events(lake: Path) -> dict:
    """Append to March's permit block a WORK_STOP for some permits in progress at the end of
    February, and give some February permits the seed project's `New service connection` activity
    type. Returns the permits touched."""
    february, march = (permit_file(lake, m) for m in MONTHS)
    feb_table, mar_table = pq.read_table(february), pq.read_table(march)
    feb_rows, mar_rows = feb_table.to_pylist(), mar_table.to_pylist()

    # new connections: every event of some utility-promoted February permits
    utility = sorted(
        {r["permit_reference_number"] for r in feb_rows if (r["promoter_swa_code"] or "").startswith("92")}
    )
    connections = set(utility[:NEW_CONNECTION_PERMITS])
    for row in feb_rows:
        if row["permit_reference_number"] in connections:
            row["activity_type"] = "New service connection"
    pq.write_table(pa.Table.from_pylist(feb_rows, schema=feb_table.schema), february)

    # works started in February, stopped in March (as the March archive would carry them)
    in_progress = sorted(
        ref for (ref, _), row in month_rows(feb_rows).items() if row["work_status_ref"] == "in_progress"
    )
    stopped = in_progress[:CROSS_MONTH_PERMITS]
    assert len(stopped) == CROSS_MONTH_PERMITS, "the replay's February has too few works in progress"
    last_feb = month_rows(feb_rows)
    next_reference = max(r["event_reference"] for r in mar_rows) + 1
    landed_at = mar_rows[0]["_landed_at"]
    for i, ref in enumerate(stopped):
        when = datetime(2024, 3, 2 + i, 10, 30, tzinfo=UTC)
        event = {**last_feb[(ref, MONTHS[0])]}
        event.update(
            {
                "event_reference": next_reference + i,
                "event_type": "WORK_STOP",
                "event_type_published": "WORK_STOP",
                "event_time": when,
                "work_status": "Works completed",
                "work_status_ref": "completed",
                "permit_status": "closed",
                "actual_end_date_time": when,
                "_block_month": MONTHS[1],
                "_landed_at": landed_at,
            }
        )
        mar_rows.append(event)
    pq.write_table(pa.Table.from_pylist(mar_rows, schema=mar_table.schema), march)
    return {"stopped": stopped, "connections": connections}


# ---------------------------------------------------------------- two months, then a re-landing


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("street_works_dbt")
    with landed_and_built(
        work, street_works_environment, land_all, SELECT, amend=add_cross_month_and_new_connection_events
    ) as built:
        yield built


def test_staging_holds_every_landed_row(built):
    lake, warehouse, manifests = built["lake"], built["warehouse"], built["manifests"]
    views = {
        "permit": "stg_street_manager__permit_events",
        "activity": "stg_street_manager__activity_events",
        "section_58": "stg_street_manager__section_58_events",
    }
    for part, view in views.items():
        per_month = dict(query(warehouse, f"select _block_month, count(*) from {view} group by 1"))
        for month in MONTHS:
            landed = pq.read_metadata(permit_file(lake, month, part)).num_rows
            assert per_month[month] == landed, (part, month)
            extra = CROSS_MONTH_PERMITS if (part, month) == ("permit", MONTHS[1]) else 0
            assert landed == manifests[(part, month)]["rows"] + extra == EVENTS[part] + extra, (part, month)
        (keys,) = query(warehouse, f"select count(distinct event_reference) = count(*) from {view}")[0]
        assert keys
    srwr = {
        "stg_srwr__activities": "data",
        "stg_srwr__phases": "phase",
        "stg_srwr__undertaker_phases": "undertaker_phase",
        "stg_srwr__sites": "site",
        "stg_srwr__districts": "district",
    }
    for view, table in srwr.items():
        (count,) = query(warehouse, f"select count(*) from {view}")[0]
        assert count == len(srwr_rows(lake, table)) > 0, view
    (activities,) = query(warehouse, "select count(*) from stg_srwr__activities")[0]
    assert activities == sum(manifests[("srwr", m)]["rows"] for m in MONTHS)
    # Issue 14 item 3: the districts by key, one row per key the landed files list (unique-tested)
    keys = {row["district_key"] for row in srwr_rows(lake, "district_directory")}
    got = dict(query(warehouse, "select district_key, organisation_name from stg_srwr__district_directory"))
    assert set(got) == keys and len(keys) > 1
    assert keys >= {f"{r['district_key_1']}-{r['district_key_2']}" for r in srwr_rows(lake, "district")}
    from civic_pipelines.replay.srwr import COUNCILS

    assert set(got.values()) <= set(COUNCILS)


def test_int_permits_latest_is_one_row_per_permit_with_its_latest_event(built):
    lake, warehouse = built["lake"], built["warehouse"]
    want = latest_per_permit(lake_rows(lake, "permit"))
    got = dict(query(warehouse, "select permit_reference_number, event_reference from int_permits_latest"))
    assert len(got) == len(want) and got == {ref: row["event_reference"] for ref, row in want.items()}
    # the permits started in February and stopped in March: their March WORK_STOP is their latest
    stopped = built["touched"]["stopped"]
    rows = query(
        warehouse,
        f"""select permit_reference_number, event_type, work_status_ref, _block_month,
                                       months_with_events, first_block_month
                                from int_permits_latest where permit_reference_number in {tuple(stopped)!r}""",
    )
    assert {r[0] for r in rows} == set(stopped)
    assert all(r[1:] == ("WORK_STOP", "completed", MONTHS[1], 2, MONTHS[0]) for r in rows), rows
    # int_permit_months: one row per permit and month, each the month's latest event
    want_months = month_rows(lake_rows(lake, "permit"))
    got_months = {
        (r[0], r[1]): r[2]
        for r in query(
            warehouse, "select permit_reference_number, _block_month, event_reference from int_permit_months"
        )
    }
    assert got_months == {key: row["event_reference"] for key, row in want_months.items()}


def test_singular_and_key_tests_ran_and_passed(built):
    nodes = built["nodes"]
    for name in (
        "assert_no_permit_in_progress_and_completed_in_same_month",
        "assert_int_permits_latest_holds_latest_event",
        "unique_int_permits_latest_permit_reference_number",
        "not_null_int_permits_latest_permit_reference_number",
        "unique_stg_street_manager__permit_events_event_reference",
        "unique_stg_srwr__district_directory_district_key",
        "not_null_stg_srwr__activities_placement",
    ):
        assert nodes[name] == ("pass", 0), name
    accepted = [n for n in nodes if n.startswith("accepted_values_stg_street_manager__permit_events_work_")]
    assert len(accepted) == 4 and all(nodes[n] == ("pass", 0) for n in accepted), accepted
    for name in ("swa_codes", "srwr_status_codes"):
        assert nodes[name][0] == "success", name


def test_mart_works_by_month_reconciles_with_the_lake(built):
    lake, warehouse = built["lake"], built["warehouse"]
    want = defaultdict(Counter)
    for (_ref, month), row in month_rows(lake_rows(lake, "permit")).items():
        if is_test_data(row):
            continue
        key = (month_date(month), clean(row["highway_authority_swa_code"]), clean(row["promoter_swa_code"]))
        want[key]["permits"] += 1
        want[key][row["work_status_ref"]] += 1
    rows = query(
        warehouse,
        """select month, highway_authority_swa_code, promoter_swa_code, permits,
                                      works_in_progress, works_completed, works_planned, works_cancelled
                               from mart_works_by_month""",
    )
    got = {r[:3]: r[3:] for r in rows}
    assert got == {
        k: (c["permits"], c["in_progress"], c["completed"], c["planned"], c["cancelled"]) for k, c in want.items()
    }
    # and with staging: every (permit, month) of the real data counted once
    (staged,) = query(
        warehouse,
        """select count(distinct (permit_reference_number, _block_month))
                                    from stg_street_manager__permit_events where not is_test_data""",
    )[0]
    assert sum(r[3] for r in rows) == staged
    assert sum(r[4] for r in rows) > 0 and sum(r[5] for r in rows) > 0
    # names: the seed's for a listed code
    names = dict(query(warehouse, "select distinct promoter_swa_code, promoter_organisation from mart_works_by_month"))
    assert names.get("4420") == "SHEFFIELD CITY COUNCIL" and names.get("9201") == "REPLAY WATER 9201"


def test_mart_street_impact_follows_the_documented_formula(built):
    lake, warehouse = built["lake"], built["warehouse"]
    want = defaultdict(lambda: [0, 0.0])
    for (_ref, month), row in month_rows(lake_rows(lake, "permit")).items():
        if (
            is_test_data(row)
            or clean(row["usrn"]) is None
            or row["work_status_ref"] not in ("in_progress", "completed")
        ):
            continue
        entry = want[(month_date(month), clean(row["usrn"]))]
        entry[0] += 1
        entry[1] += work_score(row)
    got = {
        (r[0], r[1]): (r[2], r[3])
        for r in query(warehouse, "select month, usrn, works, impact_score from mart_street_impact")
    }
    assert set(got) == set(want) and len(got) > 50
    for key, (works, score) in want.items():
        assert got[key][0] == works, key
        assert got[key][1] == pytest.approx(score, rel=1e-9), key
    (top,) = query(warehouse, "select count(*) from mart_street_impact where impact_rank = 1")[0]
    assert top >= len(MONTHS)


def test_collaborative_emergency_and_new_connection_marts_reconcile(built):
    lake, warehouse, touched = built["lake"], built["warehouse"], built["touched"]
    works = [
        row
        for row in month_rows(lake_rows(lake, "permit")).values()
        if not is_test_data(row) and row["work_status_ref"] in ("in_progress", "completed")
    ]

    collab = query(
        warehouse,
        """select sum(works), sum(collaborative_works), sum(non_collaborative_works),
                                        sum(collaboration_unknown_works) from mart_collaborative_works""",
    )[0]
    assert collab == (
        len(works),
        sum(r["collaborative_working"] == "Yes" for r in works),
        sum(r["collaborative_working"] == "No" for r in works),
        sum(r["collaborative_working"] is None for r in works),
    )
    assert collab[1] > 0

    immediate = Counter(
        (month_date(r["_block_month"]), r["work_category"])
        for r in works
        if r["work_category_ref"] in ("immediate_urgent", "immediate_emergency")
    )
    got = dict(
        ((r[0], r[1]), r[2])
        for r in query(warehouse, "select month, work_category, sum(works) from mart_emergency_works group by all")
    )
    assert got == dict(immediate) and sum(got.values()) > 0

    connections = [r for r in works if r["permit_reference_number"] in touched["connections"]]
    assert all(r["activity_type"] == "New service connection" for r in connections)
    (total, activity_types) = query(
        warehouse, "select sum(works), list(distinct activity_type) from mart_new_connections"
    )[0]
    assert total == len(connections) > 0 and activity_types == ["New service connection"]


def test_mart_permits_per_street_reconciles_with_int_permits_latest(built):
    lake, warehouse = built["lake"], built["warehouse"]
    want = defaultdict(Counter)
    for row in latest_per_permit(lake_rows(lake, "permit")).values():
        if is_test_data(row) or clean(row["usrn"]) is None:
            continue
        want[clean(row["usrn"])]["permits"] += 1
        want[clean(row["usrn"])][row["work_status_ref"]] += 1
    got = {
        r[0]: r[1:]
        for r in query(
            warehouse,
            "select usrn, permits, permits_in_progress, permits_completed, permits_planned, permits_cancelled from mart_permits_per_street",
        )
    }
    assert got == {
        u: (c["permits"], c["in_progress"], c["completed"], c["planned"], c["cancelled"]) for u, c in want.items()
    }
    (latest,) = query(warehouse, "select count(*) from int_permits_latest where not is_test_data and usrn is not null")[
        0
    ]
    assert sum(r[0] for r in got.values()) == latest


def test_mart_srwr_activity_summary_reconciles_with_the_lake(built):
    lake, warehouse = built["lake"], built["warehouse"]
    with open(DBT_DIR / "seeds" / "srwr_status_codes.csv", newline="") as handle:
        groups = {row["status_code"]: row["status_group"] for row in csv.DictReader(handle)}
    phases = defaultdict(list)
    for row in srwr_rows(lake, "phase"):
        phases[row["activity_id"]].append(row)
    districts = {row["activity_id"]: row for row in srwr_rows(lake, "district")}
    want = defaultdict(Counter)
    for activity in srwr_rows(lake, "data"):
        own = phases[activity["activity_id"]]
        latest = [p for p in own if p["phase_number"] == activity["latest_phase"]] or sorted(
            own, key=lambda p: p["phase_number"] or -1
        )[-1:]
        district = districts[activity["activity_id"]]
        key = (
            month_date(activity["_block_month"]),
            f"{district['district_key_1']}-{district['district_key_2']}",
            activity["promoter_id"],
        )
        want[key]["activities"] += 1
        want[key][groups.get(latest[0]["status_code"]) if latest else None] += 1
    got = {
        r[:3]: r[3:]
        for r in query(
            warehouse,
            """select month, roads_authority_key, promoter_id, activities,
                                                            works_in_progress, works_completed from mart_srwr_activity_summary""",
        )
    }
    assert got == {k: (c["activities"], c["in_progress"], c["completed"]) for k, c in want.items()}
    assert sum(v[0] for v in got.values()) == len(srwr_rows(lake, "data")) > 0
    from civic_pipelines.replay.srwr import COUNCILS

    names = [r[0] for r in query(warehouse, "select roads_authority from mart_srwr_activity_summary")]
    assert len(names) == len(got) and set(names) <= set(COUNCILS)


def test_relanding_a_month_leaves_one_row_per_permit(built):
    """Republish March with the replay's late edit, land it again (forced) and build again: the
    incremental models replace March whole. The WORK_STOP events added to the first landing are not
    in the republished archive, so those permits fall back to their February event."""
    from civic_pipelines.extract import run_block

    server, lake, warehouse, work = built["server"], built["lake"], built["warehouse"], built["work"]
    before = dict(query(warehouse, "select permit_reference_number, _block_month from int_permits_latest"))
    server.street_manager.configure({"late_edit": {f"permit/{MONTHS[1]}": 1}})
    manifest = run_block("street_manager", MONTHS[1], part="permit", lake=str(lake), force=True)
    assert not manifest["skipped"] and manifest["rows"] == EVENTS["permit"] + 5  # revision 1 adds 5 events
    nodes = dbt_build(work, SELECT)
    assert nodes["int_permits_latest"][0] == nodes["int_permit_months"][0] == "success"
    assert nodes["assert_int_permits_latest_holds_latest_event"] == ("pass", 0)
    assert nodes["assert_no_permit_in_progress_and_completed_in_same_month"] == ("pass", 0)

    landed = lake_rows(lake, "permit")
    want = latest_per_permit(landed)
    rows = query(warehouse, "select permit_reference_number, event_reference, _block_month from int_permits_latest")
    assert len(rows) == len({r[0] for r in rows}) == len(want), "one row per permit after the re-landing"
    assert {r[0]: r[1] for r in rows} == {ref: row["event_reference"] for ref, row in want.items()}
    for ref in built["touched"]["stopped"]:
        assert before[ref] == MONTHS[1] and want[ref]["_block_month"] == MONTHS[0]
    (count,) = query(
        warehouse, f"select count(*) from stg_street_manager__permit_events where _block_month = '{MONTHS[1]}'"
    )[0]
    assert count == EVENTS["permit"] + 5
    month_keys = query(
        warehouse, "select count(*), count(distinct (permit_reference_number, _block_month)) from int_permit_months"
    )[0]
    assert month_keys[0] == month_keys[1] == len(month_rows(landed))
    # the late edit changed traffic management on some March events; the marts see the new landing
    (staged,) = query(
        warehouse,
        """select count(distinct (permit_reference_number, _block_month))
                                    from stg_street_manager__permit_events where not is_test_data""",
    )[0]
    (counted,) = query(warehouse, "select sum(permits) from mart_works_by_month")[0]
    assert counted == staged


# ---------------------------------------------------------------- nothing landed yet


def test_both_selections_build_before_anything_is_landed(tmp_path):
    """A source with no landed block reads as empty (lake_source): both DAGs' selections build on
    an empty lake, and every mart is empty."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIVIC_LAKE", str(lake))
        patch.setenv("CIVIC_WAREHOUSE", str(warehouse))
        nodes = dbt_build(tmp_path, SELECT)
        assert nodes["int_permits_latest"][0] == "success"
        for mart in (
            "mart_works_by_month",
            "mart_street_impact",
            "mart_permits_per_street",
            "mart_srwr_activity_summary",
        ):
            assert query(warehouse, f"select count(*) from {mart}") == [(0,)], mart
