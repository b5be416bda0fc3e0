"""The fault matrix for the two archive sources: Street Manager (DfT monthly zips of JSON events,
streamed by ``stream_block``) and SRWR (Scotland's zipped headerless CSV behind a pre-signed URL).
This module holds the rows both sources answer alike, each run for both; the rows only one source
has are in ``test_fault_matrix_street_manager.py`` and ``test_fault_matrix_srwr.py``.

Every row runs a real block in-process (``run_block``) against the replay server with one fault
switched on, asserts the outcome, then runs the block again without the fault and checks that the
lake holds exactly the source's rows (count and key set), no duplicates and nothing half-written
(``fault_checks``). Faults that fail the block start from a landed month and republish it (a late
edit) before the faulted run, so the test shows both that the old landing survives the failure
untouched and that the follow-up run replaces it whole.

Street Manager's archive host and SRWR's export API are anonymous (contract: "auth / registration:
none"; SRWR "no auth documented"): there is no token to expire. SRWR's one credential-like thing is
the pre-signed URL, whose expiry is covered; for Street Manager an unexpected 401 is covered.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest
from archive_faults import (
    EVENTS,
    SRWR_MONTH,
    fails_and_keeps,
    folder_bytes,
    gap_after,
    open_source,
    server,  # noqa: F401 - a fixture
    settle,
    timeline,
)

from civic_pipelines.sources import srwr as srwr_source
from civic_pipelines.sources import street_manager as sm
from civic_pipelines.sources.base import EmptyAnswerError, SchemaDriftError

ARCHIVE_SOURCES = ["street_manager", "srwr"]


@pytest.fixture(params=ARCHIVE_SOURCES)
def source(request, server, monkeypatch):
    return open_source(request.param, server, monkeypatch)


def test_429_retry_after_is_honoured(source, lake, monkeypatch, reliability):
    reliability.row(
        fault="429 with Retry-After",
        source=source.name,
        expected={
            "street_manager": "the archive GET waits the Retry-After (1 s) and retries once; every event lands once",
            "srwr": "the download (step 2) waits the Retry-After (1 s) and retries; every activity and record lands once",
        }[source.name],
    )
    seen = timeline(monkeypatch, source.server)
    source.arm_after_probe(status_429=1, retry_after=1)
    manifest = source.run(lake)
    waited = gap_after(seen, 429)
    assert 0.95 <= waited < 3, waited
    answers = source.answers(seen)
    assert (
        answers == {"street_manager": ["HEAD 200", "GET 429", "GET 200"], "srwr": [206, 429, 200]}[source.name]
    )  # SRWR: the probe's byte, the throttled download, its retry
    rows = source.exact(lake)
    assert manifest["rows"] == rows == source.rows()
    assert source.run(lake)["skipped"] and source.exact(lake) == rows  # follow-up: unchanged, still exact
    reliability.observed(
        f"waited {waited:.2f} s (Retry-After 1); answers {answers}; {rows} rows, key set equal, "
        "0 duplicates; follow-up skipped as unchanged"
    )


def test_5xx_bursts_are_retried(source, lake, monkeypatch, reliability):
    reliability.row(
        fault="bursts of 500/502/503",
        source=source.name,
        expected={
            "street_manager": "the HEAD and the archive GET are retried with backoff through the bursts; every event "
            "lands once",
            "srwr": "the probe's and the download's requests are retried with backoff through the bursts; every record "
            "lands once",
        }[source.name],
    )
    seen = timeline(monkeypatch, source.server)
    source.post("faults", {"status_503": 2})  # the probe's request
    source.arm_after_probe(status_500=2, status_502=2)  # the download
    manifest = source.run(lake)
    answers = source.answers(seen)
    assert (
        answers
        == {
            "street_manager": [
                "HEAD 503",
                "HEAD 503",
                "HEAD 200",
                "GET 500",
                "GET 500",
                "GET 502",
                "GET 502",
                "GET 200",
            ],
            "srwr": [503, 503, 206, 500, 500, 502, 502, 200],
        }[source.name]
    )
    rows = source.exact(lake)
    assert manifest["rows"] == rows == source.rows()
    assert source.run(lake)["skipped"] and source.exact(lake) == rows
    reliability.observed(f"answers {answers}; {rows} rows, key set equal, 0 duplicates")


def test_a_stalled_answer_times_out_and_is_retried(source, lake, monkeypatch, reliability):
    reliability.row(
        fault="timeout (stalled answer)",
        source=source.name,
        expected="the download gives up after the read timeout (1 s), before the 2.5 s stall ends, and "
        "retries; every record lands once",
    )
    monkeypatch.setenv("CIVIC_HTTP_READ_TIMEOUT", "1")
    seen = timeline(monkeypatch, source.server)
    source.arm_after_probe(delay=1, delay_seconds=2.5)
    started = time.monotonic()
    manifest = source.run(lake)
    took = time.monotonic() - started
    downloads = source.downloads(seen)
    gave_up = downloads[1]["at"] - downloads[0]["at"]
    assert len(downloads) == 2 and 0.95 <= gave_up < 2.4, gave_up
    rows = source.exact(lake)
    assert manifest["rows"] == rows == source.rows()
    settle(seen)
    reliability.observed(
        f"retried after {gave_up:.2f} s (stall 2.5 s); block {took:.2f} s; {rows} rows, key set equal, 0 duplicates"
    )


def test_an_empty_archive_does_not_wipe_a_landed_month(source, lake, reliability):
    reliability.row(
        fault="empty month replacing a landed month",
        source=source.name,
        expected="refused (EmptyAnswerError): the landed rows stay; a forced run accepts the empty month; "
        "the follow-up lands the month whole",
    )
    landed = source.run(lake)["rows"]
    before = folder_bytes(source.folder(lake))
    source.post("faults", {"empty_month": 1})  # SRWR: the probe sees the empty file too, its watermark moved
    refusal = {
        "street_manager": f"holds 0 events.*{EVENTS} rows were landed.*force",
        "srwr": f"holds no activity for {SRWR_MONTH}.*{landed} rows were landed",
    }[source.name]
    with pytest.raises(EmptyAnswerError, match=refusal):
        source.run(lake)
    assert folder_bytes(source.folder(lake)) == before
    if source.name == "street_manager":  # the archive as published is unchanged: nothing to do
        assert source.run(lake)["skipped"] and source.exact(lake) == EVENTS
    forced = source.run_faulted(lake, {"empty_month": 1}, force=True)
    assert forced["rows"] == 0 and source.table(lake).num_rows == 0
    assert source.run(lake)["rows"] == source.exact(lake) == landed == source.rows()
    reliability.observed(f"refused, {landed} rows kept; forced: 0 rows; follow-up {landed} rows, key set equal")


@dataclass
class Failing:
    """A fault the block must fail on, for one source: the error it raises, and what the error says."""

    source: str
    fault: str
    expected: str
    error: type
    match: str
    faults: dict
    config: dict = field(default_factory=dict)
    says: str = ""  # a further pattern the error's text must hold
    grows_by: int = 0  # rows the republished month has more than the first

    def __str__(self) -> str:
        return f"{self.source}:{self.fault}"


KEEPS = "lands nothing and the previous landing stays byte for byte; the follow-up lands the month whole"
FAILING = [
    Failing(
        "street_manager",
        "truncated archive",
        f"the block fails (ArchiveTruncated: no central directory after the last member), {KEEPS}",
        sm.ArchiveTruncated,
        "truncated",
        {"truncate_archive": 1},
        grows_by=5,
    ),
    *(
        Failing(
            "street_manager",
            f"corrupt archive: {what}",
            f"the block fails (ArchiveCorrupt), never landing the other members as a partial month; {KEEPS}",
            sm.ArchiveCorrupt,
            match,
            {"corrupt_archive": 1},
            config={"street_manager": {"fault_options": {"corrupt": mode}}},
            grows_by=5,
        )
        for mode, what, match in [
            ("member", "bad bytes inside a member (CRC-32 / inflate fails)", "damaged"),
            ("between", "garbage bytes between members", "neither a member nor the central"),
        ]
    ),
    Failing(
        "street_manager",
        "field disappears (the reference number)",
        f"the block fails (SchemaDriftError naming permit_reference_number), never landing null keys; {KEEPS}",
        SchemaDriftError,
        "permit_reference_number",
        {"drop_field": 1},
        grows_by=5,
    ),
    *(
        Failing(
            "srwr",
            f"{name} (every download)",
            f"after 4 pre-signed URLs the block fails with the damage named; {KEEPS}",
            srwr_source.SrwrError,
            "no usable download after 4",
            {fault: 4},
            says=says,
        )
        for fault, name, says in [
            ("truncate_archive", "truncated archive", "cut short|inflate"),
            ("corrupt_archive", "corrupt archive", "CRC|inflate"),
        ]
    ),
    *(
        Failing(
            "srwr",
            f"field disappears ({drop['record_type']} row[{drop['position']}])",
            f"the block fails (SchemaDriftError: the layout changed), never landing shifted values or silent "
            f"nulls; {KEEPS}",
            SchemaDriftError,
            "record layout changed",
            {"drop_field": 1},
            config={"srwr": {"fault_options": {"drop_field": drop}}},
        )
        for drop in [
            {"record_type": "001", "position": 5},  # promoter id: later values move left, two go empty
            {"record_type": "008", "position": 20},
        ]
    ),  # TM code: the footway flag moves into a code column
]


@pytest.mark.parametrize("case", FAILING, ids=str)
def test_a_fault_that_fails_the_block_keeps_the_landing(server, case, lake, monkeypatch, reliability):
    source = open_source(case.source, server, monkeypatch)
    reliability.row(fault=case.fault, source=case.source, expected=case.expected)
    if case.config:
        source.post("config", case.config)
    first, again, error = fails_and_keeps(source, lake, case.error, case.match, **case.faults)
    assert again["rows"] == first["rows"] + case.grows_by
    assert re.search(case.says or case.match, error), error
    reliability.observed(
        f"failed: {error[:110]}...; previous {first['rows']} rows intact; follow-up {again['rows']} rows, key set equal"
    )
