"""What the archive sources' fault matrix shares: the replay driven over HTTP, the timeline of the
requests a block made, and one adapter per source (Street Manager: DfT monthly zips of JSON
events; SRWR: Scotland's zipped headerless CSV behind a pre-signed URL) saying how to run its
block, where it lands and what exactly it must hold. ``fails_and_keeps`` is the check every fault
that fails a block ends with, for either source."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from fault_checks import assert_exactly, assert_no_partial, landed_keys
from fault_rows import Row
from replay_env import control as post
from replay_env import replay_connection

from civic_pipelines.extract import run_block
from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.replay.street_manager import archive_events
from civic_pipelines.sources import srwr as srwr_source
from civic_pipelines.sources import street_manager as sm

MONTH = "2024-03"
PART = "permit"
EVENTS = 200
SRWR_TODAY = "2026-11-23"
SRWR_MONTH = "2023-03"  # read from the 2023 year file
SRWR_ACTIVITIES = 40
SRWR_TABLES = {"007": "phase", "008": "undertaker_phase", "010": "site", "099": "district"}


def timeline(monkeypatch, server) -> list[dict]:
    """Every data request's arrival time (monotonic), method, path, range and status."""
    seen: list[dict] = []
    real = server.dispatch

    def dispatch(request):
        if request.path.startswith("/_replay/"):
            return real(request)
        entry = {
            "at": time.monotonic(),
            "method": request.method,
            "path": request.path,
            "range": request.headers.get("range"),
        }
        seen.append(entry)
        response = real(request)
        entry["status"] = response.status
        return response

    monkeypatch.setattr(server, "dispatch", dispatch)
    return seen


def settle(entries: list[dict], limit: float = 5) -> None:
    """Wait until every request seen has been answered: a stalled one whose client gave up still
    runs its handler later, and must not take a fault switch meant for the next test."""
    deadline = time.monotonic() + limit
    while any("status" not in e for e in entries) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all("status" in e for e in entries), "a stalled request never finished"


def gap_after(entries: list[dict], status: int) -> float:
    """Seconds from the first answer with ``status`` to the next request for the same path."""
    for i, entry in enumerate(entries):
        if entry["status"] == status:
            later = [e for e in entries[i + 1 :] if e["path"] == entry["path"] and e["method"] == entry["method"]]
            return later[0]["at"] - entry["at"]
    raise AssertionError(f"no {status} in {entries}")


def folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def step2(entries: list[dict]) -> list[dict]:
    """SRWR's step 2: the requests for the export file itself (the pre-signed URL)."""
    return [e for e in entries if e["path"].startswith("/srwr-exports/")]


class ArchiveSource:
    """One archive source's block on the replay server (reset and configured for the test)."""

    name: str
    module = None  # the source package whose probe ``arm_after_probe`` wraps

    conn_id: str
    conn_fields: dict = {}

    def __init__(self, server, monkeypatch):
        self.server = server
        self.monkeypatch = monkeypatch
        self.connect()
        self.post("reset", {"data": True})

    def connect(self) -> None:
        """The source's connection on the replay, read from the environment only."""
        self.monkeypatch.setenv(
            f"AIRFLOW_CONN_{self.conn_id.upper()}", replay_connection(self.server, **self.conn_fields)
        )
        self.monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")

    def post(self, what: str, body: dict) -> dict:
        return post(self.server, what, body)

    def run_faulted(self, lake: str, faults: dict, *args, **kwargs) -> dict:
        """The block run once with ``faults`` switched on (each fires as often as it says)."""
        self.post("faults", faults)
        return self.run(lake, *args, **kwargs)

    def arm_after_probe(self, config: dict | None = None, **faults) -> None:
        """Switch ``faults`` on (and post ``config``) once the block's probe is done, so they hit the
        download itself."""
        real = self.module.probe

        @functools.wraps(real)
        def probe(*args, **kwargs):
            found = real(*args, **kwargs)
            self.server.faults.set(**faults)
            if config:
                self.post("config", config)
            return found

        self.monkeypatch.setattr(self.module, "probe", probe)


class StreetManager(ArchiveSource):
    """One part (permits) of one month's archive; the archive host is anonymous."""

    name = "street_manager"
    module = sm
    month, part = MONTH, PART

    conn_id = "civic_street_manager"

    def configure(self) -> None:
        self.post("config", {"street_manager": {"latest_month": "2024-06", "events_per_month": {PART: EVENTS}}})
        assert self.rows() == EVENTS  # so every row's "exactly the published events" is exactly EVENTS

    def folder(self, lake: str) -> Path:
        return Path(lake) / "street_manager" / PART / f"month={MONTH}"

    def run(self, lake: str, **kwargs) -> dict:
        return run_block("street_manager", MONTH, lake=lake, part=PART, **kwargs)

    def keys(self) -> list[int]:
        """The event references the published archive carries (what the block must hold)."""
        return [e["event_reference"] for e in archive_events(self.server.street_manager.spec(PART, MONTH))]

    def rows(self) -> int:
        return len(self.keys())

    def exact(self, lake: str) -> int:
        return assert_exactly(lake, "street_manager", MONTH, self.keys(), part=PART)

    def table(self, lake: str, name: str = "data.parquet"):
        return pq.read_table(self.folder(lake) / name)

    def republish(self) -> None:
        """A late edit: 5 more events in the month's archive."""
        self.post("config", {"street_manager": {"late_edit": {f"{PART}/{MONTH}": 1}}})

    def answers(self, seen: list[dict]) -> list[str]:
        """Every request the block made (the probe's HEAD, the archive GETs), with its answer."""
        return [f"{e['method']} {e['status']}" for e in seen]

    def downloads(self, seen: list[dict]) -> list[dict]:
        return [e for e in seen if e["method"] == "GET"]


class Srwr(ArchiveSource):
    """One month of the export (read from the 2023 year file unless told); the API is anonymous,
    its download a pre-signed URL."""

    name = "srwr"
    module = srwr_source
    month, part = SRWR_MONTH, None

    conn_id = "civic_srwr"
    conn_fields = {"extra": {"today": SRWR_TODAY}}

    def configure(self) -> None:
        self.post("config", {"srwr": {"today": SRWR_TODAY, "activities_per_month": SRWR_ACTIVITIES}})

    def folder(self, lake: str, month: str = SRWR_MONTH) -> Path:
        return Path(lake) / "srwr" / f"month={month}"

    def run(self, lake: str, month: str = SRWR_MONTH, **kwargs) -> dict:
        return run_block("srwr", month, lake=lake, **kwargs)

    def keys(self, month: str = SRWR_MONTH) -> list[str]:
        return [fields[2] for fields in self.server.srwr.expected_month(month)["001"]]

    def rows(self, month: str = SRWR_MONTH) -> int:
        return len(self.keys(month))

    def exact(self, lake: str, month: str = SRWR_MONTH, identifier: str | None = None) -> int:
        """Exactly the month's activities in data.parquet, and exactly their records in every other
        table (``identifier``: the file the block read; by default the one its manifest names)."""
        if identifier is None:
            identifier = read_manifest(BlockLocation(lake=lake, source="srwr", month=month))["identifier"]
        want = self.server.srwr.expected_month(month, identifier)
        count = assert_exactly(lake, "srwr", month, [fields[2] for fields in want["001"]])
        for record_type, name in SRWR_TABLES.items():
            table = pq.read_table(self.folder(lake, month) / f"{name}.parquet")
            assert sorted(table["raw_fields"].to_pylist()) == sorted(want.get(record_type, [])), name
        unknown = [
            fields for record_type, rows in want.items() if record_type not in (*SRWR_TABLES, "001") for fields in rows
        ]
        table = pq.read_table(self.folder(lake, month) / "unknown_records.parquet")
        assert sorted(table["raw_fields"].to_pylist()) == sorted(unknown)
        return count

    def table(self, lake: str, name: str = "data.parquet"):
        return pq.read_table(self.folder(lake) / name)

    def republish(self) -> None:
        """Late edits to 3 of the month's activities."""
        self.post("config", {"srwr": {"late_edits": {"month": SRWR_MONTH, "n": 3}}})

    def answers(self, seen: list[dict]) -> list[int]:
        """The answers to step 2 (the probe's one-byte range, then the downloads)."""
        return [e["status"] for e in step2(seen)]

    def downloads(self, seen: list[dict]) -> list[dict]:
        return [e for e in step2(seen) if not e["range"]]


SOURCES = {"street_manager": StreetManager, "srwr": Srwr}


def open_source(name: str, server, monkeypatch) -> ArchiveSource:
    """``name``'s adapter on ``server``, reset, with its connection and the test's volumes."""
    source = SOURCES[name](server, monkeypatch)
    source.configure()
    return source


def fails_and_keeps(source: ArchiveSource, lake: str, error, match: str, **faults) -> tuple[dict, dict, str]:
    """Land the month, republish it (a late edit), run with ``faults`` (which must raise), check the
    old landing is byte for byte what it was, then run without the fault: exactly the republished
    month. Returns the first and the follow-up manifests and the error's text."""
    first = source.run(lake)
    assert first["rows"] == source.rows()
    first_keys = sorted(source.keys())
    before = folder_bytes(source.folder(lake))
    source.republish()
    source.post("faults", faults)
    with pytest.raises(error, match=match) as raised:
        source.run(lake)
    assert folder_bytes(source.folder(lake)) == before, "the failed run touched the landed block"
    assert_no_partial(lake, source.name, source.month, source.part)
    assert landed_keys(lake, source.name, source.month, source.part) == first_keys
    again = source.run(lake)
    assert not again["skipped"] and again["watermark"] != first["watermark"]
    assert again["rows"] == source.exact(lake) == source.rows()
    return first, again, str(raised.value)


# ---------------------------------------------------------------- one row of a matrix, and its runner


def run_row(row: Row, server, lake: str, monkeypatch, caplog, reliability) -> None:
    """The one runner of the archive rows: publish the row, open the source, run its check."""
    reliability.row(fault=row.fault, source=row.source, expected=row.expected)
    source = open_source(row.source, server, monkeypatch)
    reliability.observed(row.check(source, lake, SimpleNamespace(monkeypatch=monkeypatch, caplog=caplog)))


def matrix_test(rows: list[Row]):
    """The test a matrix module binds to a ``test_`` name: one item per row, run by ``run_row``."""

    @pytest.mark.parametrize("row", rows, ids=str)
    def test(row, server, lake, monkeypatch, caplog, reliability):
        run_row(row, server, lake, monkeypatch, caplog, reliability)

    return test


# ---------------------------------------------------------------- the fixtures the matrix modules import


@pytest.fixture(scope="module")
def server(module_replay):
    """One replay server for a module (starting one costs about 1.5 s); each test resets it."""
    return module_replay
