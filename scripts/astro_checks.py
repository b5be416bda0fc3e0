"""Step 5 of ``scripts/astro_local.py``: the checks after the stack has landed its blocks. The same
blocks are landed in-process (local mode's run_block) from the same replay, every manifest in the
stack's lake must equal the in-process one, and the warehouse's tables are counted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# ---------------------------------------------------------------- 5. checks against the same blocks landed in-process


def landed_blocks(lake: Path) -> list[tuple[str, str, str | None]]:
    """(source, month, part) of every block with a manifest in ``lake``."""
    blocks = []
    for manifest in sorted(lake.rglob("_manifest.json")):
        parts = manifest.relative_to(lake).parts
        blocks.append((parts[0], parts[-2].removeprefix("month="), parts[1] if len(parts) == 4 else None))
    return blocks


def local_landing(server_url: str, lake: Path, blocks: list[tuple[str, str, str | None]]) -> dict:
    """The same blocks landed in-process (local mode's run_block) from the same replay: the
    reference the stack's lake must equal; returns per-block seconds."""
    from civic_pipelines.extract import run_block

    host, port = server_url.split("://", 1)[1].split(":")
    conn = json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"})
    seconds = {}
    saved = {
        key: os.environ.get(key) for key in ("AIRFLOW_CONN_CIVIC_SEATTLE_CRIME", "AIRFLOW_CONN_CIVIC_STREET_MANAGER")
    }
    os.environ.update({"AIRFLOW_CONN_CIVIC_SEATTLE_CRIME": conn, "AIRFLOW_CONN_CIVIC_STREET_MANAGER": conn})
    try:
        for source, month, part in blocks:
            started = time.monotonic()
            run_block(source, month, lake=str(lake), part=part)
            seconds[f"{source}/{part + '/' if part else ''}{month}"] = time.monotonic() - started
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return seconds


def compare_lakes(stack_lake: Path, local_lake: Path) -> dict[str, int]:
    """Every block's manifest in the stack's lake equals the in-process one (data sha256, rows,
    quarantine, watermark); returns rows per source."""
    rows: dict[str, int] = {}
    local = sorted(path.relative_to(local_lake) for path in local_lake.rglob("_manifest.json"))
    landed = sorted(path.relative_to(stack_lake) for path in stack_lake.rglob("_manifest.json"))
    if local != landed or not local:
        raise AssertionError(f"the stack landed {landed}, in-process {local}")
    for relative in local:
        ours, theirs = (json.loads((lake / relative).read_text()) for lake in (stack_lake, local_lake))
        for key in ("sha256", "rows", "quarantined", "watermark"):
            if ours.get(key) != theirs.get(key):
                raise AssertionError(
                    f"{relative}: {key} {ours.get(key)!r} in the stack's lake, {theirs.get(key)!r} in-process"
                )
        rows[relative.parts[0]] = rows.get(relative.parts[0], 0) + ours["rows"]
    return rows


def warehouse_counts(warehouse: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            row[0]
            for row in con.sql(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        ]
        return {table: con.execute(f'select count(*) from "{table}"').fetchone()[0] for table in tables}
