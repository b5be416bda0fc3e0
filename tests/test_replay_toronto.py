"""The replay server's Toronto 311 dataset (yearly CSVs) and its CKAN endpoints."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from civic_pipelines.replay.ckan import EXTERNAL_YEARS, install_toronto
from civic_pipelines.replay.server import ReplayServer
from civic_pipelines.replay.toronto import (
    HEADER,
    PACKAGE_ID,
    PACKAGE_NAME,
    SAMPLE_CSV,
    WARDS_25,
    WARDS_44,
    YEAR_ROWS,
    Toronto311Dataset,
    is_valid_creation_date,
)

ROWS = 400
SHARED_SAMPLE = Path("/work/shared/samples/toronto_311/sr_first_rows_2010_2013_2020_2022.csv")
CKAN_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")
CREATION = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.0000000$")
WARD = re.compile(r"^(.+) \((\d{2})\)$")
RESOURCE_KEYS = {
    "cache_last_updated",
    "cache_url",
    "created",
    "datastore_active",
    "format",
    "hash",
    "id",
    "is_datastore_cache_file",
    "is_preview",
    "last_modified",
    "metadata_modified",
    "mimetype",
    "mimetype_inner",
    "name",
    "package_id",
    "position",
    "resource_type",
    "revision_id",
    "size",
    "state",
    "url",
    "url_type",
}


def _start(**config):
    srv = ReplayServer("127.0.0.1", 0)
    srv.toronto = install_toronto(srv)
    srv.start()
    response = requests.post(
        f"{srv.url}/_replay/config", json={"toronto_311": {"rows_per_year": ROWS, **config}}, timeout=10
    )
    assert response.status_code == 200, response.text
    return srv


@pytest.fixture(scope="module")
def server():
    srv = _start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").state.reset()
    yield


@pytest.fixture
def fresh():
    servers = []

    def make(**config):
        srv = _start(**config)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def package_show(srv, ident=PACKAGE_NAME, **kwargs):
    return requests.get(f"{srv.url}/api/3/action/package_show", params={"id": ident}, timeout=30, **kwargs)


def resources_by_year(srv) -> dict[int, dict]:
    resources = package_show(srv).json()["result"]["resources"]
    return {int(r["name"][-4:]): r for r in resources if r["name"].startswith("311 Service Requests ")}


def download(url: str, chunk_size: int = 997, **kwargs) -> requests.Response:
    """A streaming download, as consumers do it (stream=True, iter_content)."""
    with requests.get(url, stream=True, timeout=60, **kwargs) as response:
        response.body = b"".join(response.iter_content(chunk_size=chunk_size))
    return response


def unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def lines(data: bytes) -> list[str]:
    text = data.decode("latin-1")
    assert text.endswith("\r\n")
    return text[:-2].split("\r\n")


# ---------------------------------------------------------------- package_show / resource_show


def test_package_show_lists_every_year(server):
    response = package_show(server)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["help", "success", "result"] and body["success"] is True
    assert body["help"].endswith("/api/3/action/help_show?name=package_show")
    result = body["result"]
    assert result["id"] == PACKAGE_ID and result["name"] == PACKAGE_NAME
    resources = result["resources"]
    assert result["num_resources"] == len(resources) == 1 + len(range(2010, 2027))
    assert resources[0]["name"] == "311-service-requests-readme" and resources[0]["format"] == "XLSX"
    assert [r["name"] for r in resources[1:]] == [f"311 Service Requests {y}" for y in range(2026, 2009, -1)]
    assert [r["position"] for r in resources] == list(range(len(resources)))
    ds = server.toronto
    ids = set()
    for resource in resources:
        assert set(resource) == RESOURCE_KEYS
        assert resource["package_id"] == PACKAGE_ID and resource["datastore_active"] is False
        assert resource["url"].startswith(server.url + "/")
        assert CKAN_TIME.match(resource["last_modified"]) and CKAN_TIME.match(resource["created"])
        ids.add(resource["id"])
    assert len(ids) == len(resources)
    by_year = resources_by_year(server)
    assert by_year[2023]["id"] == "079766f3-815d-4257-8731-5ff6b0c84c13"
    assert by_year[2022]["id"] == "f00a3313-f074-463e-89a7-26563084fbef"
    for year, resource in by_year.items():
        assert resource["format"] == "ZIP" and resource["mimetype"] == "application/zip"
        assert resource["last_modified"] == ds.last_modified(year)
        if year in EXTERNAL_YEARS:
            assert resource["url"] == f"{server.url}/data/311/opendata/servicerequest/SR{year}.zip"
            assert resource["url_type"] is None and resource["size"] is None
        else:
            assert resource["url"] == (
                f"{server.url}/dataset/{PACKAGE_ID}/resource/{resource['id']}/download/sr{year}.zip"
            )
            assert resource["url_type"] == "upload" and resource["size"] == len(ds.zip_bytes(year))
    # past years were last modified early the next year; the current year after its last day
    assert by_year[2024]["last_modified"].startswith("2025-01-")
    assert by_year[2026]["last_modified"].startswith("2026-09-08T")
    assert result["metadata_modified"] == max(r["metadata_modified"] for r in resources)
    # by UUID too; the consumer's way of choosing a year (name contains the year) works
    assert package_show(server, PACKAGE_ID).json()["result"] == result
    assert [r["url"] for r in resources if "2023" in r["name"]][0].endswith("/sr2023.zip")


def test_ckan_errors_and_resource_show(server):
    missing = package_show(server, "no-such-package")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert missing.json()["error"] == {"__type": "Not Found Error", "message": "Not found"}
    no_id = requests.get(f"{server.url}/api/3/action/package_show", timeout=10)
    assert no_id.status_code == 409 and no_id.json()["error"]["__type"] == "Validation Error"
    unknown = requests.get(f"{server.url}/api/3/action/package_search", timeout=10)
    assert unknown.status_code == 400 and unknown.json()["success"] is False
    by_year = resources_by_year(server)
    one = requests.get(f"{server.url}/api/3/action/resource_show", params={"id": by_year[2024]["id"]}, timeout=10)
    assert one.status_code == 200 and one.json()["result"] == by_year[2024]
    posted = requests.post(f"{server.url}/api/3/action/package_show", json={"id": PACKAGE_NAME}, timeout=10)
    assert posted.status_code == 200 and posted.json()["result"]["id"] == PACKAGE_ID
    gone = requests.get(f"{server.url}/api/3/action/resource_show", params={"id": "nope"}, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["__type"] == "Not Found Error"
    readme = requests.get(package_show(server).json()["result"]["resources"][0]["url"], timeout=10)
    assert readme.status_code == 404


# ---------------------------------------------------------------- downloads


@pytest.mark.parametrize("year", [2010, 2018, 2020, 2021, 2024, 2026])
def test_zip_download_is_the_csv(server, year):
    resource = resources_by_year(server)[year]
    response = download(resource["url"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert response.headers["ETag"] == '"' + hashlib.md5(response.body).hexdigest() + '"'
    assert response.headers["Accept-Ranges"] == "bytes"
    modified = parsedate_to_datetime(response.headers["Last-Modified"])
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == resource["last_modified"][:19]
    members = unzip(response.body)
    assert list(members) == [f"SR{year}.csv"]  # upper case, even inside sr2024.zip
    assert members[f"SR{year}.csv"] == server.toronto.csv_bytes(year)
    assert response.body == server.toronto.zip_bytes(year)


def test_csv_download_and_csv_listing(server, fresh):
    resource = resources_by_year(server)[2024]
    csv_url = resource["url"].replace("sr2024.zip", "sr2024.csv")
    response = download(csv_url)
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv"
    assert response.body == server.toronto.csv_bytes(2024)
    external = download(f"{server.url}/data/311/opendata/servicerequest/SR2021.csv")
    assert external.body == server.toronto.csv_bytes(2021)
    assert requests.get(f"{server.url}/data/311/opendata/servicerequest/SR2024.zip", timeout=10).status_code == 404

    srv = fresh(resource_format="CSV")
    by_year = resources_by_year(srv)
    assert {r["format"] for r in by_year.values()} == {"CSV"}
    assert by_year[2024]["url"].endswith("/download/sr2024.csv")
    assert by_year[2020]["url"].endswith("/SR2020.csv")
    assert by_year[2024]["size"] == len(srv.toronto.csv_bytes(2024))
    assert download(by_year[2024]["url"]).body == srv.toronto.csv_bytes(2024)


def test_range_requests(server):
    url = resources_by_year(server)[2024]["url"]
    full = server.toronto.zip_bytes(2024)
    etag = requests.get(url, timeout=30).headers["ETag"]
    first = requests.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert first.status_code == 206 and first.content == full[:100]
    assert first.headers["Content-Range"] == f"bytes 0-99/{len(full)}"
    assert first.headers["Content-Length"] == "100" and first.headers["ETag"] == etag
    rest = download(url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert rest.status_code == 206 and first.content + rest.body == full
    tail = requests.get(url, headers={"Range": "bytes=-50"}, timeout=30)
    assert tail.status_code == 206 and tail.content == full[-50:]
    assert tail.headers["Content-Range"] == f"bytes {len(full) - 50}-{len(full) - 1}/{len(full)}"
    past_end = requests.get(url, headers={"Range": "bytes=10-999999999"}, timeout=30)
    assert past_end.status_code == 206 and past_end.content == full[10:]
    stale = requests.get(url, headers={"Range": "bytes=0-99", "If-Range": '"stale"'}, timeout=30)
    assert stale.status_code == 200 and stale.content == full
    beyond = requests.get(url, headers={"Range": f"bytes={len(full)}-"}, timeout=30)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(full)}"
    several = requests.get(url, headers={"Range": "bytes=0-1,5-9"}, timeout=30)
    assert several.status_code == 200 and several.content == full


def test_conditional_get(server):
    url = resources_by_year(server)[2013]["url"]
    first = requests.get(url, timeout=30)
    again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == first.headers["ETag"]
    since = requests.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=30)
    assert since.status_code == 304
    older = requests.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, timeout=30)
    assert older.status_code == 200 and older.content == first.content


# ---------------------------------------------------------------- the CSV format


def test_header_and_sample_rows_are_the_real_ones(server):
    sample = SHARED_SAMPLE.read_bytes() if SHARED_SAMPLE.exists() else SAMPLE_CSV.read_bytes()
    assert SAMPLE_CSV.read_bytes() == sample
    sample_lines = sample.decode("latin-1").split("\r\n")
    ds = server.toronto
    for year in (2010, 2011, 2012, 2013, 2020, 2022):
        data = ds.csv_bytes(year)
        assert data.startswith(sample_lines[0].encode() + b"\r\n")  # the header, byte for byte
        assert lines(data)[0].split(",") == HEADER
        expected = [line for line in sample_lines[1:] if line.startswith(str(year))]
        assert lines(data)[1:6] == expected  # the real rows open their year's file, verbatim
        assert ds.quirk_counts(year)["sample_rows"] == 5
    assert ds.quirk_counts(2024)["sample_rows"] == 0


@pytest.mark.parametrize("year", [2010, 2017, 2018, 2021, 2022, 2024, 2026])
def test_csv_format_and_quirks(server, year):
    ds = server.toronto
    data = ds.csv_bytes(year)
    counts = ds.quirk_counts(year)
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == data.count(b"\n") == 1 + counts["data_lines"]  # CRLF only
    complete = year < 2026
    if complete or counts["latin1_rows"]:
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # latin-1 bytes (0xA0) in some street names
        assert counts["latin1_rows"] >= (2 if complete else 1) and b"\xa0" in data
    body = lines(data)[1:]
    assert len(body) == counts["data_lines"]
    parsed = list(csv.reader(io.StringIO(data.decode("latin-1"), newline="")))[1:]
    good = [row for row in parsed if len(row) == 9]
    bad = [row for row in parsed if len(row) != 9]
    assert len(bad) == counts["malformed_lines"] == len(ds.bad_lines(year)) >= (2 if complete else 0)
    assert all(len(row) == 10 for row in bad)
    assert len(good) == counts["rows"] == len(ds.rows(year))
    if complete:
        assert counts["rows"] == ROWS
    dates = [row[0] for row in parsed]
    assert dates == sorted(dates)  # sorted by Creation Date, bad lines included
    assert all(CREATION.match(d) and d.startswith(str(year)) for d in dates)
    assert counts["quarantine"] == counts["malformed_lines"]  # date quirks are off by default

    statuses = {row[1] for row in good}
    assert statuses <= ({"Closed", "Cancelled"} if year < 2022 else {"Completed", "Cancelled", "Unknown"})
    for row in good:
        assert row[2] == "Intersection" or re.fullmatch(r"M\d[A-Z]", row[2])
        if row[2] == "Intersection":
            assert row[3]
        else:
            assert row[3] == row[4] == ""
        assert row[5] and row[6] and row[7] and row[8]
        match = WARD.match(row[5])
        if match is None:
            assert row[5] == "Unknown" or row[5] in set(WARDS_44.values()) | set(WARDS_25.values())
            continue
        name, number = match.group(1), int(match.group(2))
        if row[0] < "2018-12-01":
            assert WARDS_44[number] == name
        else:
            assert WARDS_25[number] == name
    assert counts["non_pattern_wards"] == sum(WARD.match(row[5]) is None for row in good) >= (2 if complete else 0)
    assert counts["intersection_rows"] == sum(row[2] == "Intersection" for row in good) > 0


def test_full_volume_year_matches_the_contract():
    assert {y: YEAR_ROWS[y] for y in (2010, 2011, 2012, 2013, 2021, 2022, 2023, 2024, 2025)} == {
        2010: 254_218,
        2011: 285_333,
        2012: 307_299,
        2013: 385_870,
        2021: 323_880,
        2022: 407_369,
        2023: 385_975,
        2024: 402_824,
        2025: 464_080,
    }
    ds = Toronto311Dataset()
    counts = ds.quirk_counts(2010)
    # what a reader skipping bad lines (pandas on_bad_lines="skip") counts is the contract's number
    assert counts["rows"] == 254_218 and counts["malformed_lines"] >= 10
    assert 0.06 < counts["intersection_rows"] / counts["rows"] < 0.085  # 17,956 of 254,218 in 2010
    data = ds.csv_bytes(2010)
    assert data.count(b"\r\n") == 1 + counts["rows"] + counts["malformed_lines"]
    assert len(data) > 30_000_000


def test_vocabulary_per_era(server):
    ds = server.toronto
    types = {year: {r["Service Request Type"] for r in ds.rows(year)} for year in (2011, 2015, 2023, 2024, 2025)}
    sections = {year: {r["Section"] for r in ds.rows(year)} for year in (2011, 2015)}
    assert "Toronto Animal Services" not in sections[2011]  # not in the files before 2013
    assert "Toronto Animal Services" in sections[2015]
    assert "Noise" in types[2011] and "Noise" not in types[2023]
    assert "Amplified Sound or Instrument Sound" in types[2025] and "Amplified Sound" not in types[2025]
    assert "Amplified Sound" in types[2024] and "Amplified Sound or Instrument Sound" not in types[2024]
    unknown = [r for r in ds.rows(2024) if r["Service Request Type"] == "Unknown - MLSBLEMMVN"]
    assert unknown and all(r["Status"] == "Unknown" and r["Division"] == r["Section"] == "Unknown" for r in unknown)
    assert "Unknown - MLSBLEMMVN" not in types[2023] | types[2025]
    december = {r["Ward"] for r in ds.rows_for_month("2018-12")}
    november = {r["Ward"] for r in ds.rows_for_month("2018-11")}
    # the 25-ward names from 1 December 2018, when the new boundaries came into force
    assert all(WARDS_25[int(WARD.match(w).group(2))] == WARD.match(w).group(1) for w in december if WARD.match(w))
    assert all(WARDS_44[int(WARD.match(w).group(2))] == WARD.match(w).group(1) for w in november if WARD.match(w))
    assert max(int(WARD.match(w).group(2)) for w in november if WARD.match(w)) > 25


def test_current_year_file_grows_in_place():
    early = Toronto311Dataset(rows_per_year=2400, current_through="2026-03-15")
    later = Toronto311Dataset(rows_per_year=2400, current_through="2026-06-30")
    assert early.month_keys(2026) == ["2026-01", "2026-02", "2026-03"]
    assert all(r["Creation Date"] <= "2026-03-15 23:59:59.9999999" for r in early.rows(2026))
    assert early.month_bytes(2026, "2026-01") == later.month_bytes(2026, "2026-01")
    assert early.month_bytes(2026, "2026-02") == later.month_bytes(2026, "2026-02")
    assert later.month_bytes(2026, "2026-03").startswith(early.month_bytes(2026, "2026-03"))
    assert later.csv_bytes(2026).startswith(early.csv_bytes(2026))
    assert early.last_modified(2026).startswith("2026-03-16T") and early.years()[-1] == 2026
    assert early.csv_bytes(2025) == later.csv_bytes(2025)
    older = Toronto311Dataset(rows_per_year=100, current_through="2024-12-31")
    assert older.years()[-1] == 2024 and older.quirk_counts(2024)["rows"] == 100


def test_date_quirks_are_opt_in_and_counted(fresh):
    srv = fresh(date_quirks=True)
    ds = srv.toronto
    counts = ds.quirk_counts(2023)
    assert counts["out_of_year_dates"] == 3 and counts["unparseable_dates"] == 2
    assert counts["quarantine"] == counts["malformed_lines"] + 5
    rows = ds.rows(2023)
    assert len(rows) == ROWS + 5
    dates = [r["Creation Date"] for r in rows]
    assert sum(not d.startswith("2023") for d in dates) == 3
    assert sum(not is_valid_creation_date(d) for d in dates) == 2
    assert any(d.startswith("2023-02-30") for d in dates)
    assert dates == sorted(dates)
    assert all(is_valid_creation_date(r["Creation Date"]) for r in ds.rows_for_month("2023-02"))
    # the current (incomplete) year has no next-year row
    assert ds.quirk_counts(2026)["out_of_year_dates"] == 2
    body = unzip(download(resources_by_year(srv)[2023]["url"]).body)["SR2023.csv"]
    assert body == ds.csv_bytes(2023)


# ---------------------------------------------------------------- late edits and determinism


def _split_by_month(data: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines(data)[1:]:
        out.setdefault(line[:7], []).append(line)
    return out


def test_late_edits_change_only_that_month(fresh):
    srv = fresh()
    ds = srv.toronto
    before_csv = ds.csv_bytes(2024)
    before_months = {m: ds.month_bytes(2024, m) for m in ds.month_keys(2024)}
    before_rows = ds.rows(2024)
    before_listing = resources_by_year(srv)
    before_download = download(before_listing[2024]["url"])

    body = {"toronto_311": {"late_edits": {"year": 2024, "month": "2024-02", "n": 5}}}
    response = requests.post(f"{srv.url}/_replay/config", json=body, timeout=10)
    assert response.status_code == 200, response.text
    result = response.json()["toronto_311"]["late_edits"][0]
    assert result["year"] == 2024 and result["month"] == "2024-02" and result["n"] == 5
    assert all(r["creation_date"].startswith("2024-02") and r["old_status"] != r["new_status"] for r in result["rows"])

    after_rows = ds.rows(2024)
    assert len(after_rows) == len(before_rows)
    changed = [(a, b) for a, b in zip(before_rows, after_rows) if a != b]
    assert len(changed) == 5
    for old, new in changed:
        assert new["Creation Date"].startswith("2024-02")
        assert {k for k in HEADER if old[k] != new[k]} == {"Status"}
    assert sorted((b["Creation Date"], b["Status"]) for _a, b in changed) == sorted(
        (r["creation_date"], r["new_status"]) for r in result["rows"]
    )
    # every other month's bytes are unchanged
    for month, data in before_months.items():
        if month != "2024-02":
            assert ds.month_bytes(2024, month) == data, month
    assert ds.month_bytes(2024, "2024-02") != before_months["2024-02"]
    old_split, new_split = _split_by_month(before_csv), _split_by_month(ds.csv_bytes(2024))
    assert {m for m in old_split if old_split[m] != new_split[m]} == {"2024-02"}

    # the watermark moved for 2024 only; the download has the new bytes and a new ETag
    after_listing = resources_by_year(srv)
    assert after_listing[2024]["last_modified"] > before_listing[2024]["last_modified"]
    assert after_listing[2024]["last_modified"] == result["last_modified"] == ds.last_modified(2024)
    assert after_listing[2024]["id"] == before_listing[2024]["id"]
    assert all(after_listing[y] == before_listing[y] for y in after_listing if y != 2024)
    after_download = download(after_listing[2024]["url"])
    assert after_download.headers["ETag"] != before_download.headers["ETag"]
    assert unzip(after_download.body)["SR2024.csv"] == ds.csv_bytes(2024)
    stale = requests.get(
        after_listing[2024]["url"], headers={"If-None-Match": before_download.headers["ETag"]}, timeout=30
    )
    assert stale.status_code == 200

    # numeric months and several edits; reset restores the published file
    more = requests.post(
        f"{srv.url}/_replay/config",
        json={"toronto_311": {"late_edits": [{"year": 2023, "month": 7, "n": 2}, {"month": "2024-02", "n": 1}]}},
        timeout=10,
    )
    assert [e["n"] for e in more.json()["toronto_311"]["late_edits"]] == [2, 1]
    assert requests.post(f"{srv.url}/_replay/reset", json={"data": True}, timeout=10).status_code == 200
    assert ds.rows_per_year is None  # back to the constructor's configuration
    requests.post(f"{srv.url}/_replay/config", json={"toronto_311": {"rows_per_year": ROWS}}, timeout=10)
    assert ds.csv_bytes(2024) == before_csv and ds.last_modified(2024) == before_listing[2024]["last_modified"]


def test_determinism():
    a, b = Toronto311Dataset(rows_per_year=300), Toronto311Dataset(rows_per_year=300)
    b.csv_bytes(2019)  # generating other years first changes nothing
    for year in (2012, 2020, 2024):
        assert a.csv_bytes(year) == b.csv_bytes(year)
        assert a.zip_bytes(year) == b.zip_bytes(year)
        assert a.last_modified(year) == b.last_modified(year)
    assert Toronto311Dataset(seed=7, rows_per_year=300).csv_bytes(2024) != a.csv_bytes(2024)
    assert a.apply_late_edits(2024, "2024-05", 3) == b.apply_late_edits(2024, "2024-05", 3)
    assert a.csv_bytes(2024) == b.csv_bytes(2024) and a.last_modified(2024) == b.last_modified(2024)
    # the bulk size changes the rows, never the header or the real rows
    small = Toronto311Dataset(rows_per_year=20)
    assert lines(small.csv_bytes(2011))[:6] == lines(a.csv_bytes(2011))[:6]


# ---------------------------------------------------------------- faults and configuration


def test_status_faults_hit_downloads_only(server):
    url = resources_by_year(server)[2024]["url"]
    server.faults.set(status_503=2)
    assert package_show(server).status_code == 200  # the action API is not faultable
    assert [requests.get(url, timeout=30).status_code for _ in range(3)] == [503, 503, 200]
    server.faults.set(status_429=1, retry_after=3)
    throttled = requests.get(url, timeout=30)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert requests.get(url, timeout=30).status_code == 200


def test_reset_mid_download(server):
    url = resources_by_year(server)[2024]["url"]
    server.faults.set(reset_mid_page=1)
    with pytest.raises(requests.exceptions.RequestException):
        download(url)
    assert download(url).body == server.toronto.zip_bytes(2024)
    assert server.faults.fired["reset_mid_page"] == 1


def test_malformed_and_duplicate_row_faults(server):
    ds = server.toronto
    csv_url = resources_by_year(server)[2024]["url"].replace(".zip", ".csv")
    clean = lines(ds.csv_bytes(2024))
    server.faults.set(malformed_row=1)
    poisoned = download(csv_url)
    got = lines(poisoned.body)
    assert len(got) == len(clean) + 2
    assert sum(line.startswith("not-a-date,") for line in got) == 1
    assert sum(len(next(csv.reader([line]))) == 10 for line in got) == len(ds.bad_lines(2024)) + 1
    assert poisoned.headers["ETag"] != requests.get(csv_url, timeout=30).headers["ETag"]
    assert download(csv_url).body == ds.csv_bytes(2024)  # fired once
    server.faults.set(duplicate_row=1)
    doubled = lines(download(csv_url).body)
    assert len(doubled) == len(clean) + 1
    first = clean[1]
    later = [line for line in doubled if line[27:] == first[27:] and line != first]
    assert len(later) == 1 and later[0][:27] > first[:27]
    assert [line[:27] for line in doubled[1:]] == sorted(line[:27] for line in doubled[1:])
    zipped = unzip(download(resources_by_year(server)[2024]["url"]).body)["SR2024.csv"]
    assert zipped == ds.csv_bytes(2024)


def test_config_rows_per_year_and_errors(fresh):
    srv = fresh()
    response = requests.post(f"{srv.url}/_replay/config", json={"toronto_311": {"rows_per_year": 50}}, timeout=10)
    assert response.status_code == 200 and response.json()["toronto_311"]["rows_per_year"] == 50
    assert len(srv.toronto.rows(2015)) == 50
    described = requests.get(f"{srv.url}/_replay/config", timeout=10).json()["toronto_311"]
    assert described["package_id"] == PACKAGE_ID and described["years"] == [2010, 2026]
    assert described["last_modified"]["2015"] == srv.toronto.last_modified(2015)
    for bad in (
        {"rows_per_year": -1},
        {"nope": 1},
        {"resource_format": "XML"},
        {"late_edits": {"year": 2024, "month": "2023-02", "n": 1}},
        {"current_through": "2027-01-01"},
    ):
        response = requests.post(f"{srv.url}/_replay/config", json={"toronto_311": bad}, timeout=10)
        assert response.status_code == 400, bad


def test_lazy_sizes_at_full_volume():
    srv = ReplayServer("127.0.0.1", 0)
    install_toronto(srv)  # the real volumes: package_show must not build 17 files
    with srv:
        by_year = resources_by_year(srv)
        assert all(r["size"] is None for r in by_year.values())
        assert all(CKAN_TIME.match(r["last_modified"]) for r in by_year.values())
        requests.post(
            f"{srv.url}/_replay/config", json={"toronto_311": {"rows_per_year": 10, "prebuild": True}}, timeout=30
        )
        sizes = {y: r["size"] for y, r in resources_by_year(srv).items() if y not in EXTERNAL_YEARS}
        assert all(isinstance(s, int) and s > 0 for s in sizes.values())
