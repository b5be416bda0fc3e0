"""The overview's data-health cards: one per registered source, from the lake's block manifests
(months landed, last block time and status, rows, quarantined rows, schema drift), dbt's test
results (failed and warned tests on the source's models) and dbt's source freshness (the
``source_freshness`` task's ``<source>.json``: pass/warn/error and age per lake table), with
freshness against the cadence.

Manifests are read with pyarrow's file systems, so an ``s3://`` lake works like a folder; each
file is parsed again only when its modification time changes.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

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
    tests_passed: int = 0
    tests_failed: list[dict] = field(default_factory=list)
    tests_warned: list[dict] = field(default_factory=list)
    # Where the test results come from: "dag" (the results the source's DAG kept after its dbt
    # tasks, dbt_results), "run_results" (a run_results.json of a dbt run outside the DAGs), or None.
    tests_from: str | None = None
    tests_at: str | None = None  # when the newest of them ran
    expected_month: str | None = None
    months_behind: int | None = None
    freshness: str = "no data"  # fresh / behind / no data
    # dbt source freshness, per table: {table, status, age, max_loaded_at, warn_after, error_after};
    # dbt_freshness_status is the worst of them ("not run" when there is no result yet).
    dbt_freshness: list[dict] = field(default_factory=list)
    dbt_freshness_status: str = "not run"
    dbt_freshness_at: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _months_between(first: str, last: str) -> int:
    a, b = parse_month(first), parse_month(last)
    return (b.year - a.year) * 12 + (b.month - a.month)


def expected_month(cadence: str, today: date | None = None) -> str:
    """The newest month a source of this cadence should have landed by today."""
    month = (today or datetime.now(UTC).date()).replace(day=1)
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
            folders = info.path[len(root) + 1 :].split("/")[:-1]  # source, [part], month=YYYY-MM
            if not folders or not folders[-1].startswith("month="):
                continue
            manifest = self._read(filesystem, info)
            if manifest is None:
                continue
            part = "/".join(folders[1:-1]) or None
            drift = manifest.get("drift") or {}
            blocks.append(
                Block(
                    month=folders[-1].split("=", 1)[1],
                    part=part,
                    rows=int(manifest.get("rows") or 0),
                    quarantined=int(manifest.get("quarantined") or 0),
                    landed_at=manifest.get("landed_at"),
                    checked_at=manifest.get("checked_at"),
                    complete=manifest.get("complete", True) is not False,
                    drift=bool(
                        drift.get("missing_fields")
                        or drift.get("new_fields")
                        or drift.get("type_changes")
                        or drift.get("changed_types")
                    ),  # Street Manager says type_changes, SODA/ArcGIS changed_types
                )
            )
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


# Worst first: the card shows the worst table's status.
FRESHNESS_ORDER = ("runtime error", "error", "warn", "pass")


def human_age(seconds: float | None) -> str | None:
    """4320081 -> "50 days"; 5400 -> "1.5 hours"."""
    if seconds is None:
        return None
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            value = round(seconds / size, 0 if seconds >= 10 * size else 1)
            text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{text} {unit}{'' if text == '1' else 's'}"
    return f"{seconds:.0f} seconds"


def read_source_freshness(folder, source: str) -> dict | None:
    """The latest ``dbt source freshness`` result the DAG's ``source_freshness`` task kept for the
    source (``<folder>/<source>.json``), or None."""
    from civic_pipelines.dbt_results import read_kept

    return read_kept(folder, source, "source freshness")


def apply_freshness(health: SourceHealth, result: dict | None) -> None:
    if not result:
        return
    tables = []
    for entry in result.get("results") or []:
        tables.append(
            {
                "table": entry.get("table"),
                "status": entry.get("status"),
                "age": human_age(entry.get("age_seconds")),
                "max_loaded_at": entry.get("max_loaded_at"),
                "warn_after": entry.get("warn_after"),
                "error_after": entry.get("error_after"),
            }
        )
        # dbt's error text (the table's lake path) stays in the file and the task log: a viewer gets no raw error.
    health.dbt_freshness = tables
    health.dbt_freshness_at = result.get("generated_at")
    statuses = [t["status"] for t in tables]
    health.dbt_freshness_status = next((s for s in FRESHNESS_ORDER if s in statuses), "not run")


def _count_test(health: SourceHealth, entry: dict, status: str) -> None:
    health.tests_total += 1
    if status in ("fail", "error"):
        health.tests_failed.append(entry)
    elif status == "warn":
        health.tests_warned.append(entry)
    elif status == "pass":
        health.tests_passed += 1


def apply_dag_test_results(health: SourceHealth, dbt_results: dict) -> None:
    """The tests the source's DAG ran (its kept dbt results): the newest result of each test."""
    newest = None
    for uid, node in sorted((dbt_results.get("nodes") or {}).items()):
        if node.get("resource_type") != "test":
            continue
        # dbt's error text can carry paths and SQL: the card shows the test, its models and the
        # failing row count; the message stays in the file and the task log.
        _count_test(
            health,
            {
                "test": node.get("name") or uid,
                "failures": node.get("failures"),
                "models": list(node.get("models") or []),
            },
            str(node.get("status")),
        )
        newest = max(newest or "", node.get("generated_at") or "") or None
    health.tests_from = "dag"
    health.tests_at = newest


def source_health(
    source: RegisteredSource,
    page: str | None,
    all_blocks: list[Block],
    tests: dict,
    start: str | None = None,
    end: str | None = None,
    today: date | None = None,
    freshness: dict | None = None,
    dbt_results: dict | None = None,
) -> SourceHealth:
    """The card: counts over the blocks of the month range (``start``..``end``, YYYY-MM, either
    open); the last block and freshness over every block; ``freshness`` is the source's
    ``read_source_freshness`` result; ``dbt_results`` the tests and models the source's DAG ran
    (``civic_pipelines.dbt_results.read_results``), which replace ``tests`` (run_results.json files
    filtered by the source's tag) when they hold any test."""
    health = SourceHealth(source=source.name, title=source.title, page=page, cadence=source.cadence, error=source.error)
    apply_freshness(health, freshness)
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
    if dbt_results and any(e.get("resource_type") == "test" for e in (dbt_results.get("nodes") or {}).values()):
        apply_dag_test_results(health, dbt_results)
    else:
        for result in tests.values():
            if tag not in result.tags:
                continue
            _count_test(
                health,
                {
                    "test": result.name,
                    "failures": result.failures,
                    "message": result.message,
                    "models": list(result.models),
                },
                result.status,
            )
            health.tests_from = "run_results"
    return health
