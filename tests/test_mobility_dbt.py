"""Dockless mobility (MDS) in dbt end to end: replay server -> real extractor -> lake -> dbt -> DuckDB.

One month of three providers with different MDS versions (`dott` 0.4 with OAuth2, `bolt` 1.2 with
a bearer token, `voi` 2.0 with Voi's quirks; small hourly volumes) lands in a temporary lake with `run_block("mds", month,
part=provider)`. `dbt build --select tag:mds+` (what the mds DAG runs) must give a fact holding
exactly the landed trips, one row per provider + trip_id, and marts whose figures are the ones
Python computes from the same lake files: trips per Austin day and start district, median distance
and duration per day and month, vehicles deployed per hour, sanity-rule counts per provider and
month. Re-landing a block (forced, after the provider restated the month) must leave one row per
trip, exactly the re-landed block's trips.

The replay never publishes a trip that fails the Austin project's sanity rules, which real feeds
do; so before building, the test rewrites a few landed trips of each provider into each kind of
failure (over 24 h, over 500 miles, start time = end time with a duration, start point = end point
with a duration; one trip fails two rules). They are ordinary rows of the lake contract's schema.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbt_helpers import dbt_build, landed_and_built, query
from replay_env import replay_environment

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt"
MONTH = "2024-02"
# the replay's default providers: name -> MDS version (bolt: issue 14 item 4, its 1.2 status changes
# were all quarantined, so no 1.2 event ever reached the models)
PROVIDERS = {"dott": "0.4", "bolt": "1.2", "voi": "2.0"}
REPLAY_NOW = "2024-03-02T00:00:00Z"  # every hour of February has ended on the replay's clock
VOLUME = {"trips_per_hour": 2, "events_per_hour": 2, "fleet_size": 40}
SELECT = ["tag:mds+"]
AUSTIN = ZoneInfo("America/Chicago")
DEPLOYED = {"available", "reserved", "non_operational", "on_trip", "stopped"}
CONFORMED = {"unavailable": "non_operational"}  # 0.4 / 1.x event_type -> MDS 1.0+ vehicle state
OVER_24_HOURS, OVER_500_MILES = 86_400, 804_672


# ---------------------------------------------------------------- helpers


def providers(server) -> dict[str, str]:
    """One connection per provider, as the replay describes it (each with its MDS version)."""
    env = {}
    for provider, version in PROVIDERS.items():
        connection = server.mds.connection(provider)
        assert connection["extra"]["mds_version"] == version, provider
        env[f"AIRFLOW_CONN_CIVIC_MDS_{provider.upper()}"] = json.dumps(connection)
    return env


def mds_environment(lake: Path, warehouse: Path):
    """A replay server with one connection per provider pointed at it, the providers Variable, and
    the lake/warehouse env vars."""
    return replay_environment(
        lake,
        warehouse,
        connections=providers,
        configure=lambda server: server.mds.configure({"now": REPLAY_NOW, **VOLUME}),
        AIRFLOW_VAR_CIVIC_MDS_PROVIDERS=json.dumps(list(PROVIDERS)),
        # the bundled district grid, without asking Airflow for the Variables
        AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH="",
        AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY="",
        CIVIC_NO_AIRFLOW_LOOKUP="1",
    )


def land(lake: Path, provider: str, force: bool = False) -> dict:
    from civic_pipelines.extract import run_block

    manifest = run_block("mds", MONTH, part=provider, lake=str(lake), force=force)
    assert not manifest["skipped"] and manifest["complete"] and manifest["rows"] > 0, manifest
    return manifest


def block_file(lake: Path, provider: str, table: str = "data") -> Path:
    return lake / "mds" / provider / f"month={MONTH}" / f"{table}.parquet"


def lake_rows(lake: Path, table: str = "data") -> list[dict]:
    rows = []
    for provider in PROVIDERS:
        rows += pq.read_table(block_file(lake, provider, table)).to_pylist()
    return rows


def sanity_flags(trip: dict) -> dict[str, bool]:
    """The four sanity rules, restated from docs/mobility_mds.md (not from the SQL)."""
    duration, distance = trip["trip_duration"], trip["trip_distance"]
    moving = duration is not None and duration > 0
    return {
        "over_24_hours": duration is not None and duration > OVER_24_HOURS,
        "over_500_miles": distance is not None and distance > OVER_500_MILES,
        "zero_span_with_duration": moving and trip["start_time"] == trip["end_time"],
        "same_location_with_duration": moving
        and trip["start_lon"] == trip["end_lon"]
        and trip["start_lat"] == trip["end_lat"],
    }


def austin_date(instant):
    return instant.astimezone(AUSTIN).date()


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


# ---------------------------------------------------------------- what real feeds also hold


def add_sanity_failures(lake: Path) -> dict[str, list[str]]:
    """Rewrite eight trips of each provider's landed block into sanity failures (two per rule, the
    first also over 500 miles). Returns the trip ids touched per provider."""
    touched = {}
    for provider in PROVIDERS:
        path = block_file(lake, provider)
        table = pq.read_table(path)
        rows = table.to_pylist()
        # spread over the month, away from its edges
        picks = [rows[i] for i in range(20, len(rows) - 20, (len(rows) - 40) // 8)][:8]
        assert len(picks) == 8
        for i, trip in enumerate(picks):
            if i < 2:
                trip["trip_duration"] = OVER_24_HOURS + 3600 * (i + 1)
                if i == 0:
                    trip["trip_distance"] = OVER_500_MILES + 1_000  # fails two rules
            elif i < 4:
                trip["trip_distance"] = OVER_500_MILES + 50_000 * i
            elif i < 6:
                trip["start_time"] = trip["end_time"]  # end_time (and so the block) unchanged
            else:
                trip["end_lon"], trip["end_lat"] = trip["start_lon"], trip["start_lat"]
                trip["council_district_end"] = trip["council_district_start"]
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
        touched[provider] = [t["trip_id"] for t in picks]
    return touched


# ---------------------------------------------------------------- the month, built


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("mobility_dbt")

    def land_every_provider(lake: Path) -> dict:
        return {provider: land(lake, provider) for provider in PROVIDERS}

    with landed_and_built(work, mds_environment, land_every_provider, SELECT, amend=add_sanity_failures) as built:
        yield built
        print("timings:", {k: round(v, 1) for k, v in built["timings"].items()})


def test_every_model_and_test_of_the_selection_ran(built):
    nodes = built["nodes"]
    for model in (
        "stg_mds__trips",
        "stg_mds__events",
        "stg_mds__hours",
        "fct_mobility_trips",
        "mart_mobility_trips_daily",
        "mart_mobility_trip_stats",
        "mart_mobility_vehicles_hourly",
        "mart_mobility_trip_sanity",
    ):
        assert nodes[model][0] == "success", (model, nodes.get(model))
    assert nodes["assert_fct_mobility_trips_block_not_above_landed"] == ("pass", 0)
    # nothing from another source's selection
    assert not any(name.startswith(("stg_seattle", "stg_street_manager", "fct_service")) for name in nodes)
    # the only warnings allowed are none: the replay's values are all inside the accepted lists
    assert not [name for name, (status, _) in nodes.items() if status == "warn"]


def test_fact_holds_every_landed_trip_once(built):
    lake, warehouse, manifests = built["lake"], built["warehouse"], built["manifests"]
    versions = dict(query(warehouse, "select provider, any_value(mds_version) from fct_mobility_trips group by 1"))
    assert versions == PROVIDERS
    counts = dict(query(warehouse, "select provider, count(*) from fct_mobility_trips group by 1"))
    for provider in PROVIDERS:
        landed = pq.read_metadata(block_file(lake, provider)).num_rows
        assert counts[provider] == landed == manifests[provider]["rows"], provider
    (rows, keys) = query(warehouse, "select count(*), count(distinct (provider, trip_id)) from fct_mobility_trips")[0]
    assert rows == keys == sum(counts.values())
    landed_ids = {(t["provider"], t["trip_id"]) for t in lake_rows(lake)}
    fact_ids = set(query(warehouse, "select provider, trip_id from fct_mobility_trips"))
    assert fact_ids == landed_ids
    # 0.4 and 1.x carry vehicle_type and propulsion, 2.0 has neither
    typed = dict(query(warehouse, "select provider, count(vehicle_type) from fct_mobility_trips group by 1"))
    assert typed["dott"] == counts["dott"] and typed["bolt"] == counts["bolt"] and typed["voi"] == 0


def test_daily_mart_reconciles_with_the_fact_and_the_lake(built):
    lake, warehouse = built["lake"], built["warehouse"]
    fact_totals = dict(query(warehouse, "select provider, count(*) from fct_mobility_trips group by 1"))
    mart_totals = dict(
        query(warehouse, "select provider, sum(trips)::bigint from mart_mobility_trips_daily group by 1")
    )
    assert mart_totals == fact_totals
    # per Austin day and start district, from the lake files
    expected = Counter(
        (t["provider"], austin_date(t["start_time"]), t["council_district_start"]) for t in lake_rows(lake)
    )
    got = {
        (p, d, c): n
        for p, d, c, n in query(
            warehouse, "select provider, trip_date, council_district, trips from mart_mobility_trips_daily"
        )
    }
    assert got == dict(expected)
    assert any(district is None for _, _, district in got), "some starts fall outside every district"
    # the failing trips are counted in the daily mart too, not dropped
    failing = dict(
        query(warehouse, "select provider, sum(trips_failing_sanity)::bigint from mart_mobility_trips_daily group by 1")
    )
    assert failing == {p: 8 for p in PROVIDERS}


def test_median_distance_and_duration_match_python(built):
    lake, warehouse = built["lake"], built["warehouse"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for trip in lake_rows(lake):
        day = austin_date(trip["start_time"])
        groups[(trip["provider"], "day", day)].append(trip)
        groups[(trip["provider"], "month", day.replace(day=1))].append(trip)
    mart = {
        (p, period, start): rest
        for p, period, start, *rest in query(
            warehouse,
            """
        select provider, period, period_start, trips, median_distance_meters, median_duration_seconds,
               trips_passing, median_distance_meters_passing, median_duration_seconds_passing
        from mart_mobility_trip_stats""",
        )
    }
    assert set(mart) == set(groups)
    for key, trips in groups.items():
        passing = [t for t in trips if not any(sanity_flags(t).values())]
        n, distance, duration, n_passing, distance_passing, duration_passing = mart[key]
        assert n == len(trips) and n_passing == len(passing), key
        assert close(distance, statistics.median(t["trip_distance"] for t in trips)), key
        assert close(duration, statistics.median(t["trip_duration"] for t in trips)), key
        assert close(distance_passing, statistics.median(t["trip_distance"] for t in passing) if passing else None), key
        assert close(duration_passing, statistics.median(t["trip_duration"] for t in passing) if passing else None), key
    # the month rows partition each provider's trips (a few start on January 31st, Austin time)
    per_provider = Counter()
    for (provider, period, _), values in mart.items():
        per_provider[provider] += values[0] if period == "month" else 0
    assert per_provider == Counter(t["provider"] for t in lake_rows(lake))


def test_sanity_counts_match_python(built):
    lake, warehouse, touched = built["lake"], built["warehouse"], built["touched"]
    expected = defaultdict(Counter)
    for trip in lake_rows(lake):
        flags = sanity_flags(trip)
        counts = expected[(trip["provider"], trip["_block_month"])]
        counts["trips"] += 1
        for rule, failed in flags.items():
            counts[rule] += failed
        counts["failing"] += any(flags.values())
    rows = query(
        warehouse,
        """
        select provider, block_month, trips, trips_over_24_hours, trips_over_500_miles,
               trips_zero_span_with_duration, trips_same_location_with_duration, trips_failing
        from mart_mobility_trip_sanity""",
    )
    got = {
        (p, m): dict(
            zip(
                (
                    "trips",
                    "over_24_hours",
                    "over_500_miles",
                    "zero_span_with_duration",
                    "same_location_with_duration",
                    "failing",
                ),
                rest,
            )
        )
        for p, m, *rest in rows
    }
    assert got == {key: {name: counts[name] for name in got[key]} for key, counts in expected.items()}
    for provider in PROVIDERS:
        # the eight rewritten trips: two per rule, one of them failing two rules
        assert got[(provider, MONTH)] | {"trips": 0} == {
            "trips": 0,
            "over_24_hours": 2,
            "over_500_miles": 3,
            "zero_span_with_duration": 2,
            "same_location_with_duration": 2,
            "failing": 8,
        }, provider
    # the fact keeps them, flagged
    ids = ", ".join(f"'{i}'" for ids in touched.values() for i in ids)
    flagged = query(
        warehouse,
        f"select count(*), count(*) filter (where fails_sanity_rules) from fct_mobility_trips where trip_id in ({ids})",
    )
    assert flagged == [(8 * len(PROVIDERS), 8 * len(PROVIDERS))]
    (all_failing,) = query(warehouse, "select count(*) from fct_mobility_trips where fails_sanity_rules")[0]
    assert all_failing == 8 * len(PROVIDERS)


def test_vehicles_deployed_per_hour_match_python(built):
    lake, warehouse = built["lake"], built["warehouse"]
    trip_devices = {(t["provider"], t["trip_id"]): t["device_id"] for t in lake_rows(lake) if t["device_id"]}
    deployed, available, without_device, events = defaultdict(set), defaultdict(set), Counter(), Counter()
    for event in lake_rows(lake, "events"):
        key = (event["provider"], event["event_time"].replace(minute=0, second=0, microsecond=0))
        events[key] += 1
        state = event["vehicle_state"] or CONFORMED.get(event["event_type"], event["event_type"])
        device = event["device_id"] or (json.loads(event["extras"]).get("device_id") if event["extras"] else None)
        if device is None and event["trip_ids"]:
            device = trip_devices.get((event["provider"], event["trip_ids"][0]))
        if state in DEPLOYED:
            if device is None:
                without_device[key] += 1
            else:
                deployed[key].add(device)
        if state == "available" and device is not None:
            available[key].add(device)
    rows = query(
        warehouse,
        """
        select provider, hour_start, hour_complete, events, vehicles_deployed, vehicles_available,
               deployed_events_without_device
        from mart_mobility_vehicles_hourly""",
    )
    # one row per hour of each landed block, every hour complete
    assert Counter(r[0] for r in rows) == {p: 29 * 24 for p in PROVIDERS}
    assert all(r[2] is True for r in rows)
    for provider, hour, _, n_events, n_deployed, n_available, n_without in rows:
        key = (provider, hour)
        assert (n_events, n_deployed, n_available, n_without) == (
            events[key],
            len(deployed[key]),
            len(available[key]),
            without_device[key],
        ), key
    totals = {p: (sum(r[4] for r in rows if r[0] == p), sum(r[6] for r in rows if r[0] == p)) for p in PROVIDERS}
    # 2.0 events name their device; 0.4 status changes do not (and the replay's associated trips
    # are not among its trips), so dott's deployed-state events are all without a device
    assert totals["voi"][0] > 0 and totals["voi"][1] == 0
    assert totals["dott"][0] == 0 and totals["dott"][1] > 0
    # 1.x status changes carry vehicle_state and their device, as 2.0 events do
    assert totals["bolt"][0] > 0 and totals["bolt"][1] == 0


def test_12_status_changes_reach_the_conformed_event_columns(built):
    """Issue 14 item 4: a 1.2 provider's vehicle_state / event_types / trip_id land in
    stg_mds__events' conformed columns, as 2.0's do (0.4's event_type is mapped)."""
    lake, warehouse = built["lake"], built["warehouse"]
    landed = [e for e in lake_rows(lake, "events") if e["provider"] == "bolt"]
    assert landed and all(e["vehicle_state"] and e["event_types"] for e in landed)
    staged = {
        r[0]: r[1:]
        for r in query(
            warehouse,
            """
        select event_id, vehicle_state, vehicle_state_published, event_types, associated_trip_id, device_id
        from stg_mds__events where provider = 'bolt'""",
        )
    }
    assert len(staged) == len(landed)
    for event in landed:
        state, published, types, trip, device = staged[event["event_id"]]
        assert state == published == event["vehicle_state"] and list(types) == event["event_types"]
        assert trip == (event["trip_ids"][0] if event["trip_ids"] else None) and device == event["device_id"]


def test_relanding_a_block_leaves_one_row_per_trip(built):
    server, lake, warehouse, work = built["server"], built["lake"], built["warehouse"], built["work"]
    before = dict(query(warehouse, "select provider, max(_landed_at) from fct_mobility_trips group by 1"))

    # dott restates February (fewer trips an hour): a forced run re-lands the block whole
    server.mds.configure({"trips_per_hour": 1})
    started = time.monotonic()
    manifest = land(lake, "dott", force=True)
    built["timings"]["reland"] = time.monotonic() - started
    started = time.monotonic()
    nodes = dbt_build(work, SELECT)
    built["timings"]["dbt_rebuild"] = time.monotonic() - started
    assert nodes["fct_mobility_trips"][0] == "success"
    assert nodes["assert_fct_mobility_trips_block_not_above_landed"] == ("pass", 0)

    landed = {(t["provider"], t["trip_id"]) for t in pq.read_table(block_file(lake, "dott")).to_pylist()}
    assert len(landed) == manifest["rows"]
    fact = query(warehouse, "select provider, trip_id from fct_mobility_trips where provider = 'dott'")
    assert len(fact) == len(set(fact)) == len(landed) and set(fact) == landed, "exactly the re-landed block's trips"
    (rows, keys) = query(warehouse, "select count(*), count(distinct (provider, trip_id)) from fct_mobility_trips")[0]
    assert rows == keys
    after = dict(query(warehouse, "select provider, max(_landed_at) from fct_mobility_trips group by 1"))
    assert after["voi"] == before["voi"], "the other provider's block is kept"
    assert after["dott"] > before["dott"], "the re-landed block is replaced"
    # the marts follow: the rewritten sanity failures are gone with the old landing
    assert dict(query(warehouse, "select provider, trips_failing from mart_mobility_trip_sanity")) == {
        "dott": 0,
        "bolt": 8,
        "voi": 8,
    }
    fact_totals = dict(query(warehouse, "select provider, count(*) from fct_mobility_trips group by 1"))
    daily = dict(query(warehouse, "select provider, sum(trips)::bigint from mart_mobility_trips_daily group by 1"))
    assert daily == fact_totals and fact_totals["dott"] == len(landed)
