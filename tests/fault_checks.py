"""Checks every fault-matrix test ends with: the block holds exactly the source's rows, and no
reader (dbt's glob ``month=*/data.parquet``, the dashboard) can see a partial one."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from civic_pipelines import sources
from civic_pipelines.lake import MANIFEST_FILE, BlockLocation, read_block_table, read_manifest


def landed_keys(
    lake: str, source: str, month: str, part: str | None = None, table: str = "data.parquet", key: str | None = None
) -> list:
    """The landed block's natural keys, sorted; asserts there are no duplicates."""
    location = BlockLocation(lake=lake, source=source, month=month, part=part)
    data = read_block_table(location, table)
    assert data is not None, f"{location.folder}/{table} is not landed"
    key = key or sources.get(source).SPEC.natural_key
    keys = data.column(key).to_pylist()
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicate {key} values in {location.folder}"
    assert pc.sum(pc.is_null(data.column(key))).as_py() in (0, None), f"null {key} in {location.folder}"
    return sorted(keys)


def assert_exactly(
    lake: str,
    source: str,
    month: str,
    expected_keys,
    part: str | None = None,
    table: str = "data.parquet",
    key: str | None = None,
) -> int:
    """The block holds exactly ``expected_keys`` (count and set) and its manifest agrees."""
    keys = landed_keys(lake, source, month, part, table, key)
    expected = sorted(expected_keys)
    assert len(keys) == len(expected), f"{len(keys)} rows landed, source has {len(expected)}"
    assert keys == expected, (
        f"key sets differ: {len(set(keys) - set(expected))} extra, {len(set(expected) - set(keys))} missing"
    )
    manifest = read_manifest(BlockLocation(lake=lake, source=source, month=month, part=part))
    assert manifest is not None
    if table == "data.parquet":
        assert manifest["rows"] == len(keys), (manifest["rows"], len(keys))
    assert_no_partial(lake, source, month, part)
    return len(keys)


def assert_no_partial(lake: str, source: str, month: str, part: str | None = None) -> None:
    """Nothing half-written is visible: no staged temp files left where a reader looks, and the
    manifest, if any, describes the data file that is in place."""
    folder = Path(BlockLocation(lake=lake, source=source, month=month, part=part).folder)
    if not folder.exists():
        return
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert not leftovers, f"staged files left in {folder}: {leftovers}"
    if (folder / "data.parquet").exists():
        assert (folder / MANIFEST_FILE).exists(), f"{folder} has data without a manifest"
