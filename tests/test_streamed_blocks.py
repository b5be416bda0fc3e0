"""The extractor's framework for big and multi-table sources: parts, streamed writes, extra tables,
and months not yet published, with a stand-in source so only the framework is under test."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stand_in_source import register, stand_in_spec

from civic_pipelines import extract
from civic_pipelines.lake import BlockLocation, BlockWriter, content_sha256
from civic_pipelines.sources.base import BlockData, Capabilities, NotPublished, SourceSpec

SPEC = stand_in_spec("stand_in", parts=("big", "small"), capabilities=Capabilities(streamed=True))


def batches(n: int, size: int, version: int = 0):
    landed = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        yield pa.record_batch(
            {
                "id": pa.array(ids, pa.int64()),
                "value": pa.array([i * 2 + version for i in ids]),
                "_landed_at": pa.array([landed] * len(ids), pa.timestamp("us", tz="UTC")),
            }
        )


@pytest.fixture
def stand_in(monkeypatch):
    state = {"version": 0, "published": True, "fail_after": None, "calls": []}

    def probe(session, connection, month, part, previous=None):
        state["calls"].append(("probe", month, part))
        if not state["published"]:
            raise NotPublished(f"{part} {month} appears on the 1st of the next month")
        return {"watermark": f"w{state['version']}{state.get('watermark_suffix', '')}"}

    def stream_block(
        session, connection, month, probed, landed_at, writer, part, previous=None, location=None, force=False
    ):
        for i, batch in enumerate(batches(150_000, 7_001, state["version"])):
            if state["fail_after"] is not None and i == state["fail_after"]:
                raise RuntimeError("archive truncated")
            writer.write(batch)
        writer.write_quarantine(pa.table({"raw": ["{bad"], "_reason": ["not JSON"]}))
        return {"events": 150_000, "part_seen": part}

    module = types.SimpleNamespace(SPEC=SPEC, auth_headers=lambda c: {}, probe=probe, stream_block=stream_block)
    register(monkeypatch, module)
    return state


def test_a_streamed_block_lands_whole_in_its_part_folder_and_skips_when_unchanged(stand_in, lake):
    manifest = extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    path = Path(lake) / "stand_in" / "big" / "month=2024-03"
    table = pq.read_table(path / "data.parquet")
    assert manifest["rows"] == table.num_rows == 150_000 and manifest["part"] == "big"
    # 7,001-row batches are gathered into full row groups, not one group per batch
    assert pq.ParquetFile(path / "data.parquet").metadata.num_row_groups == 2
    assert manifest["quarantined"] == 1 and pq.read_table(path / "quarantine.parquet").num_rows == 1
    assert manifest["events"] == 150_000 and manifest["part_seen"] == "big"
    # The streamed checksum is the content checksum of the same rows, however they were batched.
    assert manifest["sha256"] == content_sha256(table.combine_chunks())
    assert sorted(p.name for p in path.iterdir()) == ["_manifest.json", "data.parquet", "quarantine.parquet"]
    again = extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    assert again["skipped"] and "watermark" in again["reason"]
    # A moved watermark with the same content keeps the landing (checked on the streamed checksum).
    stand_in["watermark_suffix"] = "-moved"
    moved = extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    assert moved["skipped"] and moved["reason"].startswith("content unchanged")
    assert sorted(p.name for p in path.iterdir()) == ["_manifest.json", "data.parquet", "quarantine.parquet"]


def test_a_changed_streamed_block_reports_changed_rows(stand_in, lake):
    extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    stand_in["version"] = 1
    manifest = extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    assert not manifest["skipped"]
    assert manifest["rows_changed"] == {"added": 0, "removed": 0, "changed": 150_000}


def test_a_failing_stream_leaves_the_previous_landing_and_no_temporary_files(stand_in, lake):
    extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    path = Path(lake) / "stand_in" / "big" / "month=2024-03"
    before = pq.read_table(path / "data.parquet")
    stand_in["version"], stand_in["fail_after"] = 1, 5
    with pytest.raises(RuntimeError, match="truncated"):
        extract.run_block("stand_in", "2024-03", lake=lake, part="big")
    assert pq.read_table(path / "data.parquet").equals(before)
    assert sorted(p.name for p in path.iterdir()) == ["_manifest.json", "data.parquet", "quarantine.parquet"]


def test_not_published_is_a_skip_with_the_reason(stand_in, lake):
    stand_in["published"] = False
    manifest = extract.run_block("stand_in", "2026-10", lake=lake, part="small")
    assert manifest["skipped"] and manifest["reason"].startswith("not published yet: small 2026-10")
    assert not (Path(lake) / "stand_in").exists()


def test_parts_are_required_and_checked(stand_in, lake):
    with pytest.raises(ValueError, match="name one"):
        extract.run_block("stand_in", "2024-03", lake=lake)
    with pytest.raises(ValueError, match="name one"):
        extract.run_block("stand_in", "2024-03", lake=lake, part="medium")
    with pytest.raises(ValueError, match="has no parts"):
        extract.run_block("seattle_crime", "2024-03", lake=lake, part="big", dry_run=True)


def test_extra_tables_land_beside_the_data_in_one_commit(monkeypatch, lake):
    spec = SourceSpec(
        **{**SPEC.__dict__, "name": "multi", "parts": (), "capabilities": Capabilities(several_tables=True)}
    )
    block = BlockData(
        data=pa.table({"id": [1, 2]}),
        quarantine=None,
        stats={},
        tables={"phase": pa.table({"id": [1], "phase": ["A"]}), "district": pa.table({"code": ["06"]})},
    )
    module = types.SimpleNamespace(
        SPEC=spec,
        auth_headers=lambda c: {},
        probe=lambda s, c, **block: {"watermark": "1"},
        extract_block=lambda s, c, m, p, landed_at, **kwargs: block,
    )
    register(monkeypatch, module)
    manifest = extract.run_block("multi", "2024-01", lake=lake)
    folder = Path(lake) / "multi" / "month=2024-01"
    assert manifest["tables"] == {"district": 1, "phase": 1}
    assert pq.read_table(folder / "phase.parquet").to_pylist() == [{"id": 1, "phase": "A"}]
    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        "data.parquet",
        "district.parquet",
        "phase.parquet",
    ]
    # The same content again (a moved watermark) is recognised across all tables.
    module.probe = lambda s, c, **block: {"watermark": "2"}
    assert extract.run_block("multi", "2024-01", lake=lake)["reason"].startswith("content unchanged")


def test_block_writer_abort_on_error_inside_with(tmp_path):
    location = BlockLocation(lake=str(tmp_path), source="s", month="2024-01", part="p")
    with pytest.raises(ZeroDivisionError):
        with BlockWriter(location) as writer:
            writer.write(next(batches(10, 10)))
            1 / 0  # noqa: B018 - the failure the writer must survive
    assert list((tmp_path / "s" / "p" / "month=2024-01").iterdir()) == []
