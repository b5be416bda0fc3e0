"""What a source declares about itself: its identity, schedule and capabilities.

The runner (``civic_pipelines.extract``), the planner and the DAG factory read a source's
:class:`Capabilities` from its spec; they never look at the source's functions to guess them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capabilities:
    """What a source does beyond "one month, one table, one request walk"; every flag defaults to no.

    ``configured_parts``: the parts (e.g. MDS providers) are configuration, listed by the source's
    ``parts()``; fixed parts are ``SourceSpec.parts`` instead.
    ``streamed``: the source writes a block batch by batch (``stream_block`` with a writer) instead
    of returning it whole (``extract_block``); memory stays bounded on a 1 GB archive.
    ``several_tables``: one block holds more tables than ``data`` (``BlockData.tables``, landed as
    ``<name>.parquet`` beside ``data.parquet``).
    ``incomplete_hours``: a block can land incomplete (hours not published yet) and is completed by
    later runs; the trigger form offers ``incomplete_only``.
    ``postgres_sink``: the source's ``POSTGRES_TABLES`` mirror its blocks into PostgreSQL.
    """

    configured_parts: bool = False
    streamed: bool = False
    several_tables: bool = False
    incomplete_hours: bool = False
    postgres_sink: bool = False


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    name: str
    title: str
    publisher: str
    first_month: str
    cron: str = "0 0 1 * *"  # publication cadence; the DAG's data intervals follow it
    cadence: str = "monthly"
    conn_id: str = ""  # empty: civic_<name>
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
    capabilities: Capabilities = field(default_factory=Capabilities)
    # The deployment variables (Airflow Variables) a block reads; docker mode forwards them to the
    # extractor container, which has no Airflow to ask.
    variables: tuple[str, ...] = ()
    # The connection a part's block reads beside ``conn_id`` ("civic_mds_{part}": each MDS provider
    # has its own); docker mode forwards it too.
    part_conn_id: str | None = None

    def __post_init__(self) -> None:
        if not self.conn_id:
            object.__setattr__(self, "conn_id", f"civic_{self.name}")
        if self.parts and self.capabilities.configured_parts:
            raise ValueError(
                f"{self.name}: parts are either fixed (parts) or configuration (configured_parts), not both"
            )
        if self.part_conn_id is not None and "{part}" not in self.part_conn_id:
            raise ValueError(f"{self.name}: part_conn_id needs a {{part}} placeholder, not {self.part_conn_id!r}")

    @property
    def pool(self) -> str:
        return f"civic_{self.name}_api"

    @property
    def has_parts(self) -> bool:
        """Each block is one (part, month): fixed parts or configured ones."""
        return bool(self.parts) or self.capabilities.configured_parts

    def conn_ids(self, part: str | None = None) -> list[str]:
        """Every connection one block reads: the source's own, then its part's (when it has one)."""
        ids = [self.conn_id]
        if part is not None and self.part_conn_id:
            ids.append(self.part_conn_id.format(part=part))
        return list(dict.fromkeys(ids))
