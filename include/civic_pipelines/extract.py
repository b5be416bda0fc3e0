"""Extract and land one block: the function behind ``civic extract`` and the Airflow task.

The same code runs in-process (local mode) and in the extractor container (docker mode); it
returns the block manifest, which the task pushes as its XCom.
"""

from __future__ import annotations

import inspect
import logging
import time
from datetime import datetime, timezone

from civic_pipelines import connections, settings, sources
from civic_pipelines.http import make_session
from civic_pipelines.lake import BlockLocation, content_sha256, read_manifest, rows_changed, write_block, write_manifest
from civic_pipelines.months import parse_month

log = logging.getLogger(__name__)


def _probe(source, session, connection, month: str) -> dict:
    """Sources whose watermark depends on the block (a layer or a file per year) take ``month``."""
    if "month" in inspect.signature(source.probe).parameters:
        return source.probe(session, connection, month=month)
    return source.probe(session, connection)


def run_block(source: str, month: str, lake: str | None = None, force: bool = False, dry_run: bool = False) -> dict:
    started = time.monotonic()
    module = sources.get(source)
    spec = module.SPEC
    parse_month(month)
    lake = lake or settings.lake_url()
    location = BlockLocation(lake=lake, source=source, month=month)
    manifest = {"source": source, "month": month, "lake": lake, "skipped": False, "reason": None}

    if dry_run:
        previous = read_manifest(location)
        return {
            **manifest,
            "skipped": True,
            "reason": "dry run: nothing fetched or written",
            "landed_before": bool(previous),
            "previous_watermark": previous.get("watermark") if previous else None,
            "seconds": round(time.monotonic() - started, 3),
        }

    connection = connections.resolve(spec.conn_id, spec.default_base_url)
    session = make_session(module.auth_headers(connection))
    with session:
        probed = _probe(module, session, connection, month)
        previous = read_manifest(location)
        if previous and not force and previous.get("watermark") == probed["watermark"]:
            log.info("%s %s unchanged since %s (watermark %s): skipped", source, month, previous.get("landed_at"), probed["watermark"])
            return {
                **manifest,
                "skipped": True,
                "reason": f"source unchanged since last landing (watermark {probed['watermark']})",
                "watermark": probed["watermark"],
                "rows": previous.get("rows"),
                "quarantined": previous.get("quarantined"),
                "sha256": previous.get("sha256"),
                "seconds": round(time.monotonic() - started, 3),
            }
        landed_at = datetime.now(timezone.utc)
        block = module.extract_block(session, connection, month, probed, landed_at=landed_at)

    quarantined = block.quarantine.num_rows if block.quarantine is not None else 0
    sha = content_sha256(block.data)
    if previous and not force and previous.get("sha256") == sha:
        # The source moved its watermark but this block's content is the same: keep the landed
        # data (dbt has nothing to redo) and record the new watermark so the next run skips early.
        write_manifest(location, {**previous, "watermark": probed["watermark"], "checked_at": landed_at.isoformat()})
        return {
            **manifest,
            "skipped": True,
            "reason": f"content unchanged (same sha256) although the watermark moved to {probed['watermark']}",
            "watermark": probed["watermark"],
            "rows": previous.get("rows"),
            "quarantined": previous.get("quarantined"),
            "sha256": sha,
            "seconds": round(time.monotonic() - started, 3),
        }
    manifest.update(
        {
            "rows": block.data.num_rows,
            "quarantined": quarantined,
            "sha256": sha,
            "watermark": probed["watermark"],
            "landed_at": landed_at.isoformat(),
            "forced": force,
            "changed_since_previous": previous is None or previous.get("sha256") != sha,
            "rows_changed": rows_changed(location, block.data, module.SPEC.natural_key) if previous else None,
            **block.stats,
        }
    )
    manifest["seconds"] = round(time.monotonic() - started, 3)
    manifest = write_block(location, block.data, block.quarantine, manifest)
    log.info("%s %s landed: %s rows, %s quarantined", source, month, manifest["rows"], quarantined)
    return manifest
