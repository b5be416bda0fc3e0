"""The replay server's Minneapolis 311 (ArcGIS REST feature layers, one per year) and its dataset."""

from __future__ import annotations

import pytest
import requests

from civic_pipelines.replay.arcgis import MINNEAPOLIS_PATH, Where, install_minneapolis
from civic_pipelines.replay.minneapolis import CATEGORIES, FIELD_NAMES, FIELDS, Minneapolis311Dataset, month_bounds_ms
from civic_pipelines.replay.server import ReplayServer

FEB = "2024-02"
FEB_WHERE = "OPENEDDATETIME >= DATE '2024-02-01 00:00:00' AND OPENEDDATETIME < DATE '2024-03-01 00:00:00'"
CONTRACT_TYPES = {
    "OBJECTID": "esriFieldTypeOID",
    "CASEID": "esriFieldTypeDouble",
    "SUBJECTNAME": "esriFieldTypeString",
    "REASONNAME": "esriFieldTypeString",
    "TYPENAME": "esriFieldTypeString",
    "TITLE": "esriFieldTypeString",
    "OPENEDDATETIME": "esriFieldTypeDate",
    "CASESTATUS": "esriFieldTypeInteger",
    "CLOSEDDATETIME": "esriFieldTypeDate",
    "XCOORD": "esriFieldTypeDouble",
    "YCOORD": "esriFieldTypeDouble",
    "LastUpdateDate": "esriFieldTypeDate",
    "IsAccessibilityRelated": "esriFieldTypeString",
}


def _start(**dataset_kwargs) -> tuple[ReplayServer, Minneapolis311Dataset]:
    server = ReplayServer("127.0.0.1", 0)
    dataset = install_minneapolis(server, Minneapolis311Dataset(**dataset_kwargs) if dataset_kwargs else None)
    server.start()
    return server, dataset


@pytest.fixture(scope="module")
def served():
    server, dataset = _start()
    yield server, dataset
    server.stop()


@pytest.fixture
def server(served):
    srv = served[0]
    srv.state.reset()
    return srv


@pytest.fixture
def dataset(served):
    return served[1]


@pytest.fixture
def fresh():
    """Private servers for tests that change data or configuration."""
    servers = []

    def make(**kwargs):
        srv, ds = _start(**kwargs)
        servers.append(srv)
        return srv, ds

    yield make
    for srv in servers:
        srv.stop()


def layer(srv, year: int = 2024) -> str:
    return srv.url + MINNEAPOLIS_PATH.format(year=year)


def query(srv, year: int = 2024, session=None, **params) -> requests.Response:
    params.setdefault("f", "json")
    return (session or requests).get(layer(srv, year) + "/query", params=params, timeout=60)


def page_month(srv, where: str, record_count: int | None = None) -> list[dict]:
    pages, offset = [], 0
    with requests.Session() as session:
        while True:
            params = {
                "where": where,
                "outFields": "*",
                "orderByFields": "OBJECTID ASC",
                "resultOffset": offset,
                "returnGeometry": "false",
            }
            if record_count is not None:
                params["resultRecordCount"] = record_count
            response = query(srv, session=session, **params)
            assert response.status_code == 200
            body = response.json()
            assert "error" not in body, body
            pages.append(body)
            if not body.get("exceededTransferLimit"):
                return pages
            offset += len(body["features"])
            assert len(pages) < 100


# ---------------------------------------------------------------- metadata


def test_layer_metadata(server, dataset):
    for f in ("json", "pjson"):
        response = requests.get(layer(server), params={"f": f}, timeout=30)
        assert response.status_code == 200
        meta = response.json()
        assert meta["maxRecordCount"] == 2000
        assert meta["objectIdField"] == "OBJECTID"
        assert meta["geometryType"] == "esriGeometryPoint"
        assert meta["name"] == "Public_311_2024"
        assert meta["advancedQueryCapabilities"]["supportsPagination"] is True
        info = meta["editingInfo"]
        assert set(info) == {"lastEditDate", "schemaLastEditDate", "dataLastEditDate"}
        assert all(isinstance(v, int) for v in info.values())
        assert info["lastEditDate"] == info["dataLastEditDate"] == dataset.last_edit_date
        assert {fld["name"]: fld["type"] for fld in meta["fields"]} == CONTRACT_TYPES
        assert [fld["name"] for fld in meta["fields"]] == FIELD_NAMES
    # the capitalised spelling of the path and the service root
    assert (
        requests.get(layer(server).replace("/arcgis/", "/ArcGIS/"), params={"f": "json"}, timeout=30).json()[
            "maxRecordCount"
        ]
        == 2000
    )
    service = requests.get(layer(server)[: -len("/0")], params={"f": "json"}, timeout=30).json()
    assert service["layers"][0]["id"] == 0 and service["maxRecordCount"] == 2000


def test_every_year_has_a_layer_and_others_are_invalid_urls(server):
    for year in (2015, 2020, 2026):
        meta = requests.get(layer(server, year), params={"f": "json"}, timeout=30).json()
        assert meta["name"] == f"Public_311_{year}"
    for url in (
        layer(server, 2014),
        layer(server, 2027),
        layer(server)[:-1] + "1",
        server.url + "/afSMGVsC7QlRK1kZ/arcgis/rest/services/Nope/FeatureServer/0",
    ):
        response = requests.get(url + "/query", params={"where": "1=1", "f": "json"}, timeout=30)
        assert response.status_code == 200
        assert response.json() == {"error": {"code": 400, "message": "Invalid URL", "details": ["Invalid URL"]}}


# ---------------------------------------------------------------- paging


def test_paging_a_month_returns_exactly_the_month(server, dataset):
    expected = dataset.rows_for_month(FEB)
    assert 4000 <= len(expected) <= 8000
    pages = page_month(server, FEB_WHERE, record_count=1000)
    assert len(pages) == -(-len(expected) // 1000)
    assert [p.get("exceededTransferLimit") for p in pages[:-1]] == [True] * (len(pages) - 1)
    assert "exceededTransferLimit" not in pages[-1]
    got = [feature["attributes"] for page in pages for feature in page["features"]]
    ids = [row["OBJECTID"] for row in got]
    assert len(got) == len(expected)
    assert len(set(ids)) == len(ids), "pages overlap"
    assert set(ids) == {row["OBJECTID"] for row in expected}
    assert ids == sorted(ids)
    assert got == expected  # same attributes, dates as epoch-ms ints
    assert all("geometry" not in f for page in pages for f in page["features"])
    details = [d for d in server.state.request_details() if d["path"].endswith("/query")]
    assert [dict(d["params"])["resultOffset"] for d in details] == [str(1000 * i) for i in range(len(pages))]


def test_default_page_is_max_record_count_and_larger_requests_are_capped(server, dataset):
    expected = dataset.rows_for_month(FEB)
    pages = page_month(server, FEB_WHERE)  # no resultRecordCount: pages of maxRecordCount
    assert [len(p["features"]) for p in pages[:-1]] == [2000] * (len(pages) - 1)
    assert sum(len(p["features"]) for p in pages) == len(expected)
    body = query(server, where=FEB_WHERE, outFields="*", resultRecordCount=5000).json()
    assert len(body["features"]) == 2000 and body["exceededTransferLimit"] is True


def test_max_record_count_is_configurable(fresh):
    srv, ds = fresh(rows_per_month=700)
    result = requests.post(
        f"{srv.url}/_replay/config", json={"minneapolis_311": {"max_record_count": 300}}, timeout=30
    ).json()
    assert result["minneapolis_311"]["max_record_count"] == 300
    assert requests.get(layer(srv), params={"f": "json"}, timeout=30).json()["maxRecordCount"] == 300
    pages = page_month(srv, FEB_WHERE, record_count=1000)
    assert [len(p["features"]) for p in pages] == [300, 300, 100]
    assert [row["attributes"]["OBJECTID"] for p in pages for row in p["features"]] == [
        row["OBJECTID"] for row in ds.rows_for_month(FEB)
    ]


def test_count_and_ids(server, dataset):
    feb = dataset.rows_for_month(FEB)
    assert query(server, where=FEB_WHERE, returnCountOnly="true").json() == {"count": len(feb)}
    year_count = query(server, where="1=1", returnCountOnly="true").json()
    assert year_count == {"count": dataset.layer_count(2024)}
    ids = query(server, where=FEB_WHERE, returnIdsOnly="true").json()
    assert ids == {"objectIdFieldName": "OBJECTID", "objectIds": [row["OBJECTID"] for row in feb]}


def test_object_id_window_paging(server, dataset):
    """The contract's id paging: returnIdsOnly, then windows of ``objectID >= a AND objectID < a+1000``."""
    ids = query(server, where=FEB_WHERE, returnIdsOnly="true").json()["objectIds"]
    got = []
    for a in range(min(ids), max(ids) + 1, 1000):
        body = query(
            server,
            where=f"objectID >= {a} AND objectID < {a}+1000 AND OBJECTID <= {max(ids)}",
            outFields="*",
            returnGeometry="false",
        ).json()
        assert "exceededTransferLimit" not in body
        got.extend(f["attributes"] for f in body["features"])
    assert got == dataset.rows_for_month(FEB)


def test_incremental_where_timestamp_and_out_fields(server, dataset):
    rows = dataset.layer_rows(2024)
    mark = 1_709_251_200_000  # 2024-03-01 00:00:00 UTC
    where = "openeddatetime > DATE '2024-03-01 00:00:00' OR lastupdatedate > TIMESTAMP '2024-03-01 00:00:00'"
    body = query(server, where=where, returnCountOnly="true").json()
    assert body["count"] == sum(1 for r in rows if r["OPENEDDATETIME"] > mark or r["LastUpdateDate"] > mark)
    body = query(
        server,
        where=f"{FEB_WHERE} AND CASESTATUS = 1",
        outFields="objectid,CaseStatus,TYPENAME",
        outSR=4326,
        resultRecordCount=50,
    ).json()
    assert [f["name"] for f in body["fields"]] == ["OBJECTID", "CASESTATUS", "TYPENAME"]
    assert body["spatialReference"]["wkid"] == 4326
    for feature in body["features"]:
        assert set(feature["attributes"]) == {"OBJECTID", "CASESTATUS", "TYPENAME"}
        assert feature["attributes"]["CASESTATUS"] == 1
        assert -93.33 <= feature["geometry"]["x"] <= -93.19 and 44.89 <= feature["geometry"]["y"] <= 45.06
    native = query(server, where=FEB_WHERE, outFields="XCOORD,YCOORD", resultRecordCount=5).json()
    for feature in native["features"]:
        assert feature["geometry"] == {"x": feature["attributes"]["XCOORD"], "y": feature["attributes"]["YCOORD"]}


@pytest.mark.parametrize(
    "where,expected",
    [
        ("1=1", True),
        ("1=0", False),
        ("OBJECTID = 5", True),
        ("objectid between 4 and 6 and not (objectid in (1, 2))", True),
        ("TYPENAME = 'pothole'", True),  # strings compare case-insensitively
        ("TYPENAME LIKE 'Pot%'", True),
        ("CLOSEDDATETIME IS NULL", True),
        ("CLOSEDDATETIME IS NOT NULL OR OPENEDDATETIME >= TIMESTAMP '2024-02-10 12:00:00.500'", False),
        ("OPENEDDATETIME < CURRENT_TIMESTAMP - INTERVAL '7' DAY", True),
        ("OPENEDDATETIME = DATE '2024-02-10 12:00:00'", True),
    ],
)
def test_where_subset(where, expected):
    types = {name: kind for name, kind, _length in FIELDS}
    row = {"OBJECTID": 5, "TYPENAME": "Pothole", "CLOSEDDATETIME": None, "OPENEDDATETIME": 1_707_566_400_000}
    assert Where(where, types).matches(row) is expected


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "params",
    [
        {"where": "OPENEDDATETIME >"},  # syntax
        {"where": "NOSUCHFIELD = 1"},  # unknown field
        {"where": "OPENEDDATETIME > 1706745600000"},  # epoch number on a date field (not in the contract)
        {"where": "TYPENAME = 5"},
        {"where": "1=1", "outFields": "OBJECTID,NOPE"},
        {"where": "1=1", "orderByFields": "NOPE ASC"},
        {"where": "1=1", "resultOffset": "x"},
        {"where": ""},
    ],
)
def test_errors_are_the_arcgis_envelope_on_http_200(server, params):
    response = query(server, **params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == 400
    assert body["error"]["message"] == "Cannot perform query. Invalid query parameters."
    assert isinstance(body["error"]["details"], list) and body["error"]["details"]
    assert response.headers["X-Replay-Error"]


def test_epoch_dates_can_be_accepted_by_config(fresh):
    srv, ds = fresh(rows_per_month=50)
    requests.post(f"{srv.url}/_replay/config", json={"minneapolis_311": {"accept_epoch_dates": True}}, timeout=30)
    start, end = month_bounds_ms(FEB)
    body = query(srv, where=f"OPENEDDATETIME >= {start} AND OPENEDDATETIME < {end}", returnCountOnly="true").json()
    assert body == {"count": 50}


# ---------------------------------------------------------------- late edits and watermarks


def test_late_edit_bumps_last_edit_date_and_changes_exactly_n_rows(fresh):
    srv, ds = fresh()
    before = {r["OBJECTID"]: r for r in ds.rows_for_month(FEB)}
    jan_before = ds.rows_for_month("2024-01")
    meta_2024 = requests.get(layer(srv), params={"f": "json"}, timeout=30).json()["editingInfo"]
    meta_2023 = requests.get(layer(srv, 2023), params={"f": "json"}, timeout=30).json()["editingInfo"]
    result = requests.post(
        f"{srv.url}/_replay/config", json={"minneapolis_311": {"late_edits": {"month": FEB, "n": 5}}}, timeout=30
    ).json()
    edit = result["minneapolis_311"]["late_edits"][0]
    assert len(edit["object_ids"]) == 5
    after_meta = requests.get(layer(srv), params={"f": "json"}, timeout=30).json()["editingInfo"]
    assert after_meta["lastEditDate"] > meta_2024["lastEditDate"]
    assert after_meta["dataLastEditDate"] == after_meta["lastEditDate"] == edit["lastEditDate"]
    assert after_meta["schemaLastEditDate"] == meta_2024["schemaLastEditDate"]
    assert requests.get(layer(srv, 2023), params={"f": "json"}, timeout=30).json()["editingInfo"] == meta_2023
    after = {f["attributes"]["OBJECTID"]: f["attributes"] for p in page_month(srv, FEB_WHERE) for f in p["features"]}
    assert set(after) == set(before)
    changed = sorted(oid for oid in before if before[oid] != after[oid])
    assert changed == sorted(edit["object_ids"])
    for oid in changed:
        old, new = before[oid], after[oid]
        assert (old["CASESTATUS"], old["CLOSEDDATETIME"]) != (new["CASESTATUS"], new["CLOSEDDATETIME"])
        assert new["LastUpdateDate"] == edit["lastEditDate"]
        assert {k for k in old if old[k] != new[k]} <= {"CASESTATUS", "CLOSEDDATETIME", "LastUpdateDate"}
    assert ds.rows_for_month("2024-01") == jan_before
    # a watermark client finds exactly the edited rows
    mark = meta_2024["dataLastEditDate"]
    body = query(srv, where=f"LastUpdateDate > TIMESTAMP '{_fmt(mark)}'", returnIdsOnly="true").json()
    assert sorted(body["objectIds"]) == changed
    # data reset restores the generated state
    requests.post(f"{srv.url}/_replay/reset", json={"data": True}, timeout=30)
    assert ds.rows_for_month(FEB) == list(before.values())
    assert ds.layer_last_edit_date(2024) == meta_2024["lastEditDate"]


def _fmt(ms: int) -> str:
    from civic_pipelines.replay.minneapolis import fmt_ms

    return fmt_ms(ms)


def test_rows_per_month_config(fresh):
    srv, ds = fresh()
    requests.post(f"{srv.url}/_replay/config", json={"minneapolis_311": {"rows_per_month": 120}}, timeout=30)
    assert query(srv, where=FEB_WHERE, returnCountOnly="true").json() == {"count": 120}
    assert query(srv, where="1=1", returnCountOnly="true").json() == {"count": 1440}
    bad = requests.post(f"{srv.url}/_replay/config", json={"minneapolis_311": {"nope": 1}}, timeout=30)
    assert bad.status_code == 400


# ---------------------------------------------------------------- faults


def test_arcgis_error_fault(server):
    ok = query(server, where=FEB_WHERE, returnCountOnly="true").json()
    requests.post(f"{server.url}/_replay/config", json={"arcgis": {"arcgis_error": 2}}, timeout=30)
    for _ in range(2):
        response = query(server, where=FEB_WHERE, returnCountOnly="true")
        assert response.status_code == 200
        assert response.json()["error"]["code"] == 500
    # metadata is not faulted; the third query succeeds
    assert "error" not in requests.get(layer(server), params={"f": "json"}, timeout=30).json()
    assert query(server, where=FEB_WHERE, returnCountOnly="true").json() == ok
    # reset clears a pending fault
    requests.post(f"{server.url}/_replay/config", json={"arcgis": {"arcgis_error": 3}}, timeout=30)
    requests.post(f"{server.url}/_replay/reset", json={}, timeout=30)
    assert query(server, where=FEB_WHERE, returnCountOnly="true").json() == ok


def test_generic_faults_apply_to_queries_only(server, dataset):
    requests.post(f"{server.url}/_replay/faults", json={"status_503": 1, "status_429": 1, "retry_after": 2}, timeout=30)
    assert requests.get(layer(server), params={"f": "json"}, timeout=30).status_code == 200
    first = query(server, where="1=1", returnCountOnly="true")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert query(server, where="1=1", returnCountOnly="true").status_code == 503
    assert query(server, where="1=1", returnCountOnly="true").status_code == 200
    requests.post(f"{server.url}/_replay/faults", json={"duplicate_row": 1, "malformed_row": 1}, timeout=30)
    body = query(server, where=FEB_WHERE, outFields="*", resultRecordCount=100).json()
    features = body["features"]
    assert len(features) == 103
    assert sum(1 for f in features if "OBJECTID" not in f["attributes"]) == 1
    assert sum(1 for f in features if f["attributes"]["OPENEDDATETIME"] == "not-a-date") == 1
    assert features[-1]["attributes"]["OBJECTID"] == features[0]["attributes"]["OBJECTID"]
    requests.post(f"{server.url}/_replay/faults", json={"reset_mid_page": 1}, timeout=30)
    with pytest.raises(requests.exceptions.RequestException):
        query(server, where=FEB_WHERE, outFields="*").json()
    assert len(query(server, where=FEB_WHERE, outFields="*").json()["features"]) == 2000


# ---------------------------------------------------------------- the data


def test_determinism():
    a = Minneapolis311Dataset(seed=7)
    b = Minneapolis311Dataset(seed=7)
    c = Minneapolis311Dataset(seed=8)
    assert a.rows_for_month(FEB) == b.rows_for_month(FEB)
    assert a.rows_for_month(FEB) != c.rows_for_month(FEB)
    assert a.apply_late_edits(FEB, 4) == b.apply_late_edits(FEB, 4)
    assert a.rows_for_month(FEB) == b.rows_for_month(FEB)


def test_wire_form_and_vocabulary(dataset):
    rows = dataset.rows_for_month(FEB)
    start, end = month_bounds_ms(FEB)
    vocabulary = {(s, r, t, ti) for s, r, t, ti in CATEGORIES}
    assert len({s for s, *_ in CATEGORIES}) == 12 and len(CATEGORIES) >= 177
    for row in rows:
        assert list(row) == FIELD_NAMES
        assert start <= row["OPENEDDATETIME"] < end and isinstance(row["OPENEDDATETIME"], int)
        assert isinstance(row["LastUpdateDate"], int) and isinstance(row["CASEID"], int)
        assert row["CLOSEDDATETIME"] is None or isinstance(row["CLOSEDDATETIME"], int)
        assert row["CASESTATUS"] in (0, 1)
        assert (row["SUBJECTNAME"], row["REASONNAME"], row["TYPENAME"], row["TITLE"]) in vocabulary
        assert row["IsAccessibilityRelated"] in ("No", "Yes")
    # the contract's dirty rows exist: repeated CASEIDs, closed before opened, status vs close date
    year = dataset.layer_rows(2024)
    assert len({r["CASEID"] for r in year}) < len(year)
    assert any(r["CLOSEDDATETIME"] is not None and r["CLOSEDDATETIME"] < r["OPENEDDATETIME"] for r in year)
    assert any((r["CASESTATUS"] == 1) == (r["CLOSEDDATETIME"] is not None) for r in year)


def test_volumes_seasonality_and_unique_ids(dataset):
    counts = [dataset.month_count(f"2024-{m:02d}") for m in range(1, 13)]
    assert all(4000 <= n <= 7500 for n in counts)
    assert 55_000 <= sum(counts) <= 75_000
    snow = {m: sum("Snow" in r["TYPENAME"] for r in dataset.rows_for_month(m)) for m in ("2024-01", "2024-07")}
    assert snow["2024-01"] > 20 * max(1, snow["2024-07"])
    ids_2024 = [r["OBJECTID"] for r in dataset.layer_rows(2024)]
    assert ids_2024 == list(range(ids_2024[0], ids_2024[0] + len(ids_2024)))  # contiguous within a layer
    ids_2023 = {r["OBJECTID"] for r in dataset.rows_for_month("2023-12")}
    assert not ids_2023 & set(ids_2024)


def test_only_the_months_a_query_touches_are_generated(fresh):
    srv, ds = fresh()
    query(srv, where=FEB_WHERE, outFields="*", resultRecordCount=10)
    assert ds.cached_months() == [FEB]
    first, last = ds.object_id_range("2024-05")
    query(srv, where=f"OBJECTID >= {first} AND OBJECTID < {first + 100}", outFields="*")
    assert ds.cached_months() == [FEB, "2024-05"]
    query(srv, where="1=1", returnCountOnly="true")  # counts need no generation
    query(srv, where="1=1", outFields="*", resultRecordCount=10)  # the first page needs January only
    assert ds.cached_months() == ["2024-01", FEB, "2024-05"]


def test_query_by_post_form(server, dataset):
    response = requests.post(
        layer(server) + "/query", timeout=60, data={"where": FEB_WHERE, "returnCountOnly": "true", "f": "json"}
    )
    assert response.json() == {"count": len(dataset.rows_for_month(FEB))}


# ---------------------------------------------------------------- the publisher's year rule (issue 14)


def _month_where(month: str) -> str:
    start, end = month_bounds_ms(month)
    from civic_pipelines.replay.minneapolis import fmt_ms

    return f"OPENEDDATETIME >= DATE '{fmt_ms(start)}' AND OPENEDDATETIME < DATE '{fmt_ms(end)}'"


@pytest.mark.parametrize(
    "zone, month, neighbour",
    [
        ("America/Chicago", "2024-01", 2023),  # west of UTC: the evening of 31 December local is 1 January UTC
        ("Pacific/Auckland", "2023-12", 2024),  # east of UTC: 1 January local is still 31 December UTC
    ],
)
def test_layers_split_by_the_publishers_local_year(fresh, zone, month, neighbour):
    srv, ds = fresh(rows_per_month=2237, first_year=2022, last_year=2025)
    answer = requests.post(
        f"{srv.url}/_replay/config", json={"minneapolis_311": {"layer_time_zone": zone}}, timeout=60
    ).json()["minneapolis_311"]
    assert answer["layer_time_zone"] == zone
    own = int(month[:4])
    where = _month_where(month)
    got = {}
    for year in (own, neighbour):
        ids = query(srv, year, where=where, returnIdsOnly="true").json()["objectIds"]
        assert query(srv, year, where=where, returnCountOnly="true").json() == {"count": len(ids)}
        got[year] = ids
    everything = [r["OBJECTID"] for r in ds.rows_for_month(month)]
    # Every request of the UTC month is in exactly one of the two layers; a few are in the neighbour.
    assert sorted(got[own] + got[neighbour]) == everything and not set(got[own]) & set(got[neighbour])
    assert 0 < len(got[neighbour]) < len(everything) // 20
    boundary = ds.layer_start_ms(max(own, neighbour))
    opened = {r["OBJECTID"]: r["OPENEDDATETIME"] for r in ds.rows_for_month(month)}
    early, late = (got[neighbour], got[own]) if neighbour < own else (got[own], got[neighbour])
    assert max(opened[i] for i in early) < boundary <= min(opened[i] for i in late)
    # The layer's own views agree with what it serves.
    assert ds.layer_count(neighbour) == query(srv, neighbour, where="1=1", returnCountOnly="true").json()["count"]
    # UTC again: the UTC month is one layer's.
    requests.post(f"{srv.url}/_replay/config", json={"minneapolis_311": {"layer_time_zone": "UTC"}}, timeout=60)
    assert query(srv, own, where=where, returnIdsOnly="true").json()["objectIds"] == everything
    assert query(srv, neighbour, where=where, returnCountOnly="true").json() == {"count": 0}


def test_a_bad_layer_time_zone_is_refused(server):
    response = requests.post(
        f"{server.url}/_replay/config", json={"minneapolis_311": {"layer_time_zone": "Mars/Base"}}, timeout=30
    )
    assert response.status_code == 400 and "Mars/Base" in response.text
