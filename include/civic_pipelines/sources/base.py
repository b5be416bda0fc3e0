"""What every source declares, and the shape of what its extractor returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the DAG files import this module, and parsing them needs no pyarrow
    import pyarrow as pa


@dataclass(frozen=True)
class SourceSpec:
    name: str
    title: str
    publisher: str
    cron: str  # publication cadence; the DAG's data intervals follow it
    cadence: str
    first_month: str
    conn_id: str
    default_base_url: str
    natural_key: str
    description: str
    tags: tuple[str, ...] = ()
    max_blocks_per_run: int = 120  # ten years of months: wider backfills are split into several runs
    pool_slots: int = 2  # parallel blocks against the API at once
    dbt_tag: str | None = None
    # A source that publishes several tables per month (Street Manager's permit, activity and
    # section_58 archives) names them here: each (part, month) is its own block, in its own folder.
    parts: tuple[str, ...] = ()
    # The trigger-form param (an array) that picks parts for a run, e.g. "providers" for MDS.
    parts_param: str | None = None

    @property
    def pool(self) -> str:
        return f"civic_{self.name}_api"


@dataclass
class BlockData:
    """One block's extracted content, ready for the lake."""

    data: pa.Table
    quarantine: pa.Table | None
    stats: dict = field(default_factory=dict)  # source-specific manifest fields (drift, duplicates, ...)
    # More tables decoded from the same download (SRWR's record types), landed as <name>.parquet
    # beside data.parquet in the same atomic commit.
    tables: dict[str, pa.Table] = field(default_factory=dict)


class NotPublished(Exception):
    """The block's data is not published yet (e.g. a month's archive appears on the 1st of the
    next month): the block is skipped with this reason, not failed."""


class SchemaDriftError(RuntimeError):
    """A required field is gone from the source: the block fails rather than land wrong data."""


class EmptyAnswerError(RuntimeError):
    """The source answered no rows for a block that was landed with rows: the landing is kept
    (a month does not lose every row in one edit; an empty answer is a fault until proven
    otherwise). ``force`` lands the empty block."""


# The archive sources' name for it (they check inside their streamed writers, before extract.py sees the block).
BlockEmptied = EmptyAnswerError


def refuse_emptying(previous: dict | None, rows: int, force: bool, what: str) -> None:
    """Raise :class:`BlockEmptied` when ``rows`` is 0, the previous landing had rows and the run
    is not forced; ``what`` says what was read (e.g. "the permit archive for 2024-03 holds no events")."""
    landed = (previous or {}).get("rows") or 0
    if rows == 0 and landed > 0 and not force:
        raise BlockEmptied(f"{what}, but {landed} rows were landed at {previous.get('landed_at')}: refusing to "
                           "replace them with an empty block (re-run with force to accept an empty month)")
