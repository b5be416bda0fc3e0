"""The PostgreSQL sink: mirror landed blocks into PostgreSQL tables, one transaction per block.

The Austin MDS project's second stage (its ``provider_sync_db.py``), done from the lake. A source
opts in by declaring ``postgres_sink`` among its spec's capabilities and giving a module-level
``POSTGRES_TABLES``, one entry per parquet file of its blocks
(``"data"`` is ``data.parquet``, ``"events"`` is ``events.parquet`` beside it)::

    POSTGRES_TABLES = {
        "data": {"table": "mds_trips", "key": ["provider", "trip_id"], "block_key": ["provider", "_block_month"]},
        "events": {"table": "mds_events", "key": ["provider", "event_id"], "block_key": ["provider", "_block_month"]},
    }

``key`` is the table's primary key. ``block_key`` names the columns that hold the block's part
(for a source with parts: MDS's provider) and its month, in that order (just the month column for
a source without parts): a block's rows in PostgreSQL are exactly the rows whose ``block_key``
equals (part, month). ``table`` may be ``schema.table``.

**Exactness.** After a sync of a block, each of its tables holds exactly the block's landed rows:
rows added or changed in the lake are upserted, rows gone from a re-landed block are deleted. The
delete is scoped by ``block_key``, so other blocks are never touched; a staged row outside the
block's identity fails the block (the scoped delete could not be exact otherwise), and so does a
key that appears twice.

**SQL, per block, in one transaction** (a failure anywhere - a value that will not cast, a
constraint, a lost connection - leaves PostgreSQL as it was, all of the block's tables together):

1. ``pg_advisory_xact_lock`` per target table, so two runs syncing one table queue;
2. ``CREATE TABLE IF NOT EXISTS`` typed from the parquet's Arrow schema (primary key ``key``,
   an index on ``block_key``); columns new in the lake are added with ``ALTER TABLE``;
3. a temporary staging table ``LIKE`` the target, ``ON COMMIT DROP``, filled by **one COPY**
   (``FORMAT csv``) that streams the parquet's record batches, written as CSV by Arrow's C++
   writer (nested values as JSON text into ``jsonb``, binary as ``bytea`` hex);
4. ``DELETE`` the block's rows whose key is no longer staged;
5. ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``, touching only rows whose content
   changed (``IS DISTINCT FROM``), so an unchanged re-sync writes nothing;
6. the block's row in ``civic_sync_ledger``: the landing's fingerprint (the manifest's
   ``landed_at`` and ``sha256``) and the row count.

Nothing is ever inserted row by row. **Unchanged blocks** (same fingerprint as the ledger's and
the same row count in the table) are skipped, so a run whose blocks were all skipped converges
for the price of one count per block; ``force`` re-syncs them anyway (and is the repair after
someone edits the tables by hand, which the row count does not always reveal).

**The connection** is the Airflow connection ``civic_postgres`` (conn type ``postgres``:
host, port, login, password, schema = the database, libpq options such as ``sslmode`` in the
extras), resolved like :mod:`civic_pipelines.connections`: ``AIRFLOW_CONN_CIVIC_POSTGRES`` (JSON
or URI) first, then Airflow. Its password is registered with Airflow's secret masker, never
logged, never returned, and scrubbed from any error text.

This module resolves the connection and runs the sync over a run's blocks; the connection's parsing
lives in :mod:`~civic_pipelines.sinks.postgres_connection`, the Arrow-to-CSV encoding in
:mod:`~civic_pipelines.sinks.postgres_csv`, and one block's transaction in
:mod:`~civic_pipelines.sinks.postgres_block_sync`.
"""

from __future__ import annotations

import logging
import os
import sys

from civic_pipelines import settings, sources
from civic_pipelines.lake import BlockLocation
from civic_pipelines.sinks.postgres_block_sync import LEDGER, TableSpec, ensure_ledger, sync_block
from civic_pipelines.sinks.postgres_connection import (
    CONN_ID,
    PostgresConnection,
    PostgresSyncError,
    connection_from_fields,
    parse_connection,
    scrub,
)
from civic_pipelines.sinks.postgres_csv import pg_type  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def postgres_tables(source: str) -> list[TableSpec]:
    """The source's ``POSTGRES_TABLES`` as specs ([] when the source declares no PostgreSQL sink)."""
    module = sources.get(source)
    if not module.SPEC.capabilities.postgres_sink:
        return []
    declared = module.POSTGRES_TABLES
    if not declared:
        raise ValueError(f"{source} declares postgres_sink but its POSTGRES_TABLES are empty")
    specs = []
    for file, entry in declared.items():
        key, block_key = tuple(entry.get("key") or ()), tuple(entry.get("block_key") or ())
        if not entry.get("table") or not key or not block_key:
            raise ValueError(f"{source}.POSTGRES_TABLES[{file!r}] needs a table, a key and a block_key, not {entry!r}")
        specs.append(TableSpec(file=file, table=entry["table"], key=key, block_key=block_key))
    return specs


def _from_airflow(conn_id: str) -> PostgresConnection | None:
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - "not found" has different types across Airflow versions
        return None
    return connection_from_fields(conn.host, conn.port, conn.schema, conn.login, conn.password, conn.extra_dejson)


def _mask(connection: PostgresConnection) -> None:
    """Register the secrets with Airflow's log masker when Airflow runs this process (a task);
    elsewhere Airflow is not imported just for this: nothing logs through its masker there."""
    if "airflow.sdk" not in sys.modules:
        return
    from airflow.sdk.log import mask_secret

    for secret in connection.secrets():
        mask_secret(secret)


def resolve_connection(conn_id: str = CONN_ID) -> PostgresConnection | None:
    """The ``civic_postgres`` connection, or None when it is not configured anywhere."""
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    found = parse_connection(value) if value else None
    if found is None and os.environ.get("CIVIC_NO_AIRFLOW_LOOKUP") != "1":
        found = _from_airflow(conn_id)
    if found is not None:
        _mask(found)
    return found


def sync_blocks(
    source: str,
    blocks: list[dict],
    *,
    lake: str | None = None,
    connection: PostgresConnection | None = None,
    force: bool = False,
) -> dict:
    """Mirror each block (``{"month": ..., "part": ...}``) that is in the lake. Each block is its own
    transaction: a failing block is rolled back, the others still sync, and the failures are raised
    together at the end."""
    tables = postgres_tables(source)
    if not tables:
        raise ValueError(f"source {source!r} declares no POSTGRES_TABLES")
    connection = connection or resolve_connection()
    if connection is None:
        raise PostgresSyncError(f"no {CONN_ID} connection configured")
    lake = lake or settings.lake_url()
    import psycopg

    results, failures = [], []
    log.info("syncing %d block(s) of %s to PostgreSQL %s", len(blocks), source, connection.describe())
    with connection.connect() as conn:
        try:
            ensure_ledger(conn)
        except psycopg.Error as error:
            raise PostgresSyncError(
                scrub(f"{connection.describe()}: cannot create {LEDGER}: {error}", connection.secrets())
            ) from None
        for block in blocks:
            location = BlockLocation(lake=lake, source=source, month=block["month"], part=block.get("part"))
            try:
                results.append(sync_block(conn, location, tables, force=force))
            except PostgresSyncError as error:
                message = scrub(str(error), connection.secrets())
                log.error("%s", message)
                failures.append(message)
                results.append({"block": block.get("label") or location.month, "synced": False, "error": message})
    summary = {
        "source": source,
        "postgres": connection.describe(),
        "synced": sum(1 for r in results if r.get("synced")),
        "unchanged": sum(1 for r in results if r.get("reason") == "unchanged"),
        "not_landed": sum(1 for r in results if str(r.get("reason") or "").startswith("not landed")),
        "failed": len(failures),
        "blocks": results,
    }
    if failures:
        raise PostgresSyncError(
            f"{len(failures)} of {len(blocks)} block(s) failed to sync (rolled back): " + "; ".join(failures)
        )
    return summary


def sync_task(source: str, planned: list[dict] | None, params: dict) -> dict:
    """The ``sync_postgres`` task's body: skips (with the reason) or syncs the run's planned blocks."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not params.get("sync_postgres", True):
        raise AirflowSkipException("sync_postgres is off for this run")
    if params.get("dry_run"):
        raise AirflowSkipException("dry run: nothing is synced")
    if not planned:
        raise AirflowSkipException("no blocks planned in this run")
    connection = resolve_connection()
    if connection is None:
        raise AirflowSkipException(
            f"no {CONN_ID} connection configured (set AIRFLOW_CONN_{CONN_ID.upper()} "
            "or add it in Airflow): PostgreSQL is not synced"
        )
    return sync_blocks(source, planned, connection=connection, force=bool(params.get("force")))
