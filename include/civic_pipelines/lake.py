"""The lake: one folder per block, replaced whole and atomically.

Layout: ``<lake>/<source>/month=YYYY-MM/data.parquet`` with ``quarantine.parquet`` and
``_manifest.json`` beside it. Files are written under temporary names that readers' globs
(``month=*/data.parquet``) never match, then renamed into place: a reader sees the old block or
the new one, never a half-written file, and a crash before the rename leaves the old block intact.
The manifest is renamed last, so it only ever describes data that is in place.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

DATA_FILE = "data.parquet"
QUARANTINE_FILE = "quarantine.parquet"
MANIFEST_FILE = "_manifest.json"
HASH_EXCLUDED = ("_landed_at",)


def _filesystem(lake: str) -> tuple[pafs.FileSystem, str]:
    if "://" in lake:
        return pafs.FileSystem.from_uri(lake)
    return pafs.LocalFileSystem(), lake


@dataclass(frozen=True)
class BlockLocation:
    lake: str
    source: str
    month: str

    @property
    def folder(self) -> str:
        return f"{self.lake.rstrip('/')}/{self.source}/month={self.month}"

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
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.select(columns).schema) as writer:
        writer.write_table(table.select(columns), max_chunksize=65536)
    digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def write_block(location: BlockLocation, data: pa.Table, quarantine: pa.Table | None, manifest: dict) -> dict:
    """Write a block and return the manifest completed with bytes and path."""
    filesystem, _ = _filesystem(location.lake)
    folder = _fs_path(location, "")[:-1]
    filesystem.create_dir(folder, recursive=True)
    token = uuid.uuid4().hex[:12]
    staged: list[tuple[str, str]] = []
    try:
        data_tmp = f"{folder}/.{DATA_FILE}.{token}.tmp"
        # zstd level 1: most of zstd's size gain at a fraction of the default level's CPU.
        pq.write_table(data, data_tmp, filesystem=filesystem, compression="zstd", compression_level=1, row_group_size=256_000)
        staged.append((data_tmp, f"{folder}/{DATA_FILE}"))
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


def write_manifest(location: BlockLocation, manifest: dict) -> None:
    """Replace only the manifest (the data stays as landed)."""
    filesystem, _ = _filesystem(location.lake)
    folder = _fs_path(location, "")[:-1]
    tmp = f"{folder}/.{MANIFEST_FILE}.{uuid.uuid4().hex[:12]}.tmp"
    with filesystem.open_output_stream(tmp) as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    _rename(filesystem, tmp, f"{folder}/{MANIFEST_FILE}")


def rows_changed(location: BlockLocation, new: pa.Table, key: str) -> dict:
    """How the new landing differs from the block in place, by natural key: added, removed, and
    kept keys whose row content changed (the landing time is not content)."""
    import duckdb

    filesystem, _ = _filesystem(location.lake)
    try:
        with filesystem.open_input_file(_fs_path(location, DATA_FILE)) as handle:
            old = pq.read_table(handle)
    except (FileNotFoundError, OSError):
        return {"added": new.num_rows, "removed": 0, "changed": 0}
    columns = [c for c in new.column_names if c not in HASH_EXCLUDED and c in old.column_names]
    quoted = ", ".join(f'"{c}"' for c in columns)
    with duckdb.connect() as con:
        con.register("old_rows", old.select(columns))
        con.register("new_rows", new.select(columns))
        added, removed, changed = con.execute(
            f"""
            with o as (select "{key}" as k, hash(struct_pack({quoted})) as h from old_rows),
                 n as (select "{key}" as k, hash(struct_pack({quoted})) as h from new_rows)
            select count(*) filter (where o.k is null),
                   count(*) filter (where n.k is null),
                   count(*) filter (where o.k is not null and n.k is not null and o.h <> n.h)
            from o full outer join n on o.k = n.k
            """
        ).fetchone()
    return {"added": added, "removed": removed, "changed": changed}


def _rename(filesystem: pafs.FileSystem, source: str, destination: str) -> None:
    # A rename within one folder is atomic on POSIX file systems; an S3 put is atomic per object.
    filesystem.move(source, destination)


def _delete_if_exists(filesystem: pafs.FileSystem, path: str) -> None:
    try:
        filesystem.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def landed_months(lake: str, source: str) -> list[str]:
    filesystem, root = _filesystem(lake)
    base = f"{root.rstrip('/')}/{source}"
    selector = pafs.FileSelector(base, allow_not_found=True)
    months = []
    for info in filesystem.get_file_info(selector):
        name = info.base_name
        if info.type == pafs.FileType.Directory and name.startswith("month="):
            if filesystem.get_file_info(f"{base}/{name}/{DATA_FILE}").type == pafs.FileType.File:
                months.append(name.split("=", 1)[1])
    return sorted(months)
