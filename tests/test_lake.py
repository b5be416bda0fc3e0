"""The lake replaces a block whole: readers see the old block or the new one, never a mix."""

import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq

from civic_pipelines.lake import BlockLocation, content_sha256, landed_months, read_manifest, write_block


def table(ids):
    return pa.table(
        {
            "offense_id": pa.array(ids, pa.int64()),
            "_landed_at": pa.array([None] * len(ids), pa.timestamp("us", tz="UTC")),
        }
    )


def test_write_then_replace(lake):
    location = BlockLocation(lake, "demo", "2024-01")
    write_block(location, table([1, 2, 3]), None, {"rows": 3, "watermark": "1"})
    assert pq.read_table(location.path("data.parquet"))["offense_id"].to_pylist() == [1, 2, 3]
    write_block(location, table([4, 5]), table([9]), {"rows": 2, "watermark": "2"})
    assert pq.read_table(location.path("data.parquet"))["offense_id"].to_pylist() == [4, 5]
    assert pq.read_table(location.path("quarantine.parquet")).num_rows == 1
    assert read_manifest(location)["watermark"] == "2"
    write_block(location, table([6]), None, {"rows": 1, "watermark": "3"})
    assert not os.path.exists(location.path("quarantine.parquet")), (
        "a stale quarantine file must not survive a re-landing"
    )
    assert sorted(os.listdir(location.folder)) == ["_manifest.json", "data.parquet"], "no temporary files left behind"
    assert landed_months(lake, "demo") == ["2024-01"]


def test_checksum_ignores_landing_time_but_not_content():
    a = pa.table({"x": [1, 2], "_landed_at": pa.array([1, 1], pa.timestamp("us", tz="UTC"))})
    b = pa.table({"x": [1, 2], "_landed_at": pa.array([5, 5], pa.timestamp("us", tz="UTC"))})
    c = pa.table({"x": [1, 3], "_landed_at": pa.array([1, 1], pa.timestamp("us", tz="UTC"))})
    assert content_sha256(a) == content_sha256(b) != content_sha256(c)


def test_crash_between_write_and_rename_leaves_the_old_block(lake, tmp_path):
    location = BlockLocation(lake, "demo", "2024-02")
    write_block(location, table([1, 2, 3]), None, {"rows": 3, "watermark": "old"})
    # A child process writes a new block and is killed (SIGKILL) right before the first rename.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(os.path.join(os.path.dirname(__file__), "..", "include"))!r})
        import pyarrow as pa
        from civic_pipelines import lake
        def die(filesystem, src, dest):
            os.kill(os.getpid(), signal.SIGKILL)
        lake._rename = die
        lake.write_block(lake.BlockLocation({lake!r}, "demo", "2024-02"),
                         pa.table({{"offense_id": pa.array(range(1000), pa.int64())}}), None, {{"rows": 1000, "watermark": "new"}})
        """
    )
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    assert pq.read_table(location.path("data.parquet"))["offense_id"].to_pylist() == [1, 2, 3]
    assert read_manifest(location)["watermark"] == "old"
    # Leftover temporaries are invisible to readers' glob and replaced by the next landing.
    assert [name for name in os.listdir(location.folder) if name.endswith(".parquet")] == ["data.parquet"]
    write_block(location, table([7]), None, {"rows": 1, "watermark": "new"})
    assert pq.read_table(location.path("data.parquet"))["offense_id"].to_pylist() == [7]
    assert json.loads(open(location.path("_manifest.json")).read())["watermark"] == "new"
