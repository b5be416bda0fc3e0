"""Extract and land one block: the function behind ``civic extract`` and the Airflow task.

The same code runs in-process (local mode) and in the extractor container (docker mode); it
returns the block manifest, which the task pushes as its XCom.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pyarrow as pa

from civic_pipelines import connections, settings, sources
from civic_pipelines.block_lock import block_lock
from civic_pipelines.core import EmptyAnswerError, NotPublished
from civic_pipelines.http import make_session
from civic_pipelines.lake import (
    BlockLocation,
    BlockWriter,
    content_sha256_all,
    read_manifest,
    remove_stale_temps,
    rows_changed,
    rows_changed_files,
    write_block,
    write_manifest,
)
from civic_pipelines.months import parse_month

log = logging.getLogger(__name__)

# Where no block lock exists (object-store lakes), temporary files this old are a dead writer's.
STALE_TEMP_SECONDS = 6 * 3600


def _landed_empty(previous: dict | None) -> bool:
    """The previous landing holds nothing at all (no row, no quarantined row, no table rows)."""
    return (
        bool(previous)
        and previous.get("rows") == 0
        and not previous.get("quarantined")
        and not any((previous.get("tables") or {}).values())
    )


def _is_empty(block) -> bool:
    return (
        block.data.num_rows == 0
        and (block.quarantine is None or block.quarantine.num_rows == 0)
        and all(table.num_rows == 0 for table in block.tables.values())
    )


def run_block(
    source: str,
    month: str,
    lake: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    part: str | None = None,
) -> dict:
    started = time.monotonic()
    module = sources.get(source)
    spec = module.SPEC
    parse_month(month)
    known_parts = sources.parts(source)
    if known_parts and part not in known_parts:
        raise ValueError(f"{source} has parts {', '.join(known_parts)}: name one (--part), not {part!r}")
    if not known_parts and part is not None:
        raise ValueError(f"{source} has no parts; drop --part {part}")
    lake = lake or settings.lake_url()
    location = BlockLocation(lake=lake, source=source, month=month, part=part)
    manifest = {"source": source, "month": month, "lake": lake, "skipped": False, "reason": None}
    if part is not None:
        manifest["part"] = part

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

    # One writer per block (a scheduled run and a manual trigger of the same month): the second
    # waits, then finds the first one's manifest and skips; see civic_pipelines.block_lock.
    with block_lock(lake, source, month, part) as lock:
        stale = remove_stale_temps(location, older_than=None if lock.locked else STALE_TEMP_SECONDS)
        if stale:
            log.warning(
                "%s %s: removed %d temporary file(s) left by a run that died mid-write: %s",
                source,
                month,
                len(stale),
                ", ".join(stale),
            )
        result = _run_locked(module, spec, source, month, location, manifest, force, part, started)
    if stale:
        result["stale_temps_removed"] = len(stale)
    if lock.waited_seconds is not None:
        result["lock_waited_seconds"] = lock.waited_seconds
    return result


def _run_locked(module, spec, source, month, location, manifest, force, part, started) -> dict:
    connection = connections.resolve(spec.conn_id, spec.default_base_url)
    session = make_session(module.auth_headers(connection), conn_id=connection.conn_id)
    capabilities = spec.capabilities
    with session:
        previous = read_manifest(location)
        try:
            probed = module.probe(session, connection, month=month, part=part, previous=previous)
        except NotPublished as reason:
            log.info("%s %s: not published yet (%s): skipped", source, month, reason)
            return {
                **manifest,
                "skipped": True,
                "reason": f"not published yet: {reason}",
                "seconds": round(time.monotonic() - started, 3),
            }
        # An empty landing is asked again whatever the watermark (one query): a month that came
        # back empty because the source was late or glitched fills in on the next run.
        recheck = _landed_empty(previous) and not capabilities.streamed  # not a 1 GB archive each run
        if previous and not force and previous.get("watermark") == probed["watermark"] and not recheck:
            log.info(
                "%s %s unchanged since %s (watermark %s): skipped",
                source,
                month,
                previous.get("landed_at"),
                probed["watermark"],
            )
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
        landed_at = datetime.now(UTC)
        # Every source is told the whole block: a source that completes a block over several runs
        # (MDS hours not yet published) reads what the previous landing holds; one that guards a
        # landing (refusing to empty it) is told whether the run is forced.
        block_kwargs = {"part": part, "previous": previous, "location": location, "force": force}
        if capabilities.streamed:
            return _run_streamed(
                module,
                session,
                connection,
                location,
                month,
                probed,
                landed_at,
                previous,
                force,
                manifest,
                started,
                block_kwargs,
            )
        block = module.extract_block(session, connection, month, probed, landed_at=landed_at, **block_kwargs)
    if block.tables and not capabilities.several_tables:
        raise TypeError(f"{source} returned tables {sorted(block.tables)} but does not declare several_tables")

    quarantined = block.quarantine.num_rows if block.quarantine is not None else 0
    if _is_empty(block) and previous and previous.get("rows") and not force:
        raise EmptyAnswerError(
            f"{source} {month}{f' ({part})' if part else ''}: the source answered no rows, but the landed block "
            f"holds {previous['rows']} (landed {previous.get('landed_at')}): kept it; if the month really is empty "
            "now, run the block with force"
        )
    sha = content_sha256_all(block.data, block.tables)
    # Unchanged means the same rows and the same rejects: a source that fixed its bad records
    # re-lands, so the quarantine does not keep rejects the source no longer has.
    if previous and not force and previous.get("sha256") == sha and (previous.get("quarantined") or 0) == quarantined:
        return _unchanged(location, previous, probed, landed_at, manifest, sha, started)
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
    if block.tables:
        manifest["tables"] = {name: table.num_rows for name, table in sorted(block.tables.items())}
    manifest["seconds"] = round(time.monotonic() - started, 3)
    manifest = write_block(location, block.data, block.quarantine, manifest, tables=block.tables)
    log.info("%s %s landed: %s rows, %s quarantined", source, month, manifest["rows"], quarantined)
    del block
    # The block was held whole in Arrow's memory pool, which keeps freed pages for reuse; give
    # them back, so whatever this process does next (another block, a DuckDB load) starts low.
    pa.default_memory_pool().release_unused()
    return manifest


def _unchanged(location, previous, probed, landed_at, manifest, sha, started) -> dict:
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


def _run_streamed(
    module, session, connection, location, month, probed, landed_at, previous, force, manifest, started, block_kwargs
) -> dict:
    """A block the source writes batch by batch (``stream_block``): memory stays bounded by the
    batch size, and the block is still replaced whole, or not at all."""
    with BlockWriter(location) as writer:
        stats = module.stream_block(
            session, connection, month, probed, landed_at=landed_at, writer=writer, **block_kwargs
        )
        sha = writer.sha256
        if (
            previous
            and not force
            and previous.get("sha256") == sha
            and (previous.get("quarantined") or 0) == writer.quarantined
        ):
            writer.abort()
            return _unchanged(location, previous, probed, landed_at, manifest, sha, started)
        writer.finish()
        changed = rows_changed_files(location, writer.temp_path(), module.SPEC.natural_key) if previous else None
        manifest.update(
            {
                "rows": writer.rows,
                "quarantined": writer.quarantined,
                "sha256": sha,
                "watermark": probed["watermark"],
                "landed_at": landed_at.isoformat(),
                "forced": force,
                "changed_since_previous": previous is None or previous.get("sha256") != sha,
                "rows_changed": changed,
                **stats,
            }
        )
        manifest["seconds"] = round(time.monotonic() - started, 3)
        manifest = writer.commit(manifest)
    log.info(
        "%s %s landed (streamed): %s rows, %s quarantined",
        location.source,
        month,
        manifest["rows"],
        manifest["quarantined"],
    )
    return manifest
