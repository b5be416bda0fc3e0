"""The replay server's Seattle crime (Socrata SODA, tazs-3rd5) endpoint and dataset."""

from __future__ import annotations

import re

import orjson
import pytest
import requests

from civic_pipelines.replay import soql
from civic_pipelines.replay.seattle import SCHEMA_A_COLUMNS, SCHEMA_B_COLUMNS, SeattleCrimeDataset
from civic_pipelines.replay.server import FAULTS, make_server

DATASET = "tazs-3rd5"
JAN_START, FEB_START = "2024-01-01T00:00:00.000", "2024-02-01T00:00:00.000"
JAN_WHERE = f"report_datetime >= '{JAN_START}' AND report_datetime < '{FEB_START}'"
FLOATING = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$")


@pytest.fixture(scope="module")
def server():
    srv = make_server(months=["2024-01"]).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(request):
    """Every test starts with no faults and an empty request log on the shared server."""
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        srv.state.reset()
    yield


@pytest.fixture
def fresh():
    """A private server for tests that change data or configuration."""
    servers = []

    def make(**kwargs):
        kwargs.setdefault("months", ["2024-01"])
        srv = make_server(**kwargs).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def resource(srv) -> str:
    return f"{srv.url}/resource/{DATASET}.json"


def get(srv, session=None, **params):
    return (session or requests).get(resource(srv), params=params, timeout=30)


def page_through(srv, where: str, order: str, limit: int) -> list[list[dict]]:
    pages, offset = [], 0
    with requests.Session() as session:
        while True:
            response = get(srv, session, **{"$where": where, "$order": order, "$limit": limit, "$offset": offset})
            assert response.status_code == 200, response.text
            rows = response.json()
            pages.append(rows)
            if len(rows) < limit:
                return pages
            offset += limit


# ---------------------------------------------------------------- paging and filters


@pytest.mark.parametrize("order", [":id", "offense_id", "offense_id DESC", "report_datetime, :id"])
def test_paging_over_a_month_returns_exactly_the_month(server, order):
    expected = server.dataset.rows_for_month("2024-01")
    assert 5000 <= len(expected) <= 12000
    pages = page_through(server, JAN_WHERE, order, limit=1000)
    got = [row for page in pages for row in page]
    ids = [row["offense_id"] for row in got]
    assert len(got) == len(expected)
    assert len(set(ids)) == len(ids), "pages overlap"
    assert set(ids) == {row["offense_id"] for row in expected}
    assert sorted(got, key=lambda r: r["offense_id"]) == sorted(expected, key=lambda r: r["offense_id"])
    if order.startswith("offense_id"):
        numbers = [int(i) for i in ids]
        assert numbers == sorted(numbers, reverse=order.endswith("DESC"))
    # the server saw exactly one request per page, in order
    details = [d for d in server.state.request_details() if d["path"].startswith("/resource/")]
    assert [dict(d["params"])["$offset"] for d in details] == [str(1000 * i) for i in range(len(pages))]
    assert [dict(d["params"])["$order"] for d in details] == [order] * len(pages)


def test_order_by_id_is_not_the_offense_id_order(server):
    by_id = get(server, **{"$where": JAN_WHERE, "$order": ":id", "$limit": 50, "$select": ":id,offense_id"}).json()
    row_ids = [r[":id"] for r in by_id]
    assert row_ids == sorted(row_ids)
    assert all(r[":id"].startswith("row-") for r in by_id)
    assert [r["offense_id"] for r in by_id] != sorted(r["offense_id"] for r in by_id)


def test_month_bounds_on_the_wire(server):
    expected = server.dataset.rows_for_month("2024-01")
    last = max(r["report_datetime"] for r in expected)
    for where in (
        JAN_WHERE,
        f"report_datetime between '{JAN_START}' and '2024-01-31T23:59:59.999'",
        "report_datetime >= '2024-01-01' AND report_datetime <= '2024-01-31T23:59:59.999'",
        f"({JAN_WHERE}) AND offense_id IS NOT NULL",
    ):
        count = get(server, **{"$select": "count(*)", "$where": where}).json()
        assert count == [{"count": str(len(expected))}], where
    assert get(server, **{"$where": f"report_datetime = '{last}'"}).json()[0]["report_datetime"] == last
    # February's bounds never return a January row
    feb = get(
        server, **{"$where": f"report_datetime >= '{FEB_START}' AND report_datetime < '2024-03-01'", "$limit": 50000}
    ).json()
    assert feb and all(r["report_datetime"] >= FEB_START for r in feb)


def test_month_bounds_include_last_millisecond_and_exclude_next_month():
    fields = {f: t for f, _n, t in SCHEMA_A_COLUMNS}
    records = [
        ({"offense_id": "1", "report_datetime": "2024-01-01T00:00:00.000"}, {}),
        ({"offense_id": "2", "report_datetime": "2024-01-31T23:59:59.999"}, {}),
        ({"offense_id": "3", "report_datetime": "2024-02-01T00:00:00.000"}, {}),
        ({"offense_id": "4", "report_datetime": "2023-12-31T23:59:59.999"}, {}),
        ({"offense_id": "5"}, {}),
    ]
    for where in (JAN_WHERE, f"report_datetime between '{JAN_START}' and '2024-01-31T23:59:59.999'"):
        predicate = soql.compile_where(soql.parse_where(where, fields), fields)
        assert [r[0]["offense_id"] for r in records if predicate(r)] == ["1", "2"]


def test_only_the_months_a_query_touches_are_generated(fresh):
    srv = fresh(months=["2023-06"])
    get(srv, **{"$where": JAN_WHERE, "$limit": 1})
    assert srv.dataset.cached_months() == ["2024-01"]
    get(srv, **{"$where": "report_datetime between '2024-03-15' and '2024-04-02'", "$order": ":id", "$limit": 1})
    assert srv.dataset.cached_months() == ["2024-01", "2024-03", "2024-04"]
    get(srv, **{"$where": "offense_code = '120'", "$limit": 1})  # no report bounds: configured months
    assert srv.dataset.cached_months() == ["2023-06", "2024-01", "2024-03", "2024-04"]


def test_unordered_unbounded_page_generates_only_what_it_needs(fresh):
    srv = fresh(months=None)  # unbounded queries may cover 2008-01..2026-12
    rows = get(srv, **{"$limit": 10}).json()
    assert len(rows) == 10 and rows[0]["report_datetime"].startswith("2008-01")
    assert srv.dataset.cached_months() == ["2008-01"]


@pytest.mark.parametrize(
    "where",
    [
        "foo = 'x'",
        "Report_Datetime > '2024-01-01'",  # field names are case-sensitive
        "report_datetime >",
        "report_datetime > '2024-13-01'",
        "report_datetime > 5",
        "offense_id > 'abc'",
        "(report_datetime > '2024-01-01'",
        "report_datetime between '2024-01-01'",
        "report_datetime > '2024-01-01",
        "report_datetime > '2024-01-01' AND",
        "report_date_time > '2024-01-01'",  # schema B name on a schema A dataset
        "; drop table",
    ],
)
def test_bad_where_is_a_socrata_400(server, where):
    response = get(server, **{"$where": where})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "query.compiler.malformed" and body["error"] is True and body["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"$limit": "50001"},
        {"$limit": "-1"},
        {"$limit": "ten"},
        {"$offset": "-5"},
        {"$order": "nope"},
        {"$order": "offense_id sideways"},
        {"$select": "nope"},
        {"$q": "robbery"},
        {"nope": "1"},
    ],
)
def test_bad_parameters_are_400(server, params):
    response = get(server, **params)
    assert response.status_code == 400
    assert response.json()["code"] == "query.compiler.malformed"


def test_limit_50000_and_app_token_are_accepted(server):
    response = get(server, **{"$where": JAN_WHERE, "$limit": "50000", "$$app_token": "secret"})
    assert response.status_code == 200
    assert len(response.json()) == len(server.dataset.rows_for_month("2024-01"))


def test_default_limit_is_1000(server):
    assert len(get(server, **{"$where": JAN_WHERE}).json()) == 1000


def test_where_or_parentheses_null_and_simple_filter(server):
    expected = server.dataset.rows_for_month("2024-01")
    where = f"({JAN_WHERE}) AND (offense_code = '120' OR offense_code = '13A')"
    got = get(server, **{"$where": where, "$limit": 50000}).json()
    assert {r["offense_id"] for r in got} == {r["offense_id"] for r in expected if r["offense_code"] in ("120", "13A")}
    no_end = get(server, **{"$where": f"{JAN_WHERE} AND offense_end_datetime IS NULL", "$limit": 50000}).json()
    assert len(no_end) == sum("offense_end_datetime" not in r for r in expected)
    assert 0.3 < len(no_end) / len(expected) < 0.7  # about half, as in the real rows
    withheld = get(server, **{"$where": JAN_WHERE, "_100_block_address": "", "$limit": 5}).json()
    assert withheld == []  # equality never matches a null
    precinct = get(server, **{"$where": JAN_WHERE, "precinct": "SW", "$limit": 50000}).json()
    assert len(precinct) == sum(r["precinct"] == "SW" for r in expected) > 0


def test_count_star(server):
    expected = server.dataset.rows_for_month("2024-01")
    assert get(server, **{"$select": "count(*)", "$where": JAN_WHERE}).json() == [{"count": str(len(expected))}]
    robberies = sum(r["offense_code"] == "120" for r in expected)
    response = get(server, **{"$select": "count(*)", "$where": f"{JAN_WHERE} AND offense_code = '120'"})
    assert response.json() == [{"count": str(robberies)}]
    assert orjson.loads(response.headers["X-SODA2-Fields"]) == ["count"]


def test_select_and_multi_key_order(server):
    rows = get(
        server,
        **{
            "$where": JAN_WHERE,
            "$select": "precinct, offense_id, longitude",
            "$order": "precinct ASC, offense_id DESC",
            "$limit": 50000,
        },
    ).json()
    assert set().union(*(r.keys() for r in rows)) == {"precinct", "offense_id", "longitude"}
    keys = [(r["precinct"], -int(r["offense_id"])) for r in rows]
    assert keys == sorted(keys)
    by_longitude = get(server, **{"$where": JAN_WHERE, "$order": "longitude", "$limit": 50000}).json()
    values = [float(r["longitude"]) for r in by_longitude]
    assert values == sorted(values)  # numeric, not lexical (e.g. -122.4 before -122.3 before 0)


def test_headers_and_view_metadata(server):
    response = get(server, **{"$where": JAN_WHERE, "$limit": 2})
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert orjson.loads(response.headers["X-SODA2-Fields"]) == [c[0] for c in SCHEMA_A_COLUMNS]
    types = orjson.loads(response.headers["X-SODA2-Types"])
    assert types[4] == "floating_timestamp" and types[1] == "number" and types[0] == "text"
    assert response.headers["Last-Modified"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    view = requests.get(f"{server.url}/api/views/{DATASET}.json", timeout=10).json()
    assert view["id"] == DATASET and view["rowsUpdatedAt"] == 1767225600
    assert view["columns"][0] == {"fieldName": "report_number", "name": "Report Number", "dataTypeName": "text"}
    assert [c["name"] for c in view["columns"]][-3:] == ["100 Block Address", "Longitude", "Latitude"]


def test_unknown_dataset_is_404(server):
    for url in (f"{server.url}/resource/abcd-1234.json", f"{server.url}/api/views/abcd-1234.json"):
        response = requests.get(url, timeout=10)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found" and response.json()["error"] is True


def test_keep_alive_reuses_one_connection(server):
    with requests.Session() as session:
        for offset in (0, 10, 20):
            assert get(server, session, **{"$where": JAN_WHERE, "$limit": 10, "$offset": offset}).ok
    ports = {d["client_port"] for d in server.state.request_details()}
    assert len(ports) == 1


def test_csv_endpoint(server):
    response = requests.get(
        f"{server.url}/resource/{DATASET}.csv", params={"$where": JAN_WHERE, "$order": ":id", "$limit": 3}, timeout=10
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith('"report_number","offense_id"') and len(lines) == 4


# ---------------------------------------------------------------- wire form and dataset


def test_wire_form(server):
    ds = server.dataset
    rows = ds.rows_for_month("2024-01") + ds.rows_for_month("2024-02")
    ids = [r["offense_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for row in rows:
        assert set(row) <= {c[0] for c in SCHEMA_A_COLUMNS}
        assert all(isinstance(v, str) and v != "" for v in row.values())
        assert re.fullmatch(r"\d{4}-\d{6}", row["report_number"]) and row["offense_id"].isdigit()
        for name in ("offense_start_datetime", "offense_end_datetime", "report_datetime"):
            if name in row:
                assert FLOATING.match(row[name])
        assert row["offense_start_datetime"] <= row["report_datetime"]
        assert row["precinct"] in {"N", "E", "S", "W", "SW"}
        assert row["crime_against_category"] in {"PERSON", "PROPERTY", "SOCIETY", "NOT_A_CRIME"}
        if "_100_block_address" not in row:
            assert (row["longitude"], row["latitude"]) == ("0", "0")
    jan = ds.rows_for_month("2024-01")
    assert all(r["report_datetime"].startswith("2024-01") for r in jan)
    withheld = sum("_100_block_address" not in r for r in jan) / len(jan)
    assert 0.02 < withheld < 0.09
    reports = {}
    for r in jan:
        reports.setdefault(r["report_number"], []).append(r)
    assert any(len(v) == 2 for v in reports.values()) and any(len(v) == 3 for v in reports.values())
    assert max(len(v) for v in reports.values()) <= 3
    assert len({r["offense_parent_group"] for r in jan}) > 15
    assert {"120", "13A", "13B", "23H"} <= {r["offense_code"] for r in jan}
    shapes = [r["_100_block_address"] for r in jan if "_100_block_address" in r]
    assert any(" BLOCK OF " in a for a in shapes) and any(" / " in a for a in shapes)


def test_month_sizes_are_realistic_and_seasonal():
    ds = SeattleCrimeDataset()
    counts = {m: ds.month_count(m) for m in ("2008-01", "2015-02", "2015-08", "2020-05", "2026-12")}
    assert all(5000 <= c <= 12000 for c in counts.values())
    assert counts["2015-08"] > counts["2015-02"]
    assert counts["2020-05"] > 11000
    assert ds.month_count("2007-12") == 0 and ds.rows_for_month("2027-01") == []
    assert len(SeattleCrimeDataset(rows_per_month=1234).rows_for_month("2012-07")) == 1234


def test_real_sample_rows_are_in_their_months():
    ds = SeattleCrimeDataset(rows_per_month=100)
    jan = ds.rows_for_month("2020-01")
    assert len(jan) == 100 + 75
    row = next(r for r in jan if r["offense_id"] == "12140017838")
    assert row == {
        "report_number": "2020-004349",
        "offense_id": "12140017838",
        "offense_start_datetime": "2020-01-04T12:20:00.000",
        "offense_end_datetime": "2020-01-04T12:30:00.000",
        "report_datetime": "2020-01-04T13:11:43.000",
        "group_a_b": "A",
        "crime_against_category": "PROPERTY",
        "offense_parent_group": "ROBBERY",
        "offense": "Robbery",
        "offense_code": "120",
        "precinct": "S",
        "sector": "R",
        "beat": "R3",
        "mcpp": "COLUMBIA CITY",
        "_100_block_address": "50XX BLOCK OF RAINIER AVE S",
        "longitude": "-122.284101167",
        "latitude": "47.55645048",
    }
    assert [len(ds.rows_for_month(m)) - 100 for m in ("2020-02", "2021-08", "2021-09")] == [9, 1, 15]
    withheld_real = [
        r
        for m in ("2020-01", "2020-02", "2021-08", "2021-09")
        for r in ds.rows_for_month(m)
        if r["offense_id"].startswith(("12", "27")) and "_100_block_address" not in r
    ]
    assert len(withheld_real) == 5 and all(r["longitude"] == "0" for r in withheld_real)
    ds.set_schema("B")
    assert len(ds.rows_for_month("2020-01")) == 100  # real rows are schema A only


def test_determinism():
    a, b = SeattleCrimeDataset(), SeattleCrimeDataset()
    for month in ("2019-07", "2024-01"):
        assert a.rows_for_month(month) == b.rows_for_month(month)
        assert a.records_for_month(month) == b.records_for_month(month)
    other = SeattleCrimeDataset(seed=7)
    assert other.rows_for_month("2019-07") != a.rows_for_month("2019-07")
    b.rows_for_month("2020-01")  # generating other months first changes nothing
    c = SeattleCrimeDataset()
    assert c.rows_for_month("2024-01") == b.rows_for_month("2024-01")
    assert a.apply_late_edits("2019-07", 4) == b.apply_late_edits("2019-07", 4)
    assert a.rows_for_month("2019-07") == b.rows_for_month("2019-07")


def test_offense_ids_unique_across_months():
    ds = SeattleCrimeDataset(rows_per_month=3000)
    ids = [r["offense_id"] for m in ("2008-01", "2016-06", "2020-01", "2026-12") for r in ds.rows_for_month(m)]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- schema B


def test_schema_b(fresh):
    srv = fresh()
    result = requests.post(f"{srv.url}/_replay/config", json={"seattle_crime": {"schema": "B"}}, timeout=10).json()
    assert result["seattle_crime"]["schema"] == "B"
    view = requests.get(f"{srv.url}/api/views/{DATASET}.json", timeout=10).json()
    names = [c["fieldName"] for c in view["columns"]]
    assert names == [c[0] for c in SCHEMA_B_COLUMNS]
    assert {
        "report_date_time",
        "offense_date",
        "nibrs_group_a_b",
        "neighborhood",
        "block_address",
        "offense_category",
        "nibrs_offense_code",
    } <= set(names)
    assert "report_datetime" not in names and "offense_end_datetime" not in names
    assert next(c for c in view["columns"] if c["fieldName"] == "latitude")["dataTypeName"] == "text"

    where = "report_date_time >= '2024-01-01T00:00:00.000' AND report_date_time < '2024-02-01T00:00:00.000'"
    response = get(srv, **{"$where": where, "$order": ":id", "$limit": 50000})
    assert response.status_code == 200
    rows = response.json()
    assert orjson.loads(response.headers["X-SODA2-Fields"]) == names
    assert len(rows) == len(srv.dataset.rows_for_month("2024-01"))
    assert all(set(r) <= set(names) for r in rows)
    assert {r["precinct"] for r in rows} <= {"North", "East", "South", "West", "Southwest", "OOJ"}
    assert {"North", "East", "South", "West", "Southwest", "OOJ"} <= {r["precinct"] for r in rows}
    assert {r["offense_category"] for r in rows} == {"VIOLENT CRIME", "PROPERTY CRIME", "ALL OTHER"}
    redacted = [r for r in rows if r["block_address"] == "REDACTED"]
    assert redacted and all(r["latitude"] == r["longitude"] == "REDACTED" for r in redacted)
    assert any(r["nibrs_offense_code"] == "999" for r in rows)
    assert {r["offense_sub_category"] for r in rows} & {"999", "UNKNOW", "UNKNOWN"}
    assert all(FLOATING.match(r["report_date_time"]) and FLOATING.match(r["offense_date"]) for r in rows)
    # the schema A name is now an unknown column
    assert get(srv, **{"$where": JAN_WHERE}).status_code == 400
    # same offenses as schema A (the republication keeps offense_id)
    srv.dataset.set_schema("A")
    assert {r["offense_id"] for r in srv.dataset.rows_for_month("2024-01")} == {r["offense_id"] for r in rows}


# ---------------------------------------------------------------- faults


def _post_faults(srv, **faults):
    response = requests.post(f"{srv.url}/_replay/faults", json=faults, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("fault,status", [("status_429", 429), ("status_503", 503), ("status_202", 202)])
def test_status_faults_fire_exactly_n_times(server, fault, status):
    _post_faults(server, **{fault: 3, "retry_after": 2})
    with requests.Session() as session:
        statuses = [get(server, session, **{"$where": JAN_WHERE, "$limit": 5}) for _ in range(5)]
    assert [r.status_code for r in statuses] == [status] * 3 + [200, 200]
    first = statuses[0]
    if status == 429:
        assert first.headers["Retry-After"] == "2"
        assert first.json()["error"] is True
    if status == 202:
        assert first.json() == []
    assert server.faults[fault] == 0 and server.faults.fired[fault] == 3
    assert requests.get(f"{server.url}/_replay/faults", timeout=10).json()["fired"][fault] == 3


def test_faults_only_hit_resource_requests(server):
    server.faults.set(status_503=1)
    assert requests.get(f"{server.url}/api/views/{DATASET}.json", timeout=10).status_code == 200
    assert server.faults["status_503"] == 1
    assert get(server, **{"$limit": 1, "$where": JAN_WHERE}).status_code == 503
    assert get(server, **{"$limit": 1, "$where": JAN_WHERE}).status_code == 200


def test_reset_mid_page_fires_exactly_n_times(server):
    _post_faults(server, reset_mid_page=2)
    params = {"$where": JAN_WHERE, "$order": ":id", "$limit": 2000}
    for _ in range(2):
        with pytest.raises(requests.exceptions.RequestException):
            with requests.Session() as session:
                get(server, session, **params).json()
    response = get(server, **params)
    assert response.status_code == 200 and len(response.json()) == 2000
    assert server.faults.fired["reset_mid_page"] == 2


def test_malformed_rows_fire_exactly_n_times_and_deterministically(server):
    params = {"$where": JAN_WHERE, "$order": ":id", "$limit": 100}
    clean = [get(server, **{**params, "$offset": str(100 * i)}).json() for i in range(3)]
    server.faults.set(malformed_row=2)
    pages = [get(server, **{**params, "$offset": str(100 * i)}).json() for i in range(3)]
    assert [len(p) for p in pages] == [102, 102, 100]
    for page, expected in zip(pages[:2], clean):
        assert sum("offense_id" not in r for r in page) == 1
        assert sum(r["report_datetime"] == "not-a-date" for r in page) == 1
        assert [r for r in page if "offense_id" in r and r["report_datetime"] != "not-a-date"] == expected
    assert pages[2] == clean[2]
    assert server.faults["malformed_row"] == 0 and server.faults.fired["malformed_row"] == 2
    server.faults.set(malformed_row=1)  # deterministic: the same page is poisoned the same way
    assert get(server, **params).content == orjson.dumps(pages[0])


def test_duplicate_row_fires_exactly_n_times(server):
    params = {"$where": JAN_WHERE, "$order": ":id", "$limit": 100}
    server.faults.set(duplicate_row=2)
    pages = [get(server, **{**params, "$offset": str(100 * i)}).json() for i in range(3)]
    assert [len(p) for p in pages] == [101, 101, 100]
    for page in pages[:2]:
        first, dup = page[0], page[-1]
        assert dup["offense_id"] == first["offense_id"]
        assert dup["report_datetime"] > first["report_datetime"]
        assert dup["report_datetime"][:7] == first["report_datetime"][:7]
        assert {k: v for k, v in dup.items() if k != "report_datetime"} == {
            k: v for k, v in first.items() if k != "report_datetime"
        }
    assert server.faults["duplicate_row"] == 0


def test_unknown_fault_is_rejected(server):
    response = requests.post(f"{server.url}/_replay/faults", json={"status_418": 1}, timeout=10)
    assert response.status_code == 400
    assert set(FAULTS) <= set(requests.get(f"{server.url}/_replay/faults", timeout=10).json())


def test_request_log_and_reset(server):
    get(server, **{"$limit": 1, "$where": JAN_WHERE})
    server.faults.set(status_429=5)
    log = requests.get(f"{server.url}/_replay/requests", timeout=10).json()
    assert len(log) == 1 and log[0].startswith(f"/resource/{DATASET}.json?")
    assert requests.post(f"{server.url}/_replay/reset", timeout=10).json() == {"ok": True}
    assert requests.get(f"{server.url}/_replay/requests", timeout=10).json() == []
    assert server.faults["status_429"] == 0


# ---------------------------------------------------------------- late edits and config


def test_late_edits(fresh):
    srv = fresh()
    before = {r["offense_id"]: r for r in srv.dataset.rows_for_month("2024-01")}
    watermark = requests.get(f"{srv.url}/api/views/{DATASET}.json", timeout=10).json()["rowsUpdatedAt"]
    body = {"seattle_crime": {"late_edits": {"month": "2024-01", "n": 5}}}
    result = requests.post(f"{srv.url}/_replay/config", json=body, timeout=10).json()["seattle_crime"]
    edited = result["late_edits"][0]["offense_ids"]
    assert len(set(edited)) == 5 and result["rowsUpdatedAt"] > watermark
    after = {r["offense_id"]: r for r in srv.dataset.rows_for_month("2024-01")}
    assert after.keys() == before.keys()
    assert {i for i in after if after[i] != before[i]} == set(edited)
    assert all(after[i]["report_datetime"] == before[i]["report_datetime"] for i in edited)
    view = requests.get(f"{srv.url}/api/views/{DATASET}.json", timeout=10).json()
    assert view["rowsUpdatedAt"] == result["rowsUpdatedAt"]
    stamp = srv.dataset.rows_updated_at - 1
    since = __import__("datetime").datetime.fromtimestamp(stamp, __import__("datetime").timezone.utc)
    changed = get(srv, **{"$where": f"{JAN_WHERE} AND :updated_at > '{since:%Y-%m-%dT%H:%M:%S}'", "$limit": 100}).json()
    assert {r["offense_id"] for r in changed} == set(edited)
    paged = [r for page in page_through(srv, JAN_WHERE, ":id", 1000) for r in page]
    assert {r["offense_id"]: r for r in paged} == after  # the query cache saw the edit


def test_rows_per_month_config(fresh):
    srv = fresh()
    requests.post(f"{srv.url}/_replay/config", json={"seattle_crime": {"rows_per_month": 777}}, timeout=10)
    assert get(srv, **{"$select": "count(*)", "$where": JAN_WHERE}).json() == [{"count": "777"}]
    bad = requests.post(f"{srv.url}/_replay/config", json={"seattle_crime": {"schema": "C"}}, timeout=10)
    assert bad.status_code == 400
