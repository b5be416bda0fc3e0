"""The overview's data-health cards: one per registered source, from the lake's block manifests
(months landed, last block time and status, rows, quarantined rows, schema drift) and dbt's test
results (failed and warned tests on the source's models), with freshness against the cadence.

Manifests are read with pyarrow's file systems, so an ``s3://`` lake works like a folder; each
file is parsed again only when its modification time changes.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

from civic_pipelines.months import format_month, parse_month, previous_month

log = logging.getLogger(__name__)

# Months between a month's end and the block that can be expected for it, per cadence: a monthly
# source publishes month M during M+1, so on any day of M+1 the newest complete month is M.
CADENCE_LAG_MONTHS = {"monthly": 1}


@dataclass
class Block:
    month: str
    part: str | None
    rows: int
    quarantined: int
    landed_at: str | None
    checked_at: str | None
    complete: bool
    drift: bool


@dataclass
class SourceHealth:
    source: str
    title: str
    page: str | None
    cadence: str
    months: list[str] = field(default_factory=list)
    parts: dict[str, int] = field(default_factory=dict)  # part -> months landed
    rows: int = 0
    quarantined: int = 0
    last_block: str | None = None  # "2024-03" or "permit 2024-03"
    last_time: str | None = None  # ISO instant of the last landing or check
    last_status: str = "no data"
    incomplete_blocks: int = 0
    drift_blocks: int = 0
    tests_total: int = 0
    tests_failed: list[dict] = field(default_factory=list)
    tests_warned: list[dict] = field(default_factory=list)
    expected_month: str | None = None
    months_behind: int | None = None
    freshness: str = "no data"  # fresh / behind / no data
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _months_between(first: str, last: str) -> int:
    a, b = parse_month(first), parse_month(last)
    return (b.year - a.year) * 12 + (b.month - a.month)


def expected_month(cadence: str, today: date | None = None) -> str:
    """The newest month a source of this cadence should have landed by today."""
    month = (today or datetime.now(timezone.utc).date()).replace(day=1)
    for _ in range(CADENCE_LAG_MONTHS.get(cadence, 1)):
        month = previous_month(month)
    return format_month(month)


class LakeManifests:
    """Reads ``<lake>/<source>/[<part>/]month=YYYY-MM/_manifest.json`` files, cached by mtime."""

    def __init__(self, lake: str):
        self.lake = lake
        self._cache: dict[str, tuple[object, dict]] = {}
        self._lock = threading.Lock()

    def _fs(self):
        from pyarrow import fs as pafs  # here, not at import: the plugin module stays light

        if "://" in self.lake:
            filesystem, root = pafs.FileSystem.from_uri(self.lake)
            return filesystem, root.rstrip("/")
        return pafs.LocalFileSystem(), self.lake.rstrip("/")

    def blocks(self, source: str) -> list[Block]:
        from pyarrow import fs as pafs

        filesystem, root = self._fs()
        selector = pafs.FileSelector(f"{root}/{source}", allow_not_found=True, recursive=True)
        blocks = []
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or info.base_name != "_manifest.json":
                continue
            folders = info.path[len(root) + 1:].split("/")[:-1]  # source, [part], month=YYYY-MM
            if not folders or not folders[-1].startswith("month="):
                continue
            manifest = self._read(filesystem, info)
            if manifest is None:
                continue
            part = "/".join(folders[1:-1]) or None
            drift = manifest.get("drift") or {}
            blocks.append(Block(
                month=folders[-1].split("=", 1)[1],
                part=part,
                rows=int(manifest.get("rows") or 0),
                quarantined=int(manifest.get("quarantined") or 0),
                landed_at=manifest.get("landed_at"),
                checked_at=manifest.get("checked_at"),
                complete=manifest.get("complete", True) is not False,
                drift=bool(drift.get("missing_fields") or drift.get("new_fields") or drift.get("type_changes")
                            or drift.get("changed_types")),  # Street Manager says type_changes, SODA/ArcGIS changed_types
            ))
        return sorted(blocks, key=lambda b: (b.month, b.part or ""))

    def _read(self, filesystem, info) -> dict | None:
        key = (info.mtime_ns, info.size)
        with self._lock:
            cached = self._cache.get(info.path)
            if cached and cached[0] == key:
                return cached[1]
        try:
            with filesystem.open_input_stream(info.path) as handle:
                manifest = json.loads(handle.read())
        except (OSError, ValueError) as error:
            log.warning("unreadable block manifest %s: %s", info.path, error)
            return None
        with self._lock:
            self._cache[info.path] = (key, manifest)
        return manifest


SOURCE_LOAD_FAILED = "The source's module failed to load (the error is in the server's log)."


@dataclass(frozen=True)
class RegisteredSource:
    name: str
    title: str
    cadence: str
    dbt_tag: str
    error: str | None = None


def registry_sources() -> list[RegisteredSource]:
    """Every registered source; a source whose module fails to load still gets a card (with the
    error) rather than breaking the page."""
    from civic_pipelines import sources

    rows = []
    for name in sources.names():
        try:
            spec = sources.spec(name)
            rows.append(RegisteredSource(name, spec.title, spec.cadence, spec.dbt_tag or name))
        except Exception:  # noqa: BLE001 - one broken source must not hide the others
            # The card says that it failed; the error text (paths, settings) goes to the log only:
            # a viewer of the dashboard cannot act on it, the operator reading the log can.
            log.exception("source %s failed to load", name)
            rows.append(RegisteredSource(name, name, "monthly", name, SOURCE_LOAD_FAILED))
    return rows


def source_health(source: RegisteredSource, page: str | None, all_blocks: list[Block], tests: dict,
                  start: str | None = None, end: str | None = None, today: date | None = None) -> SourceHealth:
    """The card: counts over the blocks of the month range (``start``..``end``, YYYY-MM, either
    open); the last block and freshness over every block."""
    health = SourceHealth(source=source.name, title=source.title, page=page, cadence=source.cadence,
                          error=source.error)
    cadence, tag = source.cadence, source.dbt_tag
    health.expected_month = expected_month(cadence, today)
    blocks = [b for b in all_blocks if (not start or b.month >= start) and (not end or b.month <= end)]
    if all_blocks:
        last = max(all_blocks, key=lambda b: max(b.landed_at or "", b.checked_at or ""))
        health.last_block = f"{last.part} {last.month}" if last.part else last.month
        health.last_time = max(last.landed_at or "", last.checked_at or "") or None
        if not last.complete:
            health.last_status = "landed, incomplete (a later run completes it)"
        elif last.checked_at and last.checked_at > (last.landed_at or ""):
            health.last_status = "checked, unchanged since landing"
        else:
            health.last_status = "landed"
        newest = max(b.month for b in all_blocks)
        behind = _months_between(newest, health.expected_month)
        health.months_behind = max(behind, 0)
        health.freshness = "fresh" if behind <= 0 else "behind"
    if blocks:
        health.months = sorted({b.month for b in blocks})
        parts: dict[str, set] = {}
        for block in blocks:
            if block.part:
                parts.setdefault(block.part, set()).add(block.month)
        health.parts = {part: len(months) for part, months in sorted(parts.items())}
        health.rows = sum(b.rows for b in blocks)
        health.quarantined = sum(b.quarantined for b in blocks)
        health.incomplete_blocks = sum(not b.complete for b in blocks)
        health.drift_blocks = sum(b.drift for b in blocks)
    for result in tests.values():
        if tag not in result.tags:
            continue
        health.tests_total += 1
        entry = {"test": result.name, "failures": result.failures, "message": result.message,
                 "models": list(result.models)}
        if result.status in ("fail", "error"):
            health.tests_failed.append(entry)
        elif result.status == "warn":
            health.tests_warned.append(entry)
    return health
