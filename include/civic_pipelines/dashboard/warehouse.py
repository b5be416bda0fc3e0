"""How the dashboard reads the DuckDB warehouse without ever getting in a pipeline's way.

DuckDB allows one writer *or* any number of readers per file, across processes, through a file
lock: a read-only connection takes a shared lock, and while any process holds it a dbt task's
read-write open fails ("Could not set lock on file"). A dashboard that opened the warehouse
itself, even read-only and for a few milliseconds per request, could therefore fail a dbt task
that starts at the wrong moment. So the dashboard never opens the warehouse file with DuckDB:

* it copies the file (plain reads, no lock taken) into a private snapshot when the file has
  changed and no writer holds the lock, checks afterwards that nothing wrote to it meanwhile (same
  size, mtime and inode; still no lock), and opens the *copy* read-only;
* each request gets its own cursor on the current snapshot (cursors on one DuckDB instance are
  safe to use from several threads);
* while a writer holds the lock the last snapshot keeps being served, flagged ``stale`` with its
  time ("warehouse busy"); with no snapshot yet, ``WarehouseBusy`` is raised: the pages show an
  empty-state panel with that message (HTTP 200) and the JSON endpoints answer 503.

The lock test uses ``F_OFD_GETLK`` (or ``F_GETLK``), which asks whether a lock *would* conflict
without taking one. One caveat of POSIX locks: closing any descriptor of a file drops every lock
the *same process* holds on it, so this reader must not run inside a process that writes the
warehouse with DuckDB (the Airflow API server and ``civic dashboard`` never do; tests build the
warehouse in a child process).

A MotherDuck warehouse (``md:``) has no file lock: it is read through a read-only connection.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: the lock cannot be asked about (see writer_holds_lock)
    fcntl = None

log = logging.getLogger(__name__)


class WarehouseBusy(RuntimeError):
    """A writer (a dbt run) holds the warehouse and no earlier snapshot can be served."""


class WarehouseMissing(RuntimeError):
    """No warehouse file yet: nothing has been built."""


@dataclass
class Snapshot:
    path: Path | None
    source_key: tuple
    taken_at: datetime
    con: object  # duckdb.DuckDBPyConnection
    tables: frozenset[str]
    copy_seconds: float = 0.0
    readers: int = 0  # requests reading it now
    retired: bool = False  # replaced by a newer snapshot: closed when its last reader is done


@dataclass
class Reading:
    """What one request reads through: a cursor, the tables present, and how fresh they are."""

    cursor: object
    tables: frozenset[str]
    taken_at: datetime
    stale: bool = False  # a writer holds the warehouse now: this is the last consistent copy
    notes: list[str] = field(default_factory=list)

    def has(self, *tables: str) -> bool:
        return all(t in self.tables for t in tables)


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    wal = path.with_name(path.name + ".wal")
    try:
        wst = wal.stat()
        wal_key = (wst.st_size, wst.st_mtime_ns)
    except FileNotFoundError:
        wal_key = None
    return (st.st_ino, st.st_size, st.st_mtime_ns, wal_key)


# struct flock on Linux/glibc 64-bit: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
_FLOCK = "hhqqi4x"


def writer_holds_lock(path: Path) -> bool:
    """Whether another process holds a DuckDB write lock on the file (asked, not taken). Without
    fcntl (not POSIX) the answer is "no": a copy taken during a write is then caught by the
    file's changed size or mtime, or by DuckDB refusing to open it."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        command = getattr(fcntl, "F_OFD_GETLK", fcntl.F_GETLK)
        # "would a read lock conflict?" conflicts only with a write lock, which only a writer holds
        request = struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(fd, command, request)
        except OSError as error:
            if error.errno != errno.EINVAL or command == fcntl.F_GETLK:
                raise
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, request)
        return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def _copy(source: Path, target: Path) -> None:
    """Copy with copy_file_range where the kernel has it (reflinks on CoW file systems)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        try:
            copied = 0
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
            if copied == size:
                return
        except (AttributeError, OSError):
            pass
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst, 1 << 20)


def _remove_orphans() -> None:
    """Snapshot folders of dashboard processes that are gone (killed before their atexit ran)."""
    for folder in Path(tempfile.gettempdir()).glob("civic-dashboard-*-*"):
        try:
            pid = int(folder.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists() and os.name == "posix" and Path("/proc").is_dir():
            shutil.rmtree(folder, ignore_errors=True)


class WarehouseReader:
    """Serves consistent read-only snapshots of one warehouse (see the module docstring)."""

    def __init__(self, warehouse: str, cache_dir: str | None = None):
        self.warehouse = warehouse
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._generation = 0
        self.copies = 0  # snapshots taken (tests read it)

    # -- snapshots ---------------------------------------------------------------------------

    def _dir(self) -> Path:
        if self._cache_dir is None:
            _remove_orphans()
            self._cache_dir = Path(tempfile.mkdtemp(prefix=f"civic-dashboard-{os.getpid()}-"))
            # Close the snapshot's DuckDB connection before the interpreter shuts down: a DuckDB
            # object left to finalisation can abort the process on its way out.
            atexit.register(self._shutdown, self._cache_dir)
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        return self._cache_dir

    def _take_snapshot(self, source: Path, key: tuple) -> Snapshot | None:
        """Copy and open; None when a writer touched the file during the copy."""
        import duckdb

        started = time.perf_counter()
        self._generation += 1
        target = self._dir() / f"snapshot-{os.getpid()}-{self._generation}.duckdb"
        _copy(source, target)
        wal = source.with_name(source.name + ".wal")
        if wal.exists():  # left by a writer that stopped without a checkpoint: DuckDB replays it
            try:
                _copy(wal, target.with_name(target.name + ".wal"))
            except FileNotFoundError:
                pass
        if _file_key(source) != key or writer_holds_lock(source):
            self._discard(target)
            return None
        try:
            con = duckdb.connect(str(target), read_only=True)
        except duckdb.Error as error:  # a torn copy the checks above did not catch
            log.warning("warehouse snapshot unreadable (%s); will retry", error)
            self._discard(target)
            return None
        tables = frozenset(
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        )
        self.copies += 1
        return Snapshot(target, key, datetime.now(UTC), con, tables, time.perf_counter() - started)

    @staticmethod
    def _discard(target: Path) -> None:
        for path in (target, target.with_name(target.name + ".wal")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _retire(self, old: Snapshot) -> None:
        # Closing a DuckDB connection closes its cursors too: a snapshot that requests are still
        # reading is closed by the last of them (see read()). Called with self._lock held.
        old.retired = True
        if old.readers:
            return
        try:
            old.con.close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        if old.path is not None:
            self._discard(old.path)

    def _current(self) -> tuple[Snapshot, bool]:
        """The snapshot to read and whether it is stale (a writer holds the warehouse); called
        with self._lock held."""
        source = Path(self.warehouse)
        key = _file_key(source)
        if key is None:
            if self._snapshot is not None:
                return self._snapshot, True
            # the path goes to the log, not to the page's viewers
            log.info("no warehouse at %s yet", source)
            raise WarehouseMissing("no warehouse yet: run a pipeline (or `make demo`) first")
        locked = writer_holds_lock(source)
        if self._snapshot is not None and self._snapshot.source_key == key:
            return self._snapshot, locked
        if not locked:
            fresh = self._take_snapshot(source, key)
            if fresh is not None:
                old, self._snapshot = self._snapshot, fresh
                if old is not None:
                    self._retire(old)
                return fresh, False
        if self._snapshot is not None:
            return self._snapshot, True
        raise WarehouseBusy("the warehouse is busy: a dbt run is writing it; this page fills in when the run ends")

    @contextmanager
    def read(self):
        """A ``Reading`` for one request; raises WarehouseBusy or WarehouseMissing."""
        if self.warehouse.startswith("md:"):
            import duckdb

            con = duckdb.connect(self.warehouse, read_only=True)
            try:
                tables = frozenset(
                    n
                    for (n,) in con.execute(
                        "select table_name from information_schema.tables where table_schema = 'main'"
                    ).fetchall()
                )
                yield Reading(con, tables, datetime.now(UTC))
            finally:
                con.close()
            return
        with self._lock:
            snapshot, stale = self._current()
            snapshot.readers += 1
            cursor = snapshot.con.cursor()
        try:
            yield Reading(cursor, snapshot.tables, snapshot.taken_at, stale=stale)
        finally:
            cursor.close()
            with self._lock:
                snapshot.readers -= 1
                if snapshot.retired and not snapshot.readers:
                    self._retire(snapshot)

    def close(self) -> None:
        with self._lock:
            if self._snapshot is not None:
                self._snapshot.readers = 0
                self._retire(self._snapshot)
                self._snapshot = None

    def _shutdown(self, folder: Path) -> None:
        self.close()
        shutil.rmtree(folder, ignore_errors=True)
