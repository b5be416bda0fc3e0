"""The lake: one folder per block, replaced whole and atomically.

Layout: ``<lake>/<source>/month=YYYY-MM/data.parquet`` with ``quarantine.parquet`` and
``_manifest.json`` beside it; a source with several parts (tables published separately) has
``<lake>/<source>/<part>/month=YYYY-MM/``, and a block that decodes several tables from one
download lands each as ``<table>.parquet`` beside ``data.parquet``. Files are written under temporary names that readers' globs
(``month=*/data.parquet``) never match, then renamed into place: a reader sees the old block or
the new one, never a half-written file, and a crash before the rename leaves the old block intact.
The manifest is renamed last, so it only ever describes data that is in place.

A writer killed before its rename (SIGKILL, OOM, a lost node) leaves its dot-prefixed temporary
files behind; the next run of the block removes them (:func:`remove_stale_temps`, called by
``run_block`` while it holds the block's lock, so no live writer's files are touched).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

DATA_FILE = "data.parquet"
QUARANTINE_FILE = "quarantine.parquet"
MANIFEST_FILE = "_manifest.json"
HASH_EXCLUDED = ("_landed_at",)
ROW_GROUP_SIZE = 256_000
# Test-only failpoint (tests/test_crash_safety.py): when set to a file path, a writer that has put
# its first row group into a temporary data file writes that temporary file's path to this file and
# stops there (until it is killed), so a test can SIGKILL it mid-write deterministically.
TEST_PAUSE_MID_WRITE = "CIVIC_TEST_PAUSE_MID_WRITE"


def _test_pause_mid_write(temp_path: str) -> None:
    marker = os.environ.get(TEST_PAUSE_MID_WRITE)
    if not marker:
        return
    with open(f"{marker}.part", "w", encoding="utf-8") as handle:
        handle.write(temp_path)
    os.replace(f"{marker}.part", marker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError("test failpoint: paused mid-write for 120 s and nobody killed the process")


def _filesystem(lake: str) -> tuple[pafs.FileSystem, str]:
    if lake.startswith("s3://"):
        return _s3_filesystem(), lake[len("s3://") :]
    if "://" in lake:
        return pafs.FileSystem.from_uri(lake)
    return pafs.LocalFileSystem(), lake


def _s3_filesystem() -> pafs.S3FileSystem:
    """S3 from the lake's Airflow connection (``settings.lake_conn_id()``, type ``aws``), read as the
    Amazon provider defines its fields: login = access key id, password = secret access key, extra
    ``region_name``, ``endpoint_url`` (or ``service_config.s3.endpoint_url``: an S3-compatible
    store, MinIO, moto, ...) and ``aws_session_token``. With no such connection, pyarrow's default AWS chain (environment,
    profile, instance or pod role)."""
    from urllib.parse import urlsplit

    from civic_pipelines import connections, settings

    connection = connections.lookup(settings.lake_conn_id())
    if connection is None:
        return pafs.S3FileSystem()
    extra = connection.extra or {}
    options: dict = {}
    if connection.login:
        options.update(access_key=connection.login, secret_key=connection.password or "")
        if extra.get("aws_session_token"):
            options["session_token"] = extra["aws_session_token"]
    if extra.get("region_name"):
        options["region"] = extra["region_name"]
    # As the provider resolves it: the S3 service's own endpoint first, else the connection's.
    endpoint = ((extra.get("service_config") or {}).get("s3") or {}).get("endpoint_url") or extra.get("endpoint_url")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return pafs.S3FileSystem(**options)


@dataclass(frozen=True)
class BlockLocation:
    lake: str
    source: str
    month: str
    part: str | None = None

    @property
    def folder(self) -> str:
        part = f"/{self.part}" if self.part else ""
        return f"{self.lake.rstrip('/')}/{self.source}{part}/month={self.month}"

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}"


def read_manifest(location: BlockLocation) -> dict | None:
    filesystem, _ = _filesystem(location.lake)
    path = _fs_path(location, MANIFEST_FILE)
    try:
        with filesystem.open_input_stream(path) as handle:
            return json.loads(handle.read())
    except (FileNotFoundError, OSError):
        return None


def _fs_path(location: BlockLocation, name: str) -> str:
    path = location.path(name)
    return path.split("://", 1)[1] if "://" in path else path


def content_sha256(table: pa.Table) -> str:
    """A checksum of the block's content, blind to when it was landed (so re-landing the same
    source data yields the same checksum and a changed month shows as a changed checksum)."""
    columns = [name for name in table.column_names if name not in HASH_EXCLUDED]
    # The IPC stream goes straight into the digest: the same bytes as before, without holding
    # the serialised block (and a Python copy of it) in memory, two more copies of the block.
    sink = _HashingSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.select(columns).schema) as writer:
        writer.write_table(table.select(columns), max_chunksize=65536)
    return sink.digest.hexdigest()


def content_sha256_all(data: pa.Table, tables: dict[str, pa.Table] | None) -> str:
    """The block's checksum over data.parquet and every extra table, by name."""
    if not tables:
        return content_sha256(data)
    digest = hashlib.sha256(content_sha256(data).encode())
    for name in sorted(tables):
        digest.update(f"|{name}:{content_sha256(tables[name])}".encode())
    return digest.hexdigest()


def write_block(
    location: BlockLocation,
    data: pa.Table,
    quarantine: pa.Table | None,
    manifest: dict,
    tables: dict[str, pa.Table] | None = None,
) -> dict:
    """Write a block and return the manifest completed with bytes and path."""
    filesystem, _ = _filesystem(location.lake)
    folder = _fs_path(location, "")[:-1]
    filesystem.create_dir(folder, recursive=True)
    token = uuid.uuid4().hex[:12]
    staged: list[tuple[str, str]] = []
    try:
        data_tmp = f"{folder}/.{DATA_FILE}.{token}.tmp"
        staged.append((data_tmp, f"{folder}/{DATA_FILE}"))
        # zstd level 1: most of zstd's size gain at a fraction of the default level's CPU. Written as
        # pq.write_table does, in two calls so a test can stop the writer after its first row group.
        with pq.ParquetWriter(
            data_tmp, data.schema, filesystem=filesystem, compression="zstd", compression_level=1
        ) as writer:
            first = min(data.num_rows, ROW_GROUP_SIZE)
            writer.write_table(data.slice(0, first), row_group_size=ROW_GROUP_SIZE)
            _test_pause_mid_write(data_tmp)
            if data.num_rows > first:
                writer.write_table(data.slice(first), row_group_size=ROW_GROUP_SIZE)
        for name, table in sorted((tables or {}).items()):
            if name in ("data", "quarantine") or "/" in name:
                raise ValueError(f"extra table name {name!r} is reserved or not a file name")
            table_tmp = f"{folder}/.{name}.parquet.{token}.tmp"
            pq.write_table(table, table_tmp, filesystem=filesystem, compression="zstd", compression_level=1)
            staged.append((table_tmp, f"{folder}/{name}.parquet"))
        if quarantine is not None and quarantine.num_rows:
            quarantine_tmp = f"{folder}/.{QUARANTINE_FILE}.{token}.tmp"
            pq.write_table(quarantine, quarantine_tmp, filesystem=filesystem, compression="zstd")
            staged.append((quarantine_tmp, f"{folder}/{QUARANTINE_FILE}"))
        manifest = {**manifest, "bytes": filesystem.get_file_info(data_tmp).size, "path": location.path(DATA_FILE)}
        manifest_tmp = f"{folder}/.{MANIFEST_FILE}.{token}.tmp"
        with filesystem.open_output_stream(manifest_tmp) as handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
        staged.append((manifest_tmp, f"{folder}/{MANIFEST_FILE}"))
        if quarantine is None or not quarantine.num_rows:
            _delete_if_exists(filesystem, f"{folder}/{QUARANTINE_FILE}")
        for tmp, final in staged:
            _rename(filesystem, tmp, final)
        staged = []
    finally:
        for tmp, _ in staged:
            _delete_if_exists(filesystem, tmp)
    return manifest


def is_temp_name(name: str) -> bool:
    """A staged file of an unfinished write (``.<name>.<token>.tmp``), never a landed file."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_stale_temps(location: BlockLocation, older_than: float | None = None) -> list[str]:
    """Delete the temporary files a killed writer left in the block's folder; returns their names.

    Call it only while no other writer can be at work on the block: under the block lock
    (``older_than=None``: every temporary file goes), or, where there is no lock (object stores),
    with ``older_than`` seconds so a live writer's recent files stay.
    """
    filesystem, _ = _filesystem(location.lake)
    folder = _fs_path(location, "")[:-1]
    removed = []
    now = time.time()
    for info in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type != pafs.FileType.File or not is_temp_name(info.base_name):
            continue
        if older_than is not None and info.mtime is not None and now - info.mtime.timestamp() < older_than:
            continue
        _delete_if_exists(filesystem, info.path)
        removed.append(info.base_name)
    return sorted(removed)


def write_manifest(location: BlockLocation, manifest: dict) -> None:
    """Replace only the manifest (the data stays as landed)."""
    filesystem, _ = _filesystem(location.lake)
    folder = _fs_path(location, "")[:-1]
    tmp = f"{folder}/.{MANIFEST_FILE}.{uuid.uuid4().hex[:12]}.tmp"
    with filesystem.open_output_stream(tmp) as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    _rename(filesystem, tmp, f"{folder}/{MANIFEST_FILE}")


def read_block_table(location: BlockLocation, name: str = DATA_FILE) -> pa.Table | None:
    """One landed file of the block (``data.parquet``, ``events.parquet``, ...); None if absent."""
    filesystem, _ = _filesystem(location.lake)
    try:
        with filesystem.open_input_file(_fs_path(location, name)) as handle:
            return pq.read_table(handle)
    except (FileNotFoundError, OSError):
        return None


_CHANGED_SQL = """
    with o as (select "{key}" as k, hash(struct_pack({columns})) as h from {old}),
         n as (select "{key}" as k, hash(struct_pack({columns})) as h from {new})
    select count(*) filter (where o.k is null),
           count(*) filter (where n.k is null),
           count(*) filter (where o.k is not null and n.k is not null and o.h <> n.h)
    from o full outer join n on o.k = n.k
"""


def _compare(con, old: str, new: str, columns: list[str], key: str, params: list | None = None) -> dict:
    """Added, removed and changed keys between two relations (the landing time is not content)."""
    quoted = ", ".join(f'"{c}"' for c in columns if c not in HASH_EXCLUDED)
    added, removed, changed = con.execute(
        _CHANGED_SQL.format(key=key, columns=quoted, old=old, new=new), params or []
    ).fetchone()
    return {"added": added, "removed": removed, "changed": changed}


def rows_changed(location: BlockLocation, new: pa.Table, key: str) -> dict:
    """How the new landing differs from the block in place, by natural key: added, removed, and
    kept keys whose row content changed (the landing time is not content)."""
    import duckdb

    old = read_block_table(location)
    if old is None:
        return {"added": new.num_rows, "removed": 0, "changed": 0}
    columns = [c for c in new.column_names if c in old.column_names]
    with duckdb.connect() as con:
        con.register("old_rows", old.select(columns))
        con.register("new_rows", new.select(columns))
        return _compare(con, "old_rows", "new_rows", columns, key)


def _rename(filesystem: pafs.FileSystem, source: str, destination: str) -> None:
    # A rename within one folder is atomic on POSIX file systems; an S3 put is atomic per object.
    filesystem.move(source, destination)


def _delete_if_exists(filesystem: pafs.FileSystem, path: str) -> None:
    try:
        filesystem.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def landed_months(lake: str, source: str, part: str | None = None) -> list[str]:
    filesystem, root = _filesystem(lake)
    base = f"{root.rstrip('/')}/{source}" + (f"/{part}" if part else "")
    selector = pafs.FileSelector(base, allow_not_found=True)
    months = []
    for info in filesystem.get_file_info(selector):
        name = info.base_name
        if info.type == pafs.FileType.Directory and name.startswith("month="):
            if filesystem.get_file_info(f"{base}/{name}/{DATA_FILE}").type == pafs.FileType.File:
                months.append(name.split("=", 1)[1])
    return sorted(months)


class _HashingSink:
    """A write-only file object that only feeds a sha256 (for Arrow's IPC writer)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class BlockWriter:
    """A block written as it is extracted, for sources too big to hold a month in memory.

    ``write(batch)`` appends record batches (the first fixes the schema: write an empty batch
    for an empty block) to a temporary ``data.parquet``; ``write_quarantine(batch)`` likewise;
    ``sha256`` is the content checksum so far (blind to ``_landed_at``, independent of how the
    rows were batched); ``commit(manifest)`` renames everything into place, manifest last, and
    ``abort()`` (or leaving the ``with`` block on an error) deletes the temporary files, so the
    previous landing stays whole.
    """

    HASH_CHUNK = 65_536

    def __init__(self, location: BlockLocation, row_group_size: int = 131_072) -> None:
        self.location = location
        self.filesystem, _ = _filesystem(location.lake)
        self.folder = _fs_path(location, "")[:-1]
        self.token = uuid.uuid4().hex[:12]
        self.row_group_size = row_group_size
        self.rows = 0
        self.quarantined = 0
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._temps: dict[str, str] = {}
        self._hash_sink = _HashingSink()
        self._hash_writer = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._rows_pending: list[pa.Table] = []
        self._rows_pending_count = 0
        self._done = False

    def _flush_rows(self, writer: pq.ParquetWriter, final: bool = False) -> None:
        """Write whole row groups of the gathered rows (all of them when ``final``)."""
        if not self._rows_pending:
            return
        gathered = pa.concat_tables(self._rows_pending)
        cut = gathered.num_rows if final else gathered.num_rows - gathered.num_rows % self.row_group_size
        if cut or final:
            writer.write_table(gathered.slice(0, cut), row_group_size=self.row_group_size)
        rest = gathered.slice(cut)
        self._rows_pending, self._rows_pending_count = ([rest] if rest.num_rows else []), rest.num_rows

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if not self._done:
            self.abort()

    def _writer(self, name: str, schema: pa.Schema) -> pq.ParquetWriter:
        writer = self._writers.get(name)
        if writer is None:
            self.filesystem.create_dir(self.folder, recursive=True)
            temp = f"{self.folder}/.{name}.{self.token}.tmp"
            self._temps[name] = temp
            writer = self._writers[name] = pq.ParquetWriter(
                temp, schema, filesystem=self.filesystem, compression="zstd", compression_level=1
            )
        return writer

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        writer = self._writer(DATA_FILE, table.schema)
        # Batches are usually far smaller than a good row group: gather them (bounded memory),
        # so readers get row groups of row_group_size, not one per batch.
        self._rows_pending.append(table)
        self._rows_pending_count += table.num_rows
        if self._rows_pending_count >= self.row_group_size:
            self._flush_rows(writer)
        if os.environ.get(TEST_PAUSE_MID_WRITE) and table.num_rows:
            self._flush_rows(writer, final=True)  # put the rows so far into the file, then stop
            _test_pause_mid_write(self._temps[DATA_FILE])
        self.rows += table.num_rows
        hashed = table.select([c for c in table.column_names if c not in HASH_EXCLUDED])
        if self._hash_writer is None:
            self._hash_writer = pa.ipc.new_stream(pa.PythonFile(self._hash_sink, mode="w"), hashed.schema)
        for piece in hashed.to_batches():
            self._pending.append(piece)
            self._pending_rows += piece.num_rows
        while self._pending_rows >= self.HASH_CHUNK:
            self._flush_hash(self.HASH_CHUNK)

    def _flush_hash(self, rows: int) -> None:
        combined = pa.Table.from_batches(self._pending).combine_chunks()
        head, tail = combined.slice(0, rows), combined.slice(rows)
        for batch in head.to_batches(max_chunksize=rows):
            self._hash_writer.write_batch(batch)
        self._pending = tail.to_batches()
        self._pending_rows = tail.num_rows

    def write_quarantine(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if table.num_rows:
            self._writer(QUARANTINE_FILE, table.schema).write_table(table)
            self.quarantined += table.num_rows

    @property
    def sha256(self) -> str:
        """The content checksum; valid once every batch is written (it closes the hash stream)."""
        if self._hash_writer is None:
            raise ValueError("no batch written: write an empty batch with the schema for an empty block")
        if not self._hash_sink.closed:
            if self._pending_rows:
                self._flush_hash(self._pending_rows)
            self._hash_writer.close()
            self._hash_sink.closed = True
            self._sha = self._hash_sink.digest.hexdigest()
        return self._sha

    def temp_path(self, name: str = DATA_FILE) -> str:
        return self._temps[name]

    def finish(self) -> None:
        """Close the parquet files (readable at ``temp_path``), still under their temporary names."""
        if DATA_FILE in self._writers:
            self._flush_rows(self._writers[DATA_FILE], final=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def commit(self, manifest: dict) -> dict:
        if DATA_FILE not in self._temps:
            raise ValueError("no batch written: write an empty batch with the schema for an empty block")
        self.finish()
        data_temp = self._temps[DATA_FILE]
        manifest = {
            **manifest,
            "bytes": self.filesystem.get_file_info(data_temp).size,
            "path": self.location.path(DATA_FILE),
        }
        manifest_temp = f"{self.folder}/.{MANIFEST_FILE}.{self.token}.tmp"
        with self.filesystem.open_output_stream(manifest_temp) as handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
        self._temps[MANIFEST_FILE] = manifest_temp
        if QUARANTINE_FILE not in self._temps:
            _delete_if_exists(self.filesystem, f"{self.folder}/{QUARANTINE_FILE}")
        for name in (DATA_FILE, QUARANTINE_FILE, MANIFEST_FILE):
            if name in self._temps:
                _rename(self.filesystem, self._temps.pop(name), f"{self.folder}/{name}")
        self._done = True
        return manifest

    def abort(self) -> None:
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - closing a half-written file may fail; it is deleted next
                pass
        self._writers.clear()
        for temp in self._temps.values():
            _delete_if_exists(self.filesystem, temp)
        self._temps.clear()
        self._done = True


def rows_changed_files(location: BlockLocation, new_path: str, key: str) -> dict | None:
    """:func:`rows_changed` for a streamed block: the old and new parquet files compared in DuckDB
    without loading either into Python. Local lakes only (None elsewhere)."""
    if "://" in location.lake:
        return None
    import duckdb

    old_path = _fs_path(location, DATA_FILE)
    filesystem, _ = _filesystem(location.lake)
    if filesystem.get_file_info(old_path).type != pafs.FileType.File:
        return None
    with duckdb.connect() as con:
        columns = [row[0] for row in con.execute("describe select * from read_parquet(?)", [new_path]).fetchall()]
        old_columns = {row[0] for row in con.execute("describe select * from read_parquet(?)", [old_path]).fetchall()}
        return _compare(
            con,
            "read_parquet(?)",
            "read_parquet(?)",
            [c for c in columns if c in old_columns],
            key,
            [old_path, new_path],
        )
