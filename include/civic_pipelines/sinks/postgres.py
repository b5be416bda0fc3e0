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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

from civic_pipelines import settings, sources
from civic_pipelines.lake import BlockLocation, read_manifest

log = logging.getLogger(__name__)

CONN_ID = "civic_postgres"
LEDGER = "civic_sync_ledger"
COPY_BATCH_ROWS = 65_536
# libpq parameters an Airflow connection's extras may carry (others, like the provider's
# "cursor" or "iam", are the hook's business and ignored here).
LIBPQ_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "application_name",
    "keepalives",
    "keepalives_idle",
    "channel_binding",
)
SECRET_EXTRAS = ("sslpassword",)


class PostgresSyncError(RuntimeError):
    """A block could not be synced (its transaction was rolled back), or the server is unreachable."""


# --- the connection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresConnection:
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """``user@host:port/db``, for logs: never the password."""
        return f"{self.user or ''}@{self.host or 'localhost'}:{self.port or 5432}/{self.dbname or ''}"

    def __repr__(self) -> str:
        return f"PostgresConnection({self.describe()})"

    def secrets(self) -> list[str]:
        return [s for s in [self.password, *(str(self.options.get(k) or "") for k in SECRET_EXTRAS)] if s]

    def connect(self):
        """An autocommit psycopg connection (transactions are explicit, one per block)."""
        import psycopg

        params = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
        }
        params = {k: v for k, v in params.items() if v not in (None, "")}
        params.update({k: v for k, v in self.options.items() if v not in (None, "")})
        params.setdefault("application_name", "civic-pipelines sync")
        params.setdefault("connect_timeout", 10)
        try:
            return psycopg.connect(autocommit=True, **params)
        except psycopg.Error as error:
            # `from None`: the original exception is not chained into the traceback.
            raise PostgresSyncError(
                f"cannot connect to PostgreSQL {self.describe()}: {scrub(str(error), self.secrets())}"
            ) from None


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _from_fields(host, port, schema, login, password, extra) -> PostgresConnection:
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    options = {k: v for k, v in (extra or {}).items() if k in LIBPQ_EXTRAS}
    return PostgresConnection(
        host=host or None,
        port=int(port) if port not in (None, "") else None,
        dbname=schema or None,
        user=login or None,
        password=password or None,
        options=options,
    )


def parse_connection(value: str) -> PostgresConnection:
    """An ``AIRFLOW_CONN_*`` value, JSON (``{"conn_type": "postgres", "host": ..., "schema": db}``) or
    URI (``postgres://user:password@host:5432/db?sslmode=require``)."""
    value = value.strip()
    if value.startswith("{"):
        data = json.loads(value)
        return _from_fields(
            data.get("host"),
            data.get("port"),
            data.get("schema"),
            data.get("login"),
            data.get("password"),
            data.get("extra"),
        )
    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query))
    extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    hostport = parts.netloc.rpartition("@")[2]
    if parts.port is not None:
        hostport = hostport[: hostport.rfind(":")]
    return _from_fields(
        unquote(hostport).strip("[]"),
        parts.port,
        unquote(parts.path.lstrip("/")),
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        extra,
    )


def _from_airflow(conn_id: str) -> PostgresConnection | None:
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - "not found" has different types across Airflow versions
        return None
    return _from_fields(conn.host, conn.port, conn.schema, conn.login, conn.password, conn.extra_dejson)


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


# --- types: Arrow -> PostgreSQL --------------------------------------------------------------------


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type, spelled as ``format_type()`` spells it."""
    t = arrow_type
    types = pa.types
    if types.is_dictionary(t):
        return pg_type(t.value_type)
    if types.is_boolean(t):
        return "boolean"
    if types.is_int8(t) or types.is_int16(t) or types.is_uint8(t):
        return "smallint"
    if types.is_int32(t) or types.is_uint16(t):
        return "integer"
    if types.is_int64(t) or types.is_uint32(t):
        return "bigint"
    if types.is_uint64(t):
        return "numeric(20,0)"
    if types.is_float16(t) or types.is_float32(t):
        return "real"
    if types.is_float64(t):
        return "double precision"
    if types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if (
        types.is_string(t)
        or types.is_large_string(t)
        or getattr(types, "is_string_view", lambda _: False)(t)
        or types.is_null(t)
    ):
        return "text"
    if (
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_fixed_size_binary(t)
        or getattr(types, "is_binary_view", lambda _: False)(t)
    ):
        return "bytea"
    if types.is_date(t):
        return "date"
    if types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    if types.is_time(t):
        return "time without time zone"
    if types.is_duration(t):
        return "interval"
    if types.is_nested(t):
        return "jsonb"
    raise TypeError(f"no PostgreSQL type for Arrow type {t}")


def _json(value) -> str:
    try:
        import orjson  # about five times json's speed on a block's nested columns
    except ImportError:
        return json.dumps(value, default=str, ensure_ascii=False)
    return orjson.dumps(value, default=str).decode()


_DURATION_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}


def _csv_column(column: pa.Array, t: pa.DataType) -> pa.Array:
    """A column Arrow's CSV writer can write and PostgreSQL's CSV COPY reads as ``pg_type(t)``."""
    types = pa.types
    if types.is_dictionary(t):
        column, t = column.dictionary_decode(), t.value_type
    if types.is_nested(t):
        # Nested values go to jsonb: JSON text (Arrow's CSV writer has no nested types).
        return pa.array([None if v is None else _json(v) for v in column.to_pylist()], pa.string())
    if (
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_fixed_size_binary(t)
        or getattr(types, "is_binary_view", lambda _: False)(t)
    ):
        return pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string())
    if types.is_duration(t):
        values = column.cast(pa.int64()).to_pylist()
        if t.unit == "ns":
            return pa.array([None if v is None else f"{v // 1000} microseconds" for v in values], pa.string())
        return pa.array([None if v is None else f"{v} {_DURATION_UNITS[t.unit]}" for v in values], pa.string())
    if types.is_null(t) or getattr(types, "is_string_view", lambda _: False)(t):
        return column.cast(pa.string())
    if types.is_float16(t):
        return column.cast(pa.float32())
    return column


def _csv_bytes(batch: pa.RecordBatch) -> pa.Buffer:
    import pyarrow.csv as pacsv

    columns = [_csv_column(column, f.type) for column, f in zip(batch.columns, batch.schema)]
    sink = pa.BufferOutputStream()
    # Arrow quotes every string (so "" is an empty string) and writes a null as an empty
    # unquoted field, which is exactly PostgreSQL's CSV convention for NULL.
    pacsv.write_csv(
        pa.RecordBatch.from_arrays(columns, names=batch.schema.names), sink, pacsv.WriteOptions(include_header=False)
    )
    return sink.getvalue()


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    file: str  # "data" -> data.parquet
    table: str
    key: tuple[str, ...]
    block_key: tuple[str, ...]

    @property
    def parquet(self) -> str:
        return f"{self.file}.parquet"


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


def _ensure_ledger(conn) -> None:
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
            copy.write(memoryview(_csv_bytes(batch)))
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
            _ensure_ledger(conn)
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
