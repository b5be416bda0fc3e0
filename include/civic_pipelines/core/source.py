"""The contract between the runner and a source: the calls it makes and what they return.

A source is a module or an object (a generic adapter configured by a dataset file) offering
``SPEC`` and the calls of :class:`Source`, plus ``extract_block`` (:class:`BlockSource`) or, when
``SPEC.capabilities.streamed``, ``stream_block`` (:class:`StreamedSource`). The runner passes
every keyword below on every call; a source uses those its capabilities need and ignores the rest,
so the runner never inspects a source to learn what it takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: parsing the DAG files imports this module, and pyarrow costs seconds
    import pyarrow as pa

from civic_pipelines.core.spec import SourceSpec


@dataclass
class BlockData:
    """One block's extracted content, ready for the lake."""

    data: pa.Table
    quarantine: pa.Table | None
    stats: dict = field(default_factory=dict)  # source-specific manifest fields (drift, duplicates, ...)
    # More tables decoded from the same download (SRWR's record types), landed as <name>.parquet
    # beside data.parquet in the same atomic commit; only for a source declaring several_tables.
    tables: dict[str, pa.Table] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """What every source offers the runner.

    ``probe`` answers the block's watermark (``{"watermark": ...}`` plus whatever the extraction
    wants to reuse) cheaply, or raises :class:`NotPublished`. ``month`` is None only when a caller
    asks for the dataset's watermark as a whole; ``part`` is None for a source without parts;
    ``previous`` is the landed block's manifest (None when never landed).
    """

    SPEC: SourceSpec

    def auth_headers(self, connection) -> dict: ...

    def probe(
        self, session, connection, month: str | None = None, part: str | None = None, previous: dict | None = None
    ) -> dict: ...


@runtime_checkable
class BlockSource(Source, Protocol):
    """A source returning a whole block. ``previous`` and ``force`` let a source refuse to empty a
    landed block (:func:`refuse_emptying`); ``location`` is where the block lands."""

    def extract_block(
        self,
        session,
        connection,
        month: str,
        probed: dict,
        landed_at: datetime | None = None,
        *,
        part: str | None = None,
        previous: dict | None = None,
        location: Any = None,
        force: bool = False,
    ) -> BlockData: ...


@runtime_checkable
class StreamedSource(Source, Protocol):
    """A source writing its block batch by batch into ``writer`` (a ``lake.BlockWriter``); returns
    the manifest's source-specific fields."""

    def stream_block(
        self,
        session,
        connection,
        month: str,
        probed: dict,
        landed_at: datetime,
        writer,
        *,
        part: str | None = None,
        previous: dict | None = None,
        location: Any = None,
        force: bool = False,
    ) -> dict: ...


class NotPublished(Exception):
    """The block's data is not published yet (e.g. a month's archive appears on the 1st of the
    next month): the block is skipped with this reason, not failed."""


class SchemaDriftError(RuntimeError):
    """A required field is gone from the source: the block fails rather than land wrong data."""


class EmptyAnswerError(RuntimeError):
    """The source answered no rows for a block that was landed with rows: the landing is kept
    (a month does not lose every row in one edit; an empty answer is a fault until proven
    otherwise). ``force`` lands the empty block. The runner raises it for a whole block; a
    streamed source raises it (through :func:`refuse_emptying`) inside its writer, before the
    runner sees the block."""


def refuse_emptying(previous: dict | None, rows: int, force: bool, what: str) -> None:
    """Raise :class:`EmptyAnswerError` when ``rows`` is 0, the previous landing had rows and the run
    is not forced; ``what`` says what was read (e.g. "the permit archive for 2024-03 holds no events")."""
    landed = (previous or {}).get("rows") or 0
    if rows == 0 and landed > 0 and not force:
        raise EmptyAnswerError(
            f"{what}, but {landed} rows were landed at {previous.get('landed_at')}: refusing to "
            "replace them with an empty block (re-run with force to accept an empty month)"
        )
