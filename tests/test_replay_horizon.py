"""The replay's rolling horizon: every emulator serves through the replay's today, so the demo's
"most recent complete months" exist whatever the calendar says, and the documented years' rows
never change with the clock.

The clock is pinned with ``CIVIC_REPLAY_TODAY`` (read on every call, so an in-process server
follows it)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import uuid
import zipfile

import pytest
import requests

from civic_pipelines.replay import horizon
from civic_pipelines.replay.arcgis import MINNEAPOLIS_PATH
from civic_pipelines.replay.ckan import KNOWN_RESOURCE_IDS
from civic_pipelines.replay.minneapolis import DEFAULT_LAST_EDIT_DATE, Minneapolis311Dataset
from civic_pipelines.replay.seattle import SeattleCrimeDataset
from civic_pipelines.replay.server import make_server
from civic_pipelines.replay.toronto import YEAR_ROWS, Toronto311Dataset

# (the replay's today, the previous complete month the demo asks for)
DATES = [("2027-03-15", "2027-02"), ("2028-01-02", "2027-12")]

# Hashes of sample months as the replay served them before the horizon rolled (computed on main
# at c743ab9, real date 2026-12-07): the documented years must stay byte for byte the same.
HASHES_2026 = {
    ("seattle", "2026-06"): "d76ffa7016caff12",
    ("seattle", "2026-12"): "27f37991cb5193f6",
    ("minneapolis", "2026-06"): "24ff01ad4f6e044a",
    ("toronto", "2026-03"): "0926c433b06dbf88",
    ("nyc_311", "2026-06"): "79259182315f98e1",
}


def digest(rows) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def month_window(month: str) -> tuple[str, str]:
    year, mon = int(month[:4]), int(month[5:])
    following = f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"
    return f"{month}-01T00:00:00", f"{following}-01T00:00:00"


@pytest.fixture
def pin(monkeypatch):
    def set_today(day: str) -> None:
        monkeypatch.setenv(horizon.TODAY_ENV, day)

    return set_today


@pytest.fixture
def replay():
    servers = []

    def start(months: list[str]):
        server = make_server(months=months)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------- the clock


def test_horizon_follows_the_pinned_date_and_never_goes_below_the_documented_end(pin):
    pin("2027-03-15")
    assert horizon.today() == _dt.date(2027, 3, 15)
    assert horizon.now() == _dt.datetime(2027, 3, 15, tzinfo=_dt.UTC)
    assert horizon.last_month("2026-12") == "2027-03"
    assert horizon.last_year(2026) == 2027
    pin("2025-05-01")  # before the documented end: the documented range is still served whole
    assert horizon.last_month("2026-12") == "2026-12" and horizon.last_year(2026) == 2026
    table = {2025: 1, 2026: 2}
    assert [horizon.carried_forward(table, y) for y in (2025, 2026, 2027, 2040)] == [1, 2, 2, 2]
    with pytest.raises(KeyError):
        horizon.carried_forward(table, 2024)
    pin("not a date")
    with pytest.raises(ValueError, match=horizon.TODAY_ENV):
        horizon.today()


# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("today, month", DATES)
def test_datasets_serve_the_previous_complete_month(pin, today, month):
    pin(today)
    year = int(month[:4])
    seattle = SeattleCrimeDataset()
    assert seattle.month_count(month) > 5000
    assert seattle.month_count(today[:7]) > 0  # the current month is published too (daily updates)
    nxt = f"{int(today[:4]) + (today[5:7] == '12'):04d}-{int(today[5:7]) % 12 + 1:02d}"
    assert seattle.month_count(nxt) == 0  # but nothing after today's month

    mpls = Minneapolis311Dataset()
    assert mpls.years[-1] == int(today[:4]) and mpls.has_year(year)
    assert mpls.month_count(month) > 4000
    # a layer opened after the documented ones has its own watermark: its creation on 1 January
    created = int(_dt.datetime(year, 1, 1, 6, tzinfo=_dt.UTC).timestamp() * 1000)
    assert mpls.layer_last_edit_date(year) == created > DEFAULT_LAST_EDIT_DATE
    assert mpls.layer_last_edit_date(2026) == DEFAULT_LAST_EDIT_DATE

    toronto = Toronto311Dataset()
    toronto.set_current_through((_dt.date.fromisoformat(today) - _dt.timedelta(days=1)).isoformat())
    assert toronto.years()[-1] == int(today[:4])
    # volumes after the last documented year repeat that year's figure
    assert toronto.year_count(year) == YEAR_ROWS[2026]
    assert toronto.month_allocation(year)[int(month[5:]) - 1] > 20_000


def test_toronto_refuses_a_cut_off_after_today_s_year(pin):
    pin("2027-03-15")
    toronto = Toronto311Dataset()
    toronto.set_current_through("2027-12-31")
    with pytest.raises(ValueError, match="2027-12-31"):
        toronto.set_current_through("2028-01-01")


def test_street_manager_srwr_and_mds_clocks_follow_the_replay_today(pin, replay):
    pin("2027-03-15")
    server = replay(["2027-02"])
    assert server.street_manager.latest_month() == "2027-02"
    assert server.street_manager.published("2027-02") and not server.street_manager.published("2027-03")
    assert server.srwr.today == _dt.date(2027, 3, 15)
    assert server.mds.clock() == _dt.datetime(2027, 3, 15, tzinfo=_dt.UTC)


@pytest.mark.parametrize("today", ["2026-12-07", "2028-01-02"])
def test_documented_year_rows_do_not_change_with_the_clock(pin, replay, today):
    pin(today)
    server = replay(["2026-06"])
    got = {
        ("seattle", "2026-06"): digest(server.dataset.rows_for_month("2026-06")),
        ("seattle", "2026-12"): digest(server.dataset.rows_for_month("2026-12")),
        ("minneapolis", "2026-06"): digest(server.minneapolis.rows_for_month("2026-06")),
        ("toronto", "2026-03"): digest(server.toronto.rows_for_month("2026-03")),
        ("nyc_311", "2026-06"): digest(server.generated["nyc_311"].rows_for_month("2026-06")),
    }
    assert got == HASHES_2026


# ---------------------------------------------------------------- over HTTP, paged


def soda_pages(url: str, where: str, order: str, limit: int = 1000) -> list[list[dict]]:
    pages, offset = [], 0
    with requests.Session() as session:
        while True:
            response = session.get(
                url, params={"$where": where, "$order": order, "$limit": limit, "$offset": offset}, timeout=60
            )
            assert response.status_code == 200, response.text
            pages.append(response.json())
            if len(pages[-1]) < limit:
                return pages
            offset += limit


@pytest.mark.parametrize("today, month", DATES)
def test_soda_pages_through_the_previous_month(pin, replay, today, month):
    pin(today)
    server = replay([month])
    low, high = month_window(month)
    for dataset_id, field, order, dataset in (
        ("tazs-3rd5", "report_datetime", "offense_id", server.dataset),
        ("erm2-nwe9", "created_date", "unique_key", server.generated["nyc_311"]),
    ):
        where = f"{field} >= '{low}' AND {field} < '{high}'"
        pages = soda_pages(f"{server.url}/resource/{dataset_id}.json", where, order)
        rows = [row for page in pages for row in page]
        assert len(pages) > 2 and len(rows) == len(dataset.rows_for_month(month)) > 2000
        assert len({row[order] for row in rows}) == len(rows)  # no row twice across pages
        assert all(row[field].startswith(month) for row in rows)
    assert server.generated["nyc_311"].months()[-1] == today[:7]


@pytest.mark.parametrize("today, month", DATES)
def test_arcgis_serves_the_new_year_layer_paged(pin, replay, today, month):
    pin(today)
    server = replay([month])
    year = int(month[:4])
    layer = server.url + MINNEAPOLIS_PATH.format(year=year)
    meta = requests.get(layer, params={"f": "json"}, timeout=30).json()
    assert "error" not in meta and meta["editingInfo"]["lastEditDate"] > DEFAULT_LAST_EDIT_DATE
    low, high = (t.replace("T", " ") for t in month_window(month))
    where = f"OPENEDDATETIME >= DATE '{low}' AND OPENEDDATETIME < DATE '{high}'"
    ids, offset, pages = [], 0, 0
    with requests.Session() as session:
        while True:
            body = session.get(
                layer + "/query",
                params={
                    "where": where,
                    "outFields": "*",
                    "orderByFields": "OBJECTID ASC",
                    "resultOffset": offset,
                    "resultRecordCount": 1000,
                    "returnGeometry": "false",
                    "f": "json",
                },
                timeout=60,
            ).json()
            assert "error" not in body, body
            ids += [f["attributes"]["OBJECTID"] for f in body["features"]]
            pages += 1
            if not body.get("exceededTransferLimit"):
                break
            offset += len(body["features"])
    assert pages > 2 and len(ids) == len(set(ids)) == server.minneapolis.month_count(month)


@pytest.mark.parametrize("today, month", DATES)
def test_ckan_lists_and_serves_the_new_year_resource(pin, replay, today, month):
    pin(today)
    server = replay([month])
    year = int(month[:4])
    server.toronto.set_rows_per_year(24_000)  # a small year: the file is generated whole
    server.toronto.set_current_through((_dt.date.fromisoformat(today) - _dt.timedelta(days=1)).isoformat())
    result = requests.get(
        f"{server.url}/api/3/action/package_show", params={"id": "311-service-requests-customer-initiated"}, timeout=30
    ).json()["result"]
    by_year = {int(r["name"][-4:]): r for r in result["resources"] if r["name"].startswith("311 Service Requests ")}
    assert max(by_year) == int(today[:4])
    resource = by_year[year]
    assert year not in KNOWN_RESOURCE_IDS and uuid.UUID(resource["id"]).version == 5  # generated, not real
    body = requests.get(resource["url"], timeout=120).content
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        (name,) = archive.namelist()
        text = archive.read(name).decode("latin-1")
    in_month = [line for line in text.split("\r\n")[1:] if line.startswith(month)]
    assert len(in_month) > 1000
    assert len(in_month) == len(server.toronto.rows_for_month(month))


# ---------------------------------------------------------------- the demo's months


def load_demo():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "civic_demo_script_horizon", Path(__file__).parents[1] / "scripts" / "demo.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


@pytest.mark.parametrize("today", ["2027-01-05", "2028-01-02"])
def test_every_source_publishes_the_demo_months_after_2026(pin, replay, monkeypatch, today):
    """The demo's months roll with the calendar; the replay, configured as the demo configures it,
    publishes each of them for every source (Toronto's cut-off in 2027/2028 used to be refused)."""
    monkeypatch.delenv("CIVIC_DEMO_START", raising=False)
    monkeypatch.delenv("CIVIC_DEMO_END", raising=False)
    pin(today)
    demo = load_demo()
    day = _dt.date.fromisoformat(today)
    months = demo.demo_months(day)
    server = replay(months)
    response = requests.post(f"{server.url}/_replay/config", json=demo.replay_config(day), timeout=30)
    assert response.status_code == 200, response.text
    for month in months:
        year, mon = int(month[:4]), int(month[5:])
        assert server.dataset.month_count(month) > 0
        assert server.generated["nyc_311"].month_count(month) > 0 and month in server.generated["nyc_311"].months()
        assert server.minneapolis.has_year(year) and server.minneapolis.month_count(month) > 0
        assert year in server.toronto.years() and server.toronto.month_allocation(year)[mon - 1] > 0
        assert server.street_manager.published(month)
        srwr_id = (
            str(year)
            if year < day.year
            else ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"][mon - 1]
        )
        assert srwr_id in server.srwr.identifiers()
        assert server.mds.available(next(iter(server.mds.providers)), f"{month}-15T12")
