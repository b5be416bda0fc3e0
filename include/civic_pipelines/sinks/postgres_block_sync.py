"""One landed block mirrored into PostgreSQL in one transaction: the target tables created or widened
from the parquet's schema, the block's rows staged by COPY, stale rows deleted, changed rows upserted,
and the sync ledger that lets an unchanged landing be skipped. The SQL, step by step, is described in
:mod:`civic_pipelines.sinks.postgres`."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass

import pyarrow as pa

from civic_pipelines.lake import BlockLocation, read_manifest
from civic_pipelines.sinks.postgres_connection import PostgresSyncError
from civic_pipelines.sinks.postgres_csv import csv_bytes, pg_type

log = logging.getLogger(__name__)

LEDGER = "civic_sync_ledger"
COPY_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class TableSpec:
    file: str  # "data" -> data.parquet
    table: str
    key: tuple[str, ...]
    block_key: tuple[str, ...]

    @property
    def parquet(self) -> str:
        return f"{self.file}.parquet"


def _identifier(name: str):
    from psycopg import sql

    return sql.Identifier(*name.split(".", 1))


def _fingerprint(manifest: dict) -> str | None:
    """The landing's identity: a new landing has a new ``landed_at`` (and ``sha256`` if the
    content changed); a skipped or unchanged run keeps both."""
    if not manifest.get("landed_at"):
        return None
    fields = {k: manifest.get(k) for k in ("landed_at", "sha256", "rows", "tables")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _open_parquet(location: BlockLocation, name: str):
    """The block's ``name`` as a ParquetFile, or None when this landing has no such file."""
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    path = location.path(name)
    if "://" in path:
        filesystem, path = pafs.FileSystem.from_uri(path)
    else:
        filesystem = pafs.LocalFileSystem()
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    return pq.ParquetFile(path, filesystem=filesystem)


# --- the sync --------------------------------------------------------------------------------------


def ensure_ledger(conn) -> None:
    from psycopg import sql

    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtextextended('civic_sync:ledger', 0))")
        conn.execute(
            sql.SQL(
                "create table if not exists {} (target_table text not null, block text not null, fingerprint text, "
                "rows bigint not null, synced_at timestamptz not null default now(), primary key (target_table, block))"
            ).format(sql.Identifier(LEDGER))
        )


def _existing_columns(conn, table) -> dict[str, str] | None:
    regclass = conn.execute("select to_regclass(%s)::oid", [_identifier(table).as_string(conn)]).fetchone()[0]
    if regclass is None:
        return None
    rows = conn.execute(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute "
        "where attrelid = %s and attnum > 0 and not attisdropped order by attnum",
        [regclass],
    ).fetchall()
    return dict(rows)


def _ensure_table(conn, spec: TableSpec, schema: pa.Schema) -> tuple[list[str], bool]:
    """Create or widen the target; returns its columns (in order) and whether it was created."""
    from psycopg import sql

    wanted = {f.name: pg_type(f.type) for f in schema}
    for column in (*spec.key, *spec.block_key):
        if column not in wanted:
            raise PostgresSyncError(f"{spec.table}: column {column!r} (key or block_key) is not in {spec.parquet}")
    too_long = [name for name in wanted if len(name.encode()) > 63]
    if too_long:
        raise PostgresSyncError(f"{spec.table}: column names longer than PostgreSQL's 63 bytes: {too_long}")
    target = _identifier(spec.table)
    existing = _existing_columns(conn, spec.table)
    created = existing is None
    if created:
        if "." in spec.table:
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(spec.table.split(".", 1)[0])))
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(name), sql.SQL(kind), sql.SQL(" not null" if name in spec.key else "")
            )
            for name, kind in wanted.items()
        )
        conn.execute(
            sql.SQL("create table {} ({}, primary key ({}))").format(
                target, columns, sql.SQL(", ").join(map(sql.Identifier, spec.key))
            )
        )
        existing = dict(wanted)
    else:
        for name, kind in wanted.items():
            if name not in existing:
                log.warning("%s: new column %s %s (from %s)", spec.table, name, kind, spec.parquet)
                conn.execute(
                    sql.SQL("alter table {} add column {} {}").format(target, sql.Identifier(name), sql.SQL(kind))
                )
                existing[name] = kind
            elif existing[name] != kind and not pa.types.is_null(schema.field(name).type):  # all-null casts to anything
                log.warning(
                    "%s.%s is %s in PostgreSQL but %s in the lake: COPY casts (and fails the block if it cannot)",
                    spec.table,
                    name,
                    existing[name],
                    kind,
                )
    index = f"{spec.table.rsplit('.', 1)[-1]}_block_idx"[:63]
    conn.execute(
        sql.SQL("create index if not exists {} on {} ({})").format(
            sql.Identifier(index), target, sql.SQL(", ").join(map(sql.Identifier, spec.block_key))
        )
    )
    return list(existing), created


def _block_condition(spec: TableSpec, alias: str):
    from psycopg import sql

    return sql.SQL(" and ").join(
        sql.SQL("{}.{} = %s").format(sql.Identifier(alias), sql.Identifier(c)) for c in spec.block_key
    )


def _sync_table(
    conn, spec: TableSpec, location: BlockLocation, identity: list, block_id: str, fingerprint: str | None, force: bool
) -> dict:
    started = time.monotonic()
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"civic_sync:{spec.table}"])
    parquet = _open_parquet(location, spec.parquet)
    if parquet is None:
        # Not in this landing at all (not the same as an empty file): leave the table alone.
        return {"table": spec.table, "skipped": True, "reason": f"no {spec.parquet} in this landing"}
    with parquet:
        return _sync_file(conn, spec, parquet, identity, block_id, fingerprint, force, started)


def _sync_file(
    conn, spec: TableSpec, parquet, identity: list, block_id: str, fingerprint: str | None, force: bool, started: float
) -> dict:
    from psycopg import sql

    target = _identifier(spec.table)
    columns, created = _ensure_table(conn, spec, parquet.schema_arrow)
    ledger = sql.Identifier(LEDGER)
    if created:
        conn.execute(sql.SQL("delete from {} where target_table = %s").format(ledger), [spec.table])
    elif fingerprint and not force:
        previous = conn.execute(
            sql.SQL("select fingerprint, rows, synced_at from {} where target_table = %s and block = %s").format(
                ledger
            ),
            [spec.table, block_id],
        ).fetchone()
        if previous and previous[0] == fingerprint:
            (now_rows,) = conn.execute(
                sql.SQL("select count(*) from {} t where {}").format(target, _block_condition(spec, "t")), identity
            ).fetchone()
            if now_rows == previous[1]:
                return {
                    "table": spec.table,
                    "skipped": True,
                    "rows": now_rows,
                    "reason": f"landing unchanged since the sync at {previous[2].isoformat()}",
                }

    stage = sql.Identifier(f"civic_stage_{spec.file}")
    conn.execute(sql.SQL("create temporary table {} (like {}) on commit drop").format(stage, target))
    names = parquet.schema_arrow.names
    copied = 0
    with conn.cursor().copy(
        sql.SQL("copy {} ({}) from stdin (format csv)").format(stage, sql.SQL(", ").join(map(sql.Identifier, names)))
    ) as copy:
        for batch in parquet.iter_batches(batch_size=COPY_BATCH_ROWS):
            copy.write(memoryview(csv_bytes(batch)))
            copied += batch.num_rows

    block_cols = sql.SQL(", ").join(map(sql.Identifier, spec.block_key))
    (strays,) = conn.execute(
        sql.SQL("select count(*) from {} where ({}) is distinct from ({})").format(
            stage, block_cols, sql.SQL(", ").join(sql.Placeholder() * len(identity))
        ),
        identity,
    ).fetchone()
    if strays:
        raise PostgresSyncError(
            f"{spec.table}: {strays} row(s) of {block_id} have {', '.join(spec.block_key)} other than "
            f"{identity}: the block's rows could not be replaced exactly"
        )
    key_cols = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    (duplicates,) = conn.execute(
        sql.SQL("select count(*) from (select 1 from {} group by {} having count(*) > 1) d").format(stage, key_cols)
    ).fetchone()
    if duplicates:
        raise PostgresSyncError(
            f"{spec.table}: {duplicates} key(s) ({', '.join(spec.key)}) appear more than once in {block_id}"
        )

    key_match = sql.SQL(" and ").join(sql.SQL("s.{0} = t.{0}").format(sql.Identifier(c)) for c in spec.key)
    deleted = conn.execute(
        sql.SQL("delete from {} t where {} and not exists (select 1 from {} s where {})").format(
            target, _block_condition(spec, "t"), stage, key_match
        ),
        identity,
    ).rowcount

    # A key the table holds under another block (a trip re-dated into another month) moves here:
    # the key is the table's identity, so it lives in whichever of the two blocks synced last.
    (moved,) = conn.execute(
        sql.SQL("select count(*) from {} s join {} t on {} where ({}) is distinct from ({})").format(
            stage,
            target,
            key_match,
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.block_key),
            sql.SQL(", ").join(sql.Placeholder() * len(identity)),
        ),
        identity,
    ).fetchone()
    if moved:
        log.warning(
            "%s: %d key(s) of %s were held under another block and move to this one", spec.table, moved, block_id
        )

    all_cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    others = [c for c in columns if c not in spec.key]
    if others:
        # Columns the lake no longer has are null in the stage: the row mirrors the landing.
        conflict = sql.SQL("do update set {} where ({}) is distinct from ({})").format(
            sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in others),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in others),
            sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in others),
        )
    else:
        conflict = sql.SQL("do nothing")
    inserted, updated = conn.execute(
        sql.SQL(
            "with upserted as (insert into {} as t ({}) select {} from {} on conflict ({}) {} returning (t.xmax = 0) as fresh) "
            "select count(*) filter (where fresh), count(*) filter (where not fresh) from upserted"
        ).format(target, all_cols, all_cols, stage, key_cols, conflict)
    ).fetchone()

    conn.execute(
        sql.SQL(
            "insert into {} (target_table, block, fingerprint, rows, synced_at) values (%s, %s, %s, %s, now()) "
            "on conflict (target_table, block) do update set fingerprint = excluded.fingerprint, rows = excluded.rows, "
            "synced_at = excluded.synced_at"
        ).format(ledger),
        [spec.table, block_id, fingerprint, copied],
    )
    return {
        "table": spec.table,
        "skipped": False,
        "rows": copied,
        "inserted": inserted,
        "updated": updated,
        "deleted": deleted,
        "moved": moved,
        "created": created,
        "seconds": round(time.monotonic() - started, 3),
    }


def sync_block(
    conn, location: BlockLocation, tables: list[TableSpec], *, manifest: dict | None = None, force: bool = False
) -> dict:
    """Mirror one landed block's tables, in one transaction (all of them or none)."""
    import psycopg

    manifest = manifest if manifest is not None else read_manifest(location)
    label = " ".join(x for x in (location.source, location.part, location.month) if x)
    if manifest is None:
        return {"block": label, "synced": False, "reason": "not landed: no manifest in the lake"}
    identity = ([location.part] if location.part else []) + [location.month]
    block_id = "/".join(x for x in (location.source, location.part, f"month={location.month}") if x)
    fingerprint = _fingerprint(manifest)
    results = []
    try:
        with conn.transaction():
            for spec in tables:
                if len(spec.block_key) != len(identity):
                    raise PostgresSyncError(
                        f"{spec.table}: block_key {list(spec.block_key)} must name "
                        f"{'the part and month' if location.part else 'the month'} columns of {label}"
                    )
                results.append(_sync_table(conn, spec, location, identity, block_id, fingerprint, force))
    except psycopg.Error as error:
        # The server's message (with its DETAIL and CONTEXT lines), without chaining the driver's exception.
        raise PostgresSyncError(f"{label}: rolled back: {type(error).__name__}: {str(error).strip()}") from None
    except PostgresSyncError as error:
        raise PostgresSyncError(f"{label}: rolled back: {error}") from None
    for result in results:
        if result["skipped"]:
            log.info("%s -> %s: skipped (%s)", label, result["table"], result["reason"])
        else:
            log.info(
                "%s -> %s: %s row(s) copied; %s inserted, %s updated, %s deleted, %s moved from other blocks in %.2f s",
                label,
                result["table"],
                f"{result['rows']:,}",
                result["inserted"],
                result["updated"],
                result["deleted"],
                result["moved"],
                result["seconds"],
            )
    synced = any(not r["skipped"] for r in results)
    reasons = [r["reason"] for r in results if r["skipped"]]
    reason = (
        None
        if synced
        else "unchanged"
        if all(r.startswith("landing unchanged") for r in reasons)
        else "; ".join(reasons)
    )
    return {"block": label, "synced": synced, "reason": reason, "tables": results}
