"""MDS provider feeds without a server: the bundled schemas (the contract's or the publisher's),
the samples and records validated against their versions, normalisation across versions, and
council districts on known points. Configuration, auth and whole blocks: ``test_mds.py``."""

from __future__ import annotations

import copy
import json
import random

import orjson
import pytest
from test_mds import SAMPLES, no_airflow_lookups  # noqa: F401 - no_airflow_lookups is an autouse fixture

from civic_pipelines.sources import mds

# ---------------------------------------------------------------- schemas and normalisation


def test_bundled_schemas_are_the_contract_s_or_the_publisher_s():
    for (family, endpoint), name in mds.SCHEMA_FILES.items():
        document = mds.schema(family, endpoint)
        if family == "1.x":  # the Open Mobility Foundation's own text (mds_schemas/README.md)
            assert document["$id"].startswith(
                "https://raw.githubusercontent.com/openmobilityfoundation/mobility-data-specification/"
            ), name
        else:
            assert "shared/contracts/austin_mds.md" in document["description"], name
        mds.validator(family, endpoint)  # a valid JSON schema
    items = mds.schema("1.x", "events")["properties"]["data"]["properties"]["status_changes"]["items"]
    assert {"vehicle_state", "event_types", "event_time", "event_location"} <= set(items["required"])
    assert "event_type" not in items["properties"] and items["additionalProperties"] is False
    assert (
        mds.schema("1.x", "trips")["properties"]["data"]["properties"]["trips"]["items"]["additionalProperties"]
        is False
    )
    assert "additionalProperties" not in mds.schema("0.4", "trips")


STATUS_12 = {
    "provider_name": "bolt",
    "provider_id": "3c9604d6-b5ee-11e8-96f8-529269fb1459",
    "device_id": "b6a8f3f1-4a4e-4c59-9a36-8f1a6a2b1c11",
    "vehicle_id": "B0A1F",
    "vehicle_type": "scooter",
    "propulsion_types": ["electric"],
    "vehicle_state": "on_trip",
    "event_types": ["trip_start"],
    "event_time": 1675936800123,
    "publication_time": 1675936900000,
    "event_location": {
        "type": "Feature",
        "properties": {"timestamp": 1675936800123},
        "geometry": {"type": "Point", "coordinates": [-97.7431, 30.2672]},
    },
    "battery_pct": 0.84,
    "trip_id": "0c4a3f8e-5d3b-4f0e-9a51-2f6a2f2e7d10",
}


def test_a_12_status_change_validates_and_normalises_like_a_20_event():
    """Issue 14 item 4: every status change of a 1.2 provider was quarantined (the 1.x schema asked
    for 0.4's event_type / event_type_reason)."""
    assert mds.schema_error(STATUS_12, "1.x", "events") is None
    row = mds.event_row(STATUS_12, provider("1.x", "1.2"))
    assert (row["vehicle_state"], row["event_types"], row["trip_ids"]) == (
        "on_trip",
        ["trip_start"],
        [STATUS_12["trip_id"]],
    )
    assert (row["provider_id"], row["device_id"], row["lon"], row["lat"]) == (
        STATUS_12["provider_id"],
        STATUS_12["device_id"],
        -97.7431,
        30.2672,
    )
    assert row["battery_fraction"] == 0.84 and row["event_time"] == STATUS_12["event_time"]
    assert row.get("event_type") is None and row["event_id_derived"] is True
    assert json.loads(row["extras"]) == {
        k: STATUS_12[k] for k in ("provider_name", "vehicle_id", "vehicle_type", "propulsion_types", "publication_time")
    }
    # the published rules still bite: a state with an event it does not allow, a trip event without
    # its trip, the 0.4 names, a battery above 1
    wrong = [
        ({**STATUS_12, "vehicle_state": "removed"}, "schema: (record): oneOf"),
        ({k: v for k, v in STATUS_12.items() if k != "trip_id"}, "schema: (record): anyOf"),
        ({**STATUS_12, "event_type": "reserved"}, "schema: (record): additionalProperties"),
        ({**STATUS_12, "battery_pct": 1.7}, "schema: battery_pct: maximum"),
    ]
    for record, kind in wrong:
        assert mds.schema_error(record, "1.x", "events")[1] == kind
    reason, _ = mds.schema_error(wrong[0][0], "1.x", "events")
    assert reason == "schema: (record): breaks the rule 'valid vehicle_state and vehicle_events combinations'"


def test_the_samples_validate_against_their_versions():
    fixture = json.loads((SAMPLES / "SYNTHETIC_atd-mds_tests_trip_sample_data_valid.json").read_text())
    assert mds.schema_error(fixture, "0.4", "trips") is None
    reason, kind = mds.schema_error(fixture, "1.x", "trips")  # the 0.4 name under 1.x: version drift
    assert reason.startswith("schema: ") and kind.startswith("schema: ")
    voi_trips = json.loads((SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_trips_response.json").read_text())
    assert mds.schema_error(voi_trips["trips"][0], "2.0", "trips") is None
    raw = (SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_events_historical_response.INVALID_JSON.txt").read_bytes()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    events, lenient = mds.loads_lenient(raw)  # the documented trailing comma
    assert lenient and len(events["events"]) == 1
    assert mds.schema_error(events["events"][0], "2.0", "events") is None
    status = json.loads((SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_vehicles_status_response.json").read_text())
    assert mds.schema_error(status["vehicles_status"][0]["last_event"], "2.0", "events") is None


@pytest.mark.parametrize(
    "family, endpoint, record, reason",
    [
        ("0.4", "trips", {"trip_duration": "957"}, "schema: trip_duration: '957' is not of type 'integer'"),
        ("2.0", "events", {"battery_percent": 140}, "schema: battery_percent: 140 is greater than the maximum of 100"),
        ("0.4", "events", {"battery_pct": 84}, "schema: battery_pct: 84 is greater than the maximum of 1"),
        ("2.0", "trips", {"start_location": {"lat": 30.2}}, "schema: start_location: 'lng' is a required property"),
    ],
)
def test_schema_errors_name_the_field(family, endpoint, record, reason):
    base = {
        ("0.4", "trips"): json.loads((SAMPLES / "SYNTHETIC_atd-mds_tests_trip_sample_data_valid.json").read_text()),
        ("2.0", "trips"): json.loads((SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_trips_response.json").read_text())[
            "trips"
        ][0],
        ("2.0", "events"): mds.loads_lenient(
            (SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_events_historical_response.INVALID_JSON.txt").read_bytes()
        )[0]["events"][0],
        ("0.4", "events"): {
            "event_type": "available",
            "event_type_reason": "user_drop_off",
            "event_time": 1,
            "event_location": {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Point", "coordinates": [-97.7, 30.3]},
            },
        },
    }[(family, endpoint)]
    assert mds.schema_error(base, family, endpoint) is None
    assert mds.schema_error({**base, **record}, family, endpoint)[0] == reason


def _mutations(record, rng: random.Random, values: list) -> object:
    """``record`` with one to three random edits, at any depth: a key dropped, a value replaced,
    an unknown key added, a list item dropped, replaced or appended."""
    record = copy.deepcopy(record)
    for _ in range(rng.randint(1, 3)):
        node = record
        while True:
            inner = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))]
            if not inner or rng.random() < 0.5:
                break
            node = rng.choice(inner)
        if not node:
            continue
        slot = rng.choice(sorted(node)) if isinstance(node, dict) else rng.randrange(len(node))
        draw, value = rng.random(), copy.deepcopy(rng.choice(values))
        if draw < 0.3:
            del node[slot]
        elif draw < 0.8:
            node[slot] = value
        elif isinstance(node, dict):
            node[f"unknown_{rng.randrange(3)}"] = value
        else:
            node.append(value)
    return record


@pytest.mark.parametrize("version", ["0.4", "1.2", "2.0"])
@pytest.mark.parametrize("endpoint", ["trips", "events"])
def test_the_compiled_check_accepts_exactly_what_jsonschema_accepts(version, endpoint):
    """The fast path (fastjsonschema) says "valid" without asking jsonschema: it must never accept
    a record jsonschema refuses (that record would land instead of being quarantined), nor refuse
    one it accepts. Checked on the replay's generated records, a fifth of them schema-invalid, the
    malformed-row fault's records, and a few thousand random edits of them: wrong types, nulls,
    floats for integers, booleans for numbers, missing and unknown keys, at every depth."""
    from civic_pipelines.replay.mds_data import generate_hour
    from civic_pipelines.replay.mds_providers import MdsProvider
    from civic_pipelines.replay.mds_record_faults import malformed_records

    family = "1.x" if version == "1.2" else version
    operator = MdsProvider("acme", {"version": version, "auth": "none"})
    records = []
    for hour in range(24):
        hour_text = f"2024-03-05T{hour:02d}"
        generated = generate_hour(operator, hour_text, 7, 4, 4, 20, 0.2)[endpoint]
        records += generated + malformed_records(operator, endpoint, hour_text, generated)
    values = [None, True, False, 0, 1, -1, 1.0, 1.5, 1e20, "", "x", "available", "trip_end", "scooter", [], {}]
    values += [["trip_end"], ["trip_start", "trip_end"], ["rider"], [1], [None], {"lat": 1, "lng": 2}]
    values += [{"type": "Point", "coordinates": [1, 2]}, "11111111-2222-4333-8444-555555555555", 1700000000000, 140]
    rng = random.Random(f"{version}/{endpoint}")
    corpus = records + [_mutations(rng.choice(records), rng, values) for _ in range(2500)]

    reference = mds.validator(family, endpoint)
    fast = mds.compiled_check(family, endpoint)
    verdicts = [(reference.is_valid(record), fast(record)) for record in corpus]
    disagreements = [(record, slow) for record, (slow, quick) in zip(corpus, verdicts) if slow != quick]
    assert disagreements == []
    accepted = sum(slow for slow, _ in verdicts)
    assert accepted >= 100 and len(corpus) - accepted >= 100  # both answers were tried, many times


def provider(family: str, version: str | None = None) -> mds.Provider:
    return mds.Provider(
        name="acme",
        base_url="https://x.example",
        version=version or family.replace("x", "2"),
        family=family,
        auth="none",
    )


def test_trips_normalise_across_versions():
    fixture = json.loads((SAMPLES / "SYNTHETIC_atd-mds_tests_trip_sample_data_valid.json").read_text())
    row = mds.trip_row({**fixture, "fleet_colour": "green"}, provider("0.4"))
    assert (row["start_lon"], row["start_lat"], row["end_lon"], row["end_lat"]) == (
        -97.738363,
        30.2667,
        -97.738561,
        30.25,
    )
    assert row["propulsion_types"] == ["electric"] and row["route_points"] == 2 and row["trip_duration"] == 957
    assert row["currency"] is None and row["extras"] == '{"fleet_colour":"green"}'
    plural = {k: v for k, v in fixture.items() if k != "propulsion_type"} | {"propulsion_types": ["human"]}
    assert mds.trip_row(plural, provider("1.x", "1.2"))["propulsion_types"] == ["human"]
    # The route's points are ordered by timestamp, not by position in the list.
    swapped = json.loads(json.dumps(fixture))
    swapped["route"]["features"][0]["properties"]["timestamp"] += 5
    row = mds.trip_row(swapped, provider("0.4"))
    assert (row["start_lon"], row["end_lon"]) == (-97.738561, -97.738363)
    voi = json.loads((SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_trips_response.json").read_text())["trips"][0]
    row = mds.trip_row(voi, provider("2.0"))
    assert (row["start_lon"], row["start_lat"], row["end_lon"], row["end_lat"]) == (
        18.059523,
        59.311543,
        18.107582,
        59.306113,
    )
    assert (row["trip_duration"], row["trip_distance"], row["trip_type"], row.get("route")) == (
        1652,
        8329,
        ["rider"],
        None,
    )
    assert row["accessibility_attributes"] == "[]" and row["extras"] is None


def test_events_normalise_to_one_battery_scale_and_keys():
    voi = mds.loads_lenient(
        (SAMPLES / "PROVIDER_DOC_EXAMPLE_voi_mds2.0_events_historical_response.INVALID_JSON.txt").read_bytes()
    )[0]["events"][0]
    row = mds.event_row(voi, provider("2.0"))
    assert row["battery_fraction"] == 0.84 and row["event_id"] == "5e61f822-46e1-462f-bbbe-9e8e8fd51191"
    assert not row["event_id_derived"] and row["event_types"] == ["trip_start"] and row["vehicle_state"] == "on_trip"
    assert (row["lon"], row["lat"]) == (18.063965, 59.314285) and row["trip_ids"] == [
        "f4249d42-80ae-467c-90cc-8b53bc070054"
    ]
    change = {
        "event_type": "reserved",
        "event_type_reason": "user_pick_up",
        "event_time": 1581433705000,
        "event_location": {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Point", "coordinates": [-97.74, 30.27]},
        },
        "battery_pct": 0.84,
        "associated_trip": "b3ca5c86-7f45-4544-bf58-111111111111",
    }
    row = mds.event_row(change, provider("0.4"))
    assert row["battery_fraction"] == 0.84 and row["event_id_derived"]
    assert row["trip_ids"] == ["b3ca5c86-7f45-4544-bf58-111111111111"] and row.get("event_types") is None
    # The derived key: the same record always, another record never (key order does not matter).
    assert row["event_id"] == mds.event_row(dict(reversed(list(change.items()))), provider("0.4"))["event_id"]
    assert row["event_id"] != mds.event_row({**change, "battery_pct": 0.83}, provider("0.4"))["event_id"]
    assert row["event_id"] != mds.derived_event_id("other", change)


# ---------------------------------------------------------------- districts


def test_districts_on_known_points(tmp_path, monkeypatch):
    districts = mds.load_districts()
    assert districts.generated and districts.describe()["districts"] == 10
    lons = [-97.90, -97.58, -97.75, -97.864, -98.20, None, -97.94]
    lats = [30.50, 30.12, 30.40, 30.40, 30.30, 30.30, 30.52]
    labels, unmatched = districts.assign(lons, lats)
    # north-west cell, south-east cell, a middle cell of the north row, the border of 1 and 2 (the
    # first listed wins), outside, no point, the grid's north-west corner (on its boundary).
    assert labels == ["1", "10", "3", "1", None, None, "1"]
    assert unmatched == 1
    # The city's own file, through the Variable.
    own = tmp_path / "districts.geojson"
    own.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"district": 7},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[-98, 30], [-97, 30], [-97, 31], [-98, 31], [-98, 30]]],
                        },
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", str(own))
    custom = mds.load_districts()
    assert custom.source == str(own) and not custom.generated
    assert custom.assign([-97.5, -96.5], [30.5, 30.5]) == (["7", None], 1)
    monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "ward")
    with pytest.raises(mds.MdsConfigError, match="none of the properties"):
        mds.load_districts()
