"""The replay server's SRWR export API: identifiers, the two steps, pre-signed URLs, the file's
shape and quirks, watermarks, late edits and configuration."""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from email.utils import parsedate_to_datetime

import pytest
import requests

from civic_pipelines.replay.server import ReplayServer
from civic_pipelines.replay.srwr import RECORD_WIDTHS, SrwrDataset, install_srwr

TODAY = "2026-11-23"


def configure(server, body: dict, status: int = 200) -> dict:
    response = requests.post(f"{server.url}/_replay/config", json={"srwr": body}, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def server(replay):
    requests.post(f"{replay.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    configure(replay, {"today": TODAY, "activities_per_month": 30})
    return replay


def signed(server, identifier: str) -> str:
    response = requests.get(f"{server.url}/export/api/v1/file/{identifier}.zip", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"url"}
    return payload["url"]


def download(server, identifier: str) -> requests.Response:
    response = requests.get(signed(server, identifier), timeout=30)
    assert response.status_code == 200, response.text
    return response


def rows_of(body: bytes) -> list[list[str]]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert len(names) == 1 and names[0].endswith(".csv")
        text = archive.read(names[0]).decode("utf-8")
    assert not text or text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_make_server_installs_srwr(replay):
    assert isinstance(replay.srwr, SrwrDataset)
    health = requests.get(f"{replay.url}/_replay/health", timeout=10).json()
    assert "srwr" in health["config"] and "/export/api/v1/" in health["routes"]


@pytest.mark.parametrize(
    "identifier, status",
    [
        ("2020", 200),
        ("2025", 200),
        ("2026", 404),
        ("2019", 404),
        ("JAN", 200),
        ("OCT", 200),
        ("NOV", 404),
        ("DEC", 404),
        ("mar", 404),
        ("01", 200),
        ("22", 200),
        ("23", 404),
        ("1", 404),
        ("nonsense", 404),
    ],
)
def test_identifiers_follow_today(server, identifier, status):
    response = requests.get(f"{server.url}/export/api/v1/file/{identifier}.zip", timeout=10)
    assert response.status_code == status
    if status == 404:
        assert identifier in response.json()["message"]


def test_today_is_configurable(server):
    assert configure(server, {"today": "2027-01-01"})["srwr"]["identifiers"][-1] == "2026"
    assert requests.get(f"{server.url}/export/api/v1/file/2026.zip", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/export/api/v1/file/JAN.zip", timeout=10).status_code == 404
    configure(server, {"today": "not a date"}, status=400)


def test_step_two_is_a_zip_of_one_headerless_csv_mixing_record_types(server):
    url = signed(server, "2024")
    assert url.startswith(f"{server.url}/srwr-exports/2024.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    response = requests.get(url, timeout=30)
    assert response.headers["Content-Type"] == "application/zip"
    rows = rows_of(response.content)
    types = {row[1] for row in rows}
    assert {"001", "007", "008", "010", "099"} <= types and types & {"002", "036", "041", "555"}
    assert all(re.fullmatch(r"\d{9}", row[2]) for row in rows)  # the activity id on every line
    for row in rows:
        if row[1] in RECORD_WIDTHS:
            assert len(row) == RECORD_WIDTHS[row[1]]
    assert not rows[0][0].startswith("0") and rows[0][1] == "001"  # no header line
    # Two-digit codes sometimes arrive with one digit.
    statuses = [row[10] for row in rows if row[1] == "007"]
    tm = [row[20] for row in rows if row[1] == "008"]
    assert any(len(s) == 1 for s in statuses) and any(len(s) == 2 and s.startswith("0") for s in statuses)
    assert any(len(t) == 1 for t in tm)
    assert any('"' in row[6] and "," in row[6] for row in rows if row[1] == "007")  # quoting exercised
    starts = [row[4] for row in rows if row[1] == "008"]
    assert starts and all(re.fullmatch(r"\d{4}-\d\d-\d\d", s) for s in starts)
    assert all(
        row[4].startswith("2024-") for row in rows if row[1] == "008" and row[3] == "1"
    )  # later phases may run on


def test_year_month_and_day_files_hold_their_periods(server):
    dataset = server.srwr
    year = rows_of(download(server, "2023").content)
    assert len(year) == sum(len(dataset.lines(a)) for m in range(1, 13) for a in dataset.activities(2023, m))
    march = rows_of(download(server, "MAR").content)
    assert {row[2] for row in march} == {a["id"] for a in dataset.activities(2026, 3)}
    november = dataset.activities(2026, 11)
    busy = max(range(1, 23), key=lambda d: sum(a["day"] == d for a in november))
    day = rows_of(download(server, f"{busy:02d}").content)
    assert {row[2] for row in day} == {a["id"] for a in november if a["day"] == busy} != set()
    daily = requests.get(f"{server.url}/export/api/v1/daily", timeout=10).json()["url"]
    assert "/srwr-exports/22.zip?" in daily


def test_signatures_are_checked_and_expire(server):
    url = signed(server, "2023")
    tampered = re.sub(
        r"X-Amz-Signature=([0-9a-f])", lambda m: "X-Amz-Signature=" + ("0" if m.group(1) != "0" else "1"), url
    )
    response = requests.get(tampered, timeout=10)
    assert response.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in response.text
    bare = requests.get(url.split("?", 1)[0], timeout=10)
    assert bare.status_code == 403 and "<Code>AccessDenied</Code>" in bare.text
    configure(server, {"expire_next_urls": 1})
    expired = requests.get(signed(server, "2023"), timeout=10)
    assert expired.status_code == 403 and "Request has expired" in expired.text
    assert requests.get(signed(server, "2023"), timeout=10).status_code == 200  # only the next one
    configure(server, {"url_ttl_seconds": 0})
    late = signed(server, "2023")
    time.sleep(1.1)
    assert requests.get(late, timeout=10).status_code == 403


def test_downloads_have_validators_and_answer_a_range(server):
    full = download(server, "2022")
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag) and int(full.headers["Content-Length"]) == len(full.content)
    assert parsedate_to_datetime(modified).isoformat() == "2023-01-01T03:00:00+00:00"
    one = requests.get(signed(server, "2022"), headers={"Range": "bytes=0-0"}, timeout=10)
    assert one.status_code == 206 and one.content == full.content[:1]
    assert one.headers["Content-Range"] == f"bytes 0-0/{len(full.content)}" and one.headers["ETag"] == etag
    assert download(server, "2022").content == full.content  # deterministic


def test_late_edits_change_only_the_files_holding_the_month(server):
    before = {i: download(server, i).headers for i in ("2023", "2024")}
    result = configure(server, {"late_edits": {"month": "2023-06", "n": 2}})["srwr"]
    assert result["late_edits"][0]["n"] == 2 and result["edited_months"] == {"2023-06": 1}
    after = {i: download(server, i).headers for i in ("2023", "2024")}
    assert after["2023"]["ETag"] != before["2023"]["ETag"]
    assert parsedate_to_datetime(after["2023"]["Last-Modified"]) > parsedate_to_datetime(
        before["2023"]["Last-Modified"]
    )
    assert after["2024"]["ETag"] == before["2024"]["ETag"]
    # Other months of the edited year keep their lines.
    rows = rows_of(download(server, "2023").content)
    other = SrwrDataset(activities_per_month=30, today=TODAY)
    untouched = [f for m in range(1, 13) if m != 6 for a in other.activities(2023, m) for f in other.lines(a)]
    assert [r for r in rows if not r[2].startswith("2306")] == untouched


def test_faults_and_reset(server):
    clean = rows_of(download(server, "JAN").content)
    requests.post(f"{server.url}/_replay/faults", json={"malformed_row": 1}, timeout=10).raise_for_status()
    faulted = rows_of(download(server, "JAN").content)
    assert len(faulted) == len(clean) + 2 and faulted[-1][4] == "not-a-date" and len(faulted[-2]) == 6
    assert rows_of(download(server, "JAN").content) == clean  # one download only
    requests.post(f"{server.url}/_replay/faults", json={"status_503": 1}, timeout=10).raise_for_status()
    assert requests.get(signed(server, "JAN"), timeout=10).status_code == 503

    configure(server, {"expire_next_urls": 3, "late_edits": {"month": "2026-01", "n": 1}})
    requests.post(f"{server.url}/_replay/reset", json={}, timeout=10).raise_for_status()
    described = requests.get(f"{server.url}/_replay/config", timeout=10).json()["srwr"]
    assert described["expire_next_urls"] == 0 and described["edited_months"] == {"2026-01": 1}
    requests.post(f"{server.url}/_replay/reset", json={"data": True}, timeout=10).raise_for_status()
    described = requests.get(f"{server.url}/_replay/config", timeout=10).json()["srwr"]
    assert described["edited_months"] == {} and described["today_configured"] is False
    configure(server, {"nonsense": 1}, status=400)


def test_a_standalone_server_is_deterministic():
    bodies = []
    for _ in range(2):
        srv = ReplayServer("127.0.0.1", 0)
        srv.srwr = install_srwr(srv, SrwrDataset(activities_per_month=10, today=TODAY))
        with srv:
            bodies.append(download(srv, "2021").content)
    assert bodies[0] == bodies[1]


def test_data_faults_publish_a_changed_file_for_the_next_download(server):
    clean = rows_of(download(server, "JAN").content)

    def faulted(name: str, **config) -> requests.Response:
        if config:
            configure(server, config)
        requests.post(f"{server.url}/_replay/faults", json={name: 1}, timeout=10).raise_for_status()
        url = signed(server, "JAN")
        probe = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=10)  # looks, does not take
        response = requests.get(url, timeout=30)
        assert probe.status_code == 206 and probe.headers["ETag"] == response.headers["ETag"]
        assert probe.headers["Content-Range"].endswith(f"/{len(response.content)}")
        assert rows_of(download(server, "JAN").content) == clean  # the next download is clean again
        return response

    assert rows_of(faulted("empty_month").content) == []
    dropped = rows_of(faulted("drop_field").content)
    assert [r for r in dropped if r[1] == "001"] == [r[:5] + r[6:] for r in clean if r[1] == "001"]
    assert [r for r in dropped if r[1] != "001"] == [r for r in clean if r[1] != "001"]
    moved = rows_of(faulted("drop_field", fault_options={"drop_field": {"record_type": "008", "position": 20}}).content)
    assert all(len(r) == RECORD_WIDTHS["008"] - 1 for r in moved if r[1] == "008")
    assert rows_of(faulted("new_field").content) == [[*r, "replay-new-field"] for r in clean]
    retyped = [r for r in rows_of(faulted("retype_field").content) if r[1] == "008"]
    assert retyped and all(re.fullmatch(r"\d{2}/\d{2}/\d{4}", r[4]) and re.fullmatch(r"\d{4}", r[6]) for r in retyped)
    whole = download(server, "JAN").content
    cut = faulted("truncate_archive").content
    assert cut == whole[: len(whole) * 6 // 10]
    corrupt = faulted("corrupt_archive").content
    assert len(corrupt) == len(whole) and corrupt != whole
    configure(server, {"fault_options": {"drop_field": {"record_type": "001", "position": 1}}}, status=400)
