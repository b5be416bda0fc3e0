"""One writer per block: the lock ``run_block`` holds from reading the previous manifest to the commit.

Two runs of the same block at once (a scheduled run and a manual trigger, or two manual triggers)
would both read the same previous manifest, both fetch the month and both rename their files into
place: the data would still land once (the last rename wins), but the work is done twice and the
manifest's ``rows_changed``/``changed_since_previous`` describe the wrong predecessor. With the lock
the second run waits; when it gets the lock it reads the manifest the first one wrote and skips
(unchanged watermark), or fails after ``CIVIC_BLOCK_LOCK_TIMEOUT`` seconds (default 1800) with a
:class:`BlockLockTimeout` naming the block and the holder (pid, host, since).

**Local lakes** (a folder, shared by every process on the machine or on a POSIX network file system
that supports ``flock``): ``<lake>/.locks/<source>[/<part>]/<month>.lock``, held with
``fcntl.flock``. The kernel releases the lock when its holder dies, even by SIGKILL, so a crashed run
never leaves the block locked. The file holds the holder's pid, host and start time for the error
message; it stays after the run (an empty lock file is harmless and deleting it would race).

**Object-store lakes** (``s3://``...): no lock. S3 has no lease that expires when its holder dies
(a conditional put could create a lock object, but a killed run would leave it in place until an
expiry that a long block could outlive). There the orchestration is the guard: Airflow's
``max_active_runs`` and the per-source pool bound how many runs touch a source, and the block is
still replaced whole (temporary objects, manifest last), so two overlapping writers cost work, not
correctness. Run one scheduler per lake.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
DEFAULT_TIMEOUT = 1800.0  # seconds a second run of a block waits for the first one
POLL_SECONDS = 0.2
# Test-only failpoint (tests/test_concurrent_blocks.py): a folder where the lock records "held-<pid>"
# and "waiting-<pid>", and where the holder waits for a "release" file before going on.
TEST_HOLD_DIR = "CIVIC_TEST_BLOCK_LOCK_DIR"


@dataclass
class Held:
    """What ``block_lock`` yields: whether a real lock is held, and how long it took to get it when
    another run had it (``waited_seconds`` is None when the lock was free)."""

    locked: bool
    waited_seconds: float | None = None


class BlockLockTimeout(RuntimeError):
    """Another run holds the block; the message names the block and the holder."""


def block_name(source: str, month: str, part: str | None = None) -> str:
    return f"{source} {part} {month}" if part else f"{source} {month}"


def lock_path(lake: str, source: str, month: str, part: str | None = None) -> Path | None:
    """The lock file of a block, or None for a lake that is not a local folder."""
    if "://" in lake and not lake.startswith("file://"):
        return None
    root = Path(lake.removeprefix("file://"))
    return root / LOCK_DIR / source / (part or "") / f"{month}.lock"


def timeout_seconds() -> float:
    value = os.environ.get("CIVIC_BLOCK_LOCK_TIMEOUT")
    return float(value) if value else DEFAULT_TIMEOUT


def _holder(handle) -> dict:
    try:
        handle.seek(0)
        return json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "an unknown holder"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _test_marker(name: str) -> None:
    folder = os.environ.get(TEST_HOLD_DIR)
    if folder:
        Path(folder, f"{name}-{os.getpid()}").touch()


def _test_wait_for_release() -> None:
    folder = os.environ.get(TEST_HOLD_DIR)
    if not folder:
        return
    deadline = time.monotonic() + 120
    while not Path(folder, "release").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"test failpoint: no release file in {folder} within 120 s")
        time.sleep(0.05)


def _open(path: Path, name: str):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "a+": create if missing, never truncate a holder's record before we hold the lock.
        return open(path, "a+", encoding="utf-8")
    except PermissionError:
        pass
    try:  # made by another user (a container's root, say): flock needs only a read handle
        return open(path, encoding="utf-8")
    except OSError as error:
        log.warning("block %s: cannot open the lock file %s (%s); running without the block lock", name, path, error)
        return None


@contextmanager
def block_lock(lake: str, source: str, month: str, part: str | None = None, timeout: float | None = None):
    """Hold the block's lock for the ``with`` body; wait up to ``timeout`` seconds for it.

    Yields :class:`Held`: ``locked`` is False where no lock exists (object stores).
    """
    path = lock_path(lake, source, month, part)
    if path is None:
        log.debug(
            "%s: %s is not a local folder; no block lock (see civic_pipelines.block_lock)",
            block_name(source, month, part),
            lake.split("://", 1)[0] + "://",
        )
        yield Held(locked=False)
        return
    import fcntl

    timeout = timeout_seconds() if timeout is None else timeout
    name = block_name(source, month, part)
    handle = _open(path, name)
    if handle is None:
        yield Held(locked=False)
        return
    with handle:
        started = time.monotonic()
        next_note = started
        contended = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                contended = True
                waited = time.monotonic() - started
                holder = _holder(handle)
                if waited >= timeout:
                    raise BlockLockTimeout(
                        f"block {name} is being written by another run ({_describe(holder)}); gave up after "
                        f"waiting {waited:.0f} s (CIVIC_BLOCK_LOCK_TIMEOUT={timeout:g}); lock file {path}"
                    ) from None
                if time.monotonic() >= next_note:
                    if next_note == started:
                        _test_marker("waiting")
                    log.info(
                        "block %s is being written by %s: waiting (%.0f of %g s)",
                        name,
                        _describe(holder),
                        waited,
                        timeout,
                    )
                    next_note = time.monotonic() + 60
                time.sleep(POLL_SECONDS)
        waited = time.monotonic() - started
        writable = handle.writable()
        try:
            if writable:
                record = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                    "block": name,
                }
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(record))
                handle.flush()
            if contended:
                log.info("block %s: lock acquired after waiting %.1f s", name, waited)
            _test_marker("held")
            _test_wait_for_release()
            yield Held(locked=True, waited_seconds=round(waited, 3) if contended else None)
        finally:
            if writable:
                handle.seek(0)
                handle.truncate()
                handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
