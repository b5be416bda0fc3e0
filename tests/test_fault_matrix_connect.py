"""The fault matrix of connections and connecting, for every source.

* A connection written without ``schema`` (URI or JSON), or with a host Airflow's
  ``Connection.get_uri()`` percent-encoded (``host%2Fpath``), reaches the replay as Airflow's
  ``HttpHook`` would: over http, at the decoded path; the block lands.
* A host that does not resolve (a name under the reserved ``.invalid`` TLD) or a loopback port that
  refuses fails the block at once: one error naming the connection, no retry warnings (urllib3's
  retries do not run under tenacity's any more), seconds measured. A connect timeout (a loopback
  listener whose accept queue is full drops the SYN) gives up within the configured deadline.
* A fractional ``Retry-After`` (``0.5``) on a 429 is waited, then the block lands: a row of
  ``test_fault_matrix_http`` (its check ``a_request_is_asked_again_after_the_wait``).

Each test publishes its row of ``docs/reliability.md`` through the ``reliability`` fixture.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from http_faults import MDS_CLOCK, SETUPS

from civic_pipelines.extract import run_block
from civic_pipelines.http import SourceUnreachable
from civic_pipelines.sources import mds

NOWHERE = "civic-test.invalid"  # RFC 2606: resolves nowhere, with or without the internet
# Every source's block (source, month, part) and its connection id.
BLOCKS = {
    "seattle_crime": ("2024-02", None, "civic_seattle_crime"),
    "nyc_311": ("2024-03", None, "civic_nyc_311"),
    "minneapolis_311": ("2024-02", None, "civic_minneapolis_311"),
    "toronto_311": ("2024-02", None, "civic_toronto_311"),
    "mds": ("2023-02", "lyft", "civic_mds_lyft"),
    "srwr": ("2023-03", None, "civic_srwr"),
    "street_manager": ("2024-02", "permit", "civic_street_manager"),
}
FAIL_FAST_SECONDS = 30  # the bound (the connect deadline's default)


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_at(monkeypatch, source: str, base: str) -> None:
    """The source's connection at ``base`` (``http://host:port``), in the form the tests use."""
    month, part, conn_id = BLOCKS[source]
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    if source == "mds":
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_PROVIDERS", '["lyft"]')
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICTS_PATH", "")
        monkeypatch.setenv("AIRFLOW_VAR_CIVIC_MDS_DISTRICT_PROPERTY", "")
        monkeypatch.setattr(mds.fetch, "_now", lambda: MDS_CLOCK)
        conn = {"conn_type": "http", "host": f"{base}/mds/lyft", "extra": {"mds_version": "1.2.0", "auth": "none"}}
    else:
        scheme, rest = base.split("://", 1)
        host, _, port = rest.partition(":")
        conn = {"conn_type": "http", "host": host, "schema": scheme, **({"port": int(port)} if port else {})}
        if source == "srwr":
            conn["extra"] = {"today": "2024-06-15"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def fails_fast(source: str, lake: str, caplog) -> tuple[float, str, int]:
    """Run the block; it must fail with one line naming the connection. (seconds, message, warnings)"""
    month, part, conn_id = BLOCKS[source]
    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(SourceUnreachable) as error:
        run_block(source, month, lake=lake, part=part)
    took = time.monotonic() - started
    message = str(error.value)
    assert "\n" not in message and f"connection {conn_id}" in message, message
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    return took, message, len(warnings)


# ---------------------------------------------------------------- unreachable hosts


@pytest.mark.parametrize("source", list(BLOCKS))
def test_a_host_that_does_not_resolve_fails_fast_naming_the_connection(source, monkeypatch, lake, caplog, reliability):
    reliability.row(
        fault="host does not resolve (.invalid)",
        source=source,
        expected=f"fails within {FAIL_FAST_SECONDS} s with one line naming the connection; no retry "
        "chain (no urllib3 retry inside a tenacity retry), no warning per attempt",
    )
    point_at(monkeypatch, source, f"http://{NOWHERE}")
    took, message, warnings = fails_fast(source, lake, caplog)
    assert "does not resolve" in message and NOWHERE in message
    assert took < 5, f"took {took:.1f} s"  # one failed lookup: far inside the 30 s bound
    assert warnings == 0, [r.getMessage() for r in caplog.records]
    reliability.observed(f"failed after {took:.2f} s, {warnings} warnings: {message[:90]}...")


@pytest.mark.parametrize("source", list(BLOCKS))
def test_a_refused_port_fails_fast_naming_the_connection(source, monkeypatch, lake, caplog, reliability):
    reliability.row(
        fault="connection refused (loopback port)",
        source=source,
        expected=f"fails within {FAIL_FAST_SECONDS} s with one line naming the connection; no retry warnings",
    )
    port = refused_port()
    point_at(monkeypatch, source, f"http://127.0.0.1:{port}")
    took, message, warnings = fails_fast(source, lake, caplog)
    assert "connection refused" in message and f"127.0.0.1:{port}" in message
    assert took < 5, f"took {took:.1f} s"
    assert warnings == 0, [r.getMessage() for r in caplog.records]
    reliability.observed(f"failed after {took:.2f} s, {warnings} warnings: {message[:90]}...")


def test_a_connect_timeout_gives_up_within_the_configured_deadline(monkeypatch, lake, caplog, reliability):
    """A loopback listener that never accepts, with its queue full: the kernel drops further SYNs,
    so connecting times out (as a firewalled host does)."""
    reliability.row(
        fault="connect timeout (SYN dropped)",
        source="seattle_crime",
        expected="with a 1 s connect timeout and a 3 s deadline (CIVIC_HTTP_CONNECT_TIMEOUT/"
        "_DEADLINE) the block fails within the deadline naming the connection",
    )
    monkeypatch.setenv("CIVIC_HTTP_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("CIVIC_HTTP_CONNECT_DEADLINE", "3")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (its size is backlog + 1 on Linux)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        point_at(monkeypatch, "seattle_crime", f"http://127.0.0.1:{port}")
        took, message, warnings = fails_fast("seattle_crime", lake, caplog)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert "connect timed out" in message
    assert 1.0 <= took < 3.5, f"took {took:.1f} s"
    assert warnings <= 1  # one retry fits the deadline (1 s + backoff + 1 s), a second does not
    reliability.observed(f"failed after {took:.2f} s ({warnings} retry warning): {message[:80]}...")


def test_the_cli_prints_one_line_and_exits_fast_for_a_dead_host(tmp_path, reliability):
    """``civic extract`` as a person runs it: seconds to fail and lines on stderr."""
    reliability.row(
        fault="host does not resolve, via `civic extract`",
        source="seattle_crime",
        expected="exit 1 within seconds, stderr is one line naming the connection",
    )
    env = {
        **os.environ,
        "AIRFLOW_CONN_CIVIC_SEATTLE_CRIME": f"http://{NOWHERE}",
        "CIVIC_NO_AIRFLOW_LOOKUP": "1",
        "CIVIC_LAKE": str(tmp_path / "lake"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "civic_pipelines.cli", "extract", "--source", "seattle_crime", "--month", "2024-01"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    took = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "connection civic_seattle_crime" in lines[0] and "does not resolve" in lines[0]
    assert took < FAIL_FAST_SECONDS
    reliability.observed(
        f"exit 1 after {took:.2f} s (process start included), {len(lines)} stderr line: {lines[0][:100]}..."
    )


# ---------------------------------------------------------------- how connections are written


@pytest.mark.parametrize("form", ["uri", "json"])
def test_a_connection_without_schema_reaches_the_replay_over_http(form, seattle_conn, monkeypatch, lake, reliability):
    reliability.row(
        fault=f"connection without schema ({form.upper()} form)",
        source="seattle_crime",
        expected="read as Airflow's HttpHook reads it: http (not https, an SSL error); the block lands",
    )
    host, port = seattle_conn.url.split("://", 1)[1].split(":")
    value = (
        f"http://{host}:{port}" if form == "uri" else json.dumps({"conn_type": "http", "host": host, "port": int(port)})
    )
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", value)
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    manifest = run_block("seattle_crime", "2024-02", lake=lake)
    assert not manifest["skipped"] and manifest["rows"] > 0
    reliability.observed(f"{value} -> {manifest['rows']:,} rows landed")


def test_a_host_with_a_path_as_get_uri_writes_it_reaches_the_provider(replay, monkeypatch, lake, tmp_path, reliability):
    from airflow.sdk import Connection

    reliability.row(
        fault="host with a path, URI from Connection.get_uri()",
        source="mds",
        expected="the percent-encoded host (host%2Fpath) is decoded as Airflow decodes it; the "
        "provider's block lands whole",
    )
    block = SETUPS["mds:voi"](replay, monkeypatch, lake, tmp_path)
    written = replay.mds.connection("voi")  # host http://127.0.0.1:PORT/mds/voi, a bearer token
    uri = Connection(
        conn_id="civic_mds_voi",
        conn_type="http",
        host=written["host"],
        login=written.get("login"),
        password=written.get("password"),
        extra=json.dumps(written["extra"]),
    ).get_uri()
    assert "%2Fmds%2Fvoi" in uri
    monkeypatch.setenv("AIRFLOW_CONN_CIVIC_MDS_VOI", uri)
    try:
        manifest = block.run()
        rows = block.exactly()
    finally:
        mds.clear_token_cache()
    assert not manifest["skipped"] and manifest["rows"] == rows > 0
    reliability.observed(f"{uri.split('@')[-1].split('?')[0]} -> {rows:,} trips landed, key set equal")
