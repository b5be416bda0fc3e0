"""The MDS provider replay: versions and their envelopes, token auth, the not-finished hour,
paging, fault switches and configuration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

ACCEPT = {
    "0.4": "application/vnd.mds.provider+json;version=0.4",
    "1.2": "application/vnd.mds+json;version=1.2",
    "2.0": "application/vnd.mds+json;version=2.0",
}
NOW = "2023-03-01T00:00:00Z"


def configure(server, body: dict) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"mds": body}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["mds"]


@pytest.fixture
def server(replay):
    requests.post(f"{replay.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(replay, {"now": NOW, "trips_per_hour": 2, "events_per_hour": 4, "page_size": 3})
    return replay


def token_for(server, provider: str) -> str:
    p = server.mds.providers[provider]
    response = requests.post(
        server.mds.token_url(provider),
        data={"grant_type": "client_credentials"},
        auth=(p.client_id, p.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    return body["access_token"]


def get(server, provider: str, path: str, token: str | None = None, accept: str | None = None, **params):
    p = server.mds.providers[provider]
    headers = {"Accept": accept or ACCEPT[p.version]}
    if token is None and p.auth == "bearer":
        token = p.token
    if token is None and p.auth == "oauth2":
        token = token_for(server, provider)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{server.mds.base_url(provider)}/{path}", params=params, headers=headers, timeout=10)


def test_default_providers_cover_every_version_and_auth_mode(server):
    described = configure(server, {})
    providers = described["providers"]
    assert {name: (p["version"], p["auth"]) for name, p in providers.items()} == {
        "voi": ("2.0", "oauth2"),
        "lyft": ("2.0", "bearer"),
        "bolt": ("1.2", "bearer"),
        "dott": ("0.4", "oauth2"),
    }
    assert providers["voi"]["base_url"] == f"{server.url}/mds/voi"
    conn = server.mds.connection("dott")
    assert conn["host"] == f"{server.url}/mds/dott" and conn["extra"] == {
        "mds_version": "0.4",
        "auth": "oauth2",
        "token_url": f"{server.url}/mds-auth/dott/token",
    }
    assert server.mds.connection("bolt")["password"] == "replay-bolt-token"


def test_version_04_envelope_not_paged(server):
    response = get(server, "dott", "trips", end_time="2023-02-10T14")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == ACCEPT["0.4"]
    body = response.json()
    assert body["version"] == "0.4.1" and "links" not in body
    trips = body["data"]["trips"]
    assert trips == server.mds.records("dott", "2023-02-10T14")["trips"] and trips
    trip = trips[0]
    assert "propulsion_type" in trip and "propulsion_types" not in trip
    assert len(trip["route"]["features"]) >= 2 and trip["provider_name"] == "dott"
    hour_ms = int(datetime(2023, 2, 10, 14, tzinfo=UTC).timestamp() * 1000)
    assert all(hour_ms <= t["end_time"] < hour_ms + 3_600_000 for t in trips)  # inside the hour asked for
    changes = get(server, "dott", "status_changes", event_time="2023-02-10T14").json()["data"]["status_changes"]
    assert changes == server.mds.records("dott", "2023-02-10T14")["events"]
    assert set(changes[0]) <= {
        "event_type",
        "event_type_reason",
        "event_time",
        "event_location",
        "battery_pct",
        "associated_trip",
        "associated_ticket",
    }
    assert 0 <= changes[0]["battery_pct"] <= 1


def test_version_12_pages_with_links(server):
    hour = "2023-02-11T09"
    want = server.mds.records("bolt", hour)["events"]
    assert len(want) > 3  # enough for several pages of 3
    first = get(server, "bolt", "status_changes", event_time=hour)
    assert first.headers["Content-Type"] == ACCEPT["1.2"]
    body = first.json()
    assert body["version"] == "1.2.0" and len(body["data"]["status_changes"]) == 3
    assert body["links"]["prev"] is None and body["links"]["first"].endswith("page=1")
    got = list(body["data"]["status_changes"])
    link = body["links"]["next"]
    while link:
        page = requests.get(
            link, headers={"Accept": ACCEPT["1.2"], "Authorization": "Bearer replay-bolt-token"}, timeout=10
        ).json()
        got += page["data"]["status_changes"]
        link = page["links"]["next"]
    assert got == want
    trips = get(server, "bolt", "trips", end_time=hour).json()["data"]["trips"]
    assert all("propulsion_types" in t and "propulsion_type" not in t for t in trips)


def test_version_20_envelope_and_voi_quirks(server):
    token = token_for(server, "voi")
    trips = get(server, "voi", "trips", token=token, end_time="2023-02-12T08").json()
    assert trips["version"] == "2.0.0" and "data" not in trips and "links" not in trips
    assert isinstance(trips["last_updated"], dict) and trips["ttl"] == {"ttl": 0}  # Voi's nesting
    assert set(trips["trips"][0]) == {
        "accessibility_attributes",
        "device_id",
        "distance",
        "duration",
        "end_location",
        "end_time",
        "provider_id",
        "start_location",
        "start_time",
        "trip_id",
        "trip_type",
    }
    events, link = [], None
    page = get(server, "voi", "events/historical", token=token, event_time="2023-02-12T08").json()
    while True:
        events += page["events"]
        link = page["links"].get("next")
        if not link:
            assert page["links"] == {}  # Voi's last page: an empty object
            break
        page = requests.get(
            link, headers={"Accept": ACCEPT["2.0"], "Authorization": f"Bearer {token}"}, timeout=10
        ).json()
    assert events == server.mds.records("voi", "2023-02-12T08")["events"]
    assert all(0 <= e["battery_percent"] <= 100 and e["event_id"] for e in events)
    lyft = get(server, "lyft", "trips", end_time="2023-02-12T08").json()
    assert isinstance(lyft["last_updated"], int) and lyft["ttl"] == 0  # no quirks for another operator


def test_hours_not_finished_answer_404(server):
    configure(server, {"now": "2023-02-20T10:30:00Z", "late_hours": {"bolt": ["2023-02-05T03"]}})
    assert get(server, "bolt", "trips", end_time="2023-02-20T09").status_code == 200
    unfinished = get(server, "bolt", "trips", end_time="2023-02-20T10")
    assert unfinished.status_code == 404 and "not finished" in unfinished.json()["error_description"]
    assert set(unfinished.json()) == {"error", "error_description", "error_details"}
    assert get(server, "bolt", "status_changes", event_time="2023-02-05T03").status_code == 404
    assert get(server, "lyft", "trips", end_time="2023-02-05T03").status_code == 200  # held back for bolt only


def test_bad_requests(server):
    assert get(server, "bolt", "trips").status_code == 400
    assert get(server, "bolt", "trips", end_time="2023-02-05").status_code == 400
    assert get(server, "bolt", "trips", end_time="2023-02-30T01").status_code == 400
    wrong_version = get(server, "bolt", "trips", accept=ACCEPT["2.0"], end_time="2023-02-05T01")
    assert wrong_version.status_code == 406 and "1.2" in wrong_version.json()["error_description"]
    assert get(server, "bolt", "events/historical", event_time="2023-02-05T01").status_code == 404
    unknown = requests.get(
        f"{server.url}/mds/nobody/trips",
        params={"end_time": "2023-02-05T01"},
        headers={"Accept": ACCEPT["2.0"]},
        timeout=10,
    )
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error_description"]


def test_token_auth(server):
    p = server.mds.providers["voi"]
    url = server.mds.token_url("voi")
    assert (
        requests.post(
            url, data={"grant_type": "client_credentials"}, auth=(p.client_id, "wrong"), timeout=10
        ).status_code
        == 401
    )
    assert (
        requests.post(url, data={"grant_type": "password"}, auth=(p.client_id, p.client_secret), timeout=10).status_code
        == 400
    )
    assert requests.get(url, timeout=10).status_code == 405
    for token in ("", "not-issued"):
        response = get(server, "voi", "trips", token=token, end_time="2023-02-05T01")
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    dott_token = token_for(server, "dott")
    assert (
        get(server, "voi", "trips", token=dott_token, end_time="2023-02-05T01").status_code == 401
    )  # another provider's
    token = token_for(server, "voi")
    assert get(server, "voi", "trips", token=token, end_time="2023-02-05T01").status_code == 200
    configure(server, {"expire_tokens": True})
    assert get(server, "voi", "trips", token=token, end_time="2023-02-05T01").status_code == 401
    configure(server, {"token_max_uses": 2})
    token = token_for(server, "voi")
    statuses = [get(server, "voi", "trips", token=token, end_time="2023-02-05T01").status_code for _ in range(3)]
    assert statuses == [200, 200, 401]
    assert get(server, "bolt", "trips", token="wrong", end_time="2023-02-05T01").status_code == 401
    assert set(server.mds.issued_tokens()) >= {token, dott_token}


def test_faults_hit_data_routes_not_the_token_endpoint(server):
    requests.post(
        f"{server.url}/_replay/faults", json={"status_429": 1, "retry_after": 0}, timeout=10
    ).raise_for_status()
    token = token_for(server, "voi")  # not throttled
    assert get(server, "voi", "trips", token=token, end_time="2023-02-05T01").status_code == 429
    assert get(server, "voi", "trips", token=token, end_time="2023-02-05T01").status_code == 200
    requests.post(f"{server.url}/_replay/faults", json={"malformed_row": 1}, timeout=10).raise_for_status()
    changes = get(server, "dott", "status_changes", event_time="2023-02-05T01").json()["data"]["status_changes"]
    want = server.mds.records("dott", "2023-02-05T01")["events"]
    assert changes[:-2] == want
    assert "event_time" not in changes[-2] and isinstance(changes[-1]["event_time"], str)


def test_version_12_status_changes_have_the_1x_state_model_and_match_the_published_schema(server):
    """Issue 14 item 4: a 1.2 provider sends vehicle_state / event_types / trip_id (the OMF 1.x
    provider status_changes.json), not 0.4's event_type / event_type_reason; every record the
    replay marks valid passes the published schema, every one it marks invalid fails it."""
    from civic_pipelines.sources import mds

    configure(server, {"invalid_share": 0.2, "events_per_hour": 12})
    seen, states = 0, set()
    for hour in ("2023-02-07T18", "2023-02-11T09", "2023-02-20T02"):
        records = server.mds.records("bolt", hour)
        for index, event in enumerate(records["events"]):
            assert "event_type" not in event and "event_type_reason" not in event
            assert {"provider_name", "device_id", "vehicle_id", "vehicle_type", "propulsion_types"} <= set(event)
            problem = mds.schema_error(event, "1.x", "events")
            if index in records["invalid"]["events"]:
                assert problem == (
                    "schema: battery_pct: 1.7 is greater than the maximum of 1",
                    "schema: battery_pct: maximum",
                )
            else:
                assert problem is None, (event, problem)
                seen += 1
            states.add(event["vehicle_state"])
            assert ("trip_id" in event) == bool({"trip_start", "trip_end"} & set(event["event_types"]))
    assert seen > 20 and {"available", "on_trip", "removed", "non_operational"} <= states


def test_invalid_share_marks_which_records_break(server):
    configure(server, {"invalid_share": 0.5, "trips_per_hour": 10})
    for provider in ("voi", "bolt", "dott"):
        records = server.mds.records(provider, "2023-02-07T18")
        assert records["invalid"]["trips"] and records["invalid"]["events"]
        version = server.mds.providers[provider].version
        for index in records["invalid"]["trips"]:
            trip = records["trips"][index]
            broken = {
                "0.4": isinstance(trip.get("trip_duration"), str),
                "1.2": "propulsion_type" in trip,
                "2.0": "lng" not in trip.get("start_location", {}),
            }[version]
            assert broken
    again = server.mds.records("bolt", "2023-02-07T18")
    assert again == server.mds.records("bolt", "2023-02-07T18")  # deterministic


def test_data_is_deterministic_per_seed_and_hour(server):
    first = server.mds.records("lyft", "2023-02-03T04")
    configure(server, {"trips_per_hour": 2})  # the same settings: the same records
    assert server.mds.records("lyft", "2023-02-03T04") == first
    configure(server, {"trips_per_hour": 6})
    assert server.mds.records("lyft", "2023-02-03T04") != first


def test_configuration(server):
    described = configure(server, {"providers": {"extra": {"version": "1.2", "auth": "none"}, "lyft": None}})
    assert "extra" in described["providers"] and "lyft" not in described["providers"]
    response = requests.get(
        f"{server.mds.base_url('extra')}/trips",
        params={"end_time": "2023-02-05T01"},
        headers={"Accept": ACCEPT["1.2"]},
        timeout=10,
    )
    assert response.status_code == 200  # auth none
    for bad in (
        {"page_size": 0},
        {"invalid_share": 2},
        {"late_hours": ["2023-02-05"]},
        {"colour": 1},
        {"providers": {"x": {"version": "0.3"}}},
        {"now": "soon"},
    ):
        response = requests.post(f"{server.url}/_replay/config", json={"mds": bad}, timeout=10)
        assert response.status_code == 400, bad
    requests.post(f"{server.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    described = configure(server, {})
    assert set(described["providers"]) == {"voi", "lyft", "bolt", "dott"} and not described["now_configured"]
