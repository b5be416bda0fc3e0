"""A block writer killed with SIGKILL in the middle of writing: the previous landing stays readable
and complete, and the next run removes the dead writer's temporary files and lands the new block whole.

The kill lands mid-write deterministically: ``CIVIC_TEST_PAUSE_MID_WRITE`` (a test-only failpoint in
``lake.py``) makes the writer stop right after its first row group went into the temporary data file
(no parquet footer yet) and say so in a marker file; the test waits for that file, checks the
half-written temporary file is really there, then sends SIGKILL. Both writers are covered: the
in-memory ``write_block`` (Seattle, a SODA source) and the streamed ``BlockWriter`` (Street Manager's
archives). The writer is a real ``civic extract`` process against the replay server.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import requests
from fault_checks import assert_exactly, assert_no_partial, landed_keys
from replay_env import connection_env

from civic_pipelines.extract import run_block
from civic_pipelines.lake import BlockLocation
from civic_pipelines.replay.street_manager import archive_events

CIVIC = str(Path(sys.executable).with_name("civic"))


def snapshot(folder: Path) -> dict:
    """Every landed file of the block (temporary files excluded) by name -> sha256 of its bytes."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".")
    }


def glob_keys(lake: str, pattern: str, key: str) -> list:
    """What a reader sees through the glob dbt and the dashboard use."""
    with duckdb.connect() as con:
        return sorted(r[0] for r in con.execute(f"select {key} from read_parquet(?)", [f"{lake}/{pattern}"]).fetchall())


def kill_mid_write(args: list[str], env: dict, marker: Path) -> tuple[Path, int, float]:
    """Run ``civic extract`` with the failpoint, wait until it has half-written its temporary data file,
    SIGKILL it; returns the temporary file's path and size, and the seconds until the kill."""
    started = time.monotonic()
    process = subprocess.Popen(
        [CIVIC, *args],
        env={**env, "CIVIC_TEST_PAUSE_MID_WRITE": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the writer ended before the failpoint (exit {process.returncode}): {err[-2000:]}")
            assert time.monotonic() < deadline, "the writer never reached the failpoint"
            time.sleep(0.02)
        temp = Path(marker.read_text())
        # Mid-write for real: the temporary file holds the first row group, but no footer.
        assert temp.is_file() and temp.stat().st_size > 1000, temp
        assert temp.name.startswith(".") and temp.name.endswith(".tmp")
        with pytest.raises(Exception, match="magic bytes|footer|Parquet"):
            pq.read_metadata(temp)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        return temp, temp.stat().st_size, time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("CIVIC_NO_AIRFLOW_LOOKUP", "1")
    return {**os.environ, "CIVIC_NO_AIRFLOW_LOOKUP": "1"}


@dataclass
class Landing:
    """A block landed once before the kill: what the killed run must leave exactly as it was."""

    source: str
    month: str
    part: str | None
    lake: str
    conn: dict  # the source's connection variables, for the killed process too
    first: dict  # the manifest of the landing
    folder: Path
    files: dict  # ``snapshot`` of the folder
    keys: list

    @property
    def pattern(self) -> str:
        """The readers' glob over every month of the source (or part)."""
        return "/".join(p for p in (self.source, self.part, "month=*/data.parquet") if p)

    def extract_args(self) -> list[str]:
        part = ["--part", self.part] if self.part else []
        return ["extract", "--source", self.source, *part, "--month", self.month, "--lake", self.lake]

    def run(self) -> dict:
        return run_block(self.source, self.month, lake=self.lake, part=self.part)


def land(replay, monkeypatch, lake: str, source: str, month: str, part: str | None = None) -> Landing:
    """The source's connection set, then its block landed once and snapshotted."""
    conn = connection_env(replay, f"civic_{source}")
    for key, value in conn.items():
        monkeypatch.setenv(key, value)
    first = run_block(source, month, lake=lake, part=part)
    folder = Path(BlockLocation(lake, source, month, part).folder)
    keys = landed_keys(lake, source, month, part)
    return Landing(source, month, part, lake, conn, first, folder, snapshot(folder), keys)


def assert_kill_left_the_landing(landing: Landing, temp: Path, key: str) -> None:
    """The previous landing: the same files byte for byte, the same manifest and checksum, readable by
    the readers' glob, which does not see the dead writer's temporary file."""
    assert snapshot(landing.folder) == landing.files
    manifest = json.loads((landing.folder / "_manifest.json").read_text())
    assert manifest["sha256"] == landing.first["sha256"] and manifest["rows"] == len(landing.keys)
    assert glob_keys(landing.lake, landing.pattern, key) == landing.keys
    assert temp.exists(), "the killed writer's temporary file is left behind (what the next run must clean)"


def rerun_after_the_kill(landing: Landing) -> dict:
    """The next run lands the changed block whole and removes the leftover."""
    rerun = landing.run()
    assert not rerun["skipped"] and rerun["stale_temps_removed"] == 1
    assert "lock_waited_seconds" not in rerun, "the dead writer's lock went with it"
    assert rerun["sha256"] != landing.first["sha256"]
    return rerun


def test_sigkill_mid_write_block_keeps_the_previous_landing_and_the_rerun_lands_whole(
    replay, lake, env, tmp_path, monkeypatch, reliability
):
    reliability.row(
        fault="SIGKILL mid-write (in-memory write_block)",
        source="seattle_crime",
        expected="previous landing unchanged and readable (same files, manifest, sha256); the rerun "
        "removes the dead writer's temp file and lands the new month whole",
    )
    landing = land(replay, monkeypatch, lake, "seattle_crime", "2024-01")

    # The source changes (late edits move the watermark), and the run that would land it is killed.
    replay.dataset.apply_late_edits(landing.month, 25)
    temp, size, seconds = kill_mid_write(landing.extract_args(), {**env, **landing.conn}, tmp_path / "paused")
    assert_kill_left_the_landing(landing, temp, "offense_id")

    rerun = rerun_after_the_kill(landing)
    assert rerun["rows_changed"]["changed"] > 0
    want = [int(r["offense_id"]) for r in replay.dataset.rows_for_month(landing.month)]
    rows = assert_exactly(lake, "seattle_crime", landing.month, want)
    assert_no_partial(lake, "seattle_crime", landing.month)
    assert glob_keys(lake, landing.pattern, "offense_id") == sorted(want)
    reliability.observed(
        f"killed {seconds:.1f} s after start with a {size:,}-byte footerless temp file; old block "
        f"byte-identical ({len(landing.keys):,} rows); rerun landed {rows:,} rows, {rerun['rows_changed']['changed']} changed, key set equal, "
        "0 duplicates, 1 stale temp removed"
    )


def test_sigkill_mid_stream_keeps_the_previous_landing_and_the_rerun_lands_whole(
    replay, lake, env, tmp_path, monkeypatch, reliability
):
    def configure(body):
        requests.post(f"{replay.url}/_replay/config", json={"street_manager": body}, timeout=60).raise_for_status()

    reliability.row(
        fault="SIGKILL mid-write (streamed BlockWriter)",
        source="street_manager",
        expected="previous landing unchanged and readable (same files, manifest, sha256); the rerun "
        "removes the dead writer's temp file and lands the republished month whole",
    )
    month, part = "2024-03", "permit"
    configure({"latest_month": "2024-06", "events_per_month": {"permit": 400, "activity": 0, "section_58": 0}})
    landing = land(replay, monkeypatch, lake, "street_manager", month, part)
    assert landing.first["rows"] == 400

    configure({"late_edit": {f"{part}/{month}": 1}})  # the month is republished (new and changed events)
    temp, size, seconds = kill_mid_write(landing.extract_args(), {**env, **landing.conn}, tmp_path / "paused")
    key = "event_reference"
    assert_kill_left_the_landing(landing, temp, key)

    rerun = rerun_after_the_kill(landing)
    assert rerun["rows"] == 405
    want = [e[key] for e in archive_events(replay.street_manager.spec(part, month))]
    landed = landed_keys(lake, "street_manager", month, part)
    assert landed == sorted(want)
    assert rerun["rows_changed"]["added"] == 5 and set(landing.keys) <= set(landed)
    assert_no_partial(lake, "street_manager", month, part)
    assert glob_keys(lake, landing.pattern, key) == landed
    reliability.observed(
        f"killed {seconds:.1f} s after start mid-stream ({size:,}-byte footerless temp file); old block byte-identical "
        f"({len(landing.keys):,} events); rerun landed {len(landed):,} events (5 added), "
        "0 duplicates, 1 stale temp removed"
    )
