"""Street Manager's archives as newline-delimited JSON chunks: members read forward from the zip,
joined into chunks, handed across threads to the parser."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from civic_pipelines.core.zipstream import ZipErrors, ZipStream
from civic_pipelines.sources.street_manager.contract import ArchiveCorrupt, ArchiveTruncated

CHUNK_BYTES = 32 << 20  # JSON text per parsed chunk (~20k permit events); one record batch each
QUEUE_CHUNKS = 2  # chunks unzipped ahead of the parser


# ---------------------------------------------------------------- members joined into chunks

# DfT's archives are read with the project's one forward zip reader; its errors are the block's.
ARCHIVE_ERRORS = ZipErrors(truncated=ArchiveTruncated, corrupt=ArchiveCorrupt, unsupported=ArchiveCorrupt)


@dataclass
class Chunk:
    """Members joined into newline-delimited JSON: line i is member ``names[i]``."""

    names: list[bytes]  # the members' names as stored (decoded on demand: see ``name``)
    text: bytes  # the lines, each ended by b"\n"
    offsets: list[int]  # start of each line, plus the end
    bad: list[tuple[str, bytes, str]] = field(default_factory=list)  # (member, raw, reason)

    def line(self, index: int) -> bytes:
        return self.text[self.offsets[index] : self.offsets[index + 1] - 1]

    def name(self, index: int) -> str:
        return _member_name(self.names[index])


class ZipWalker:
    """The members of an archive (:class:`~civic_pipelines.core.zipstream.ZipStream`, read forward
    from the local headers: DfT's central directory is broken) joined into :class:`Chunk` s."""

    def __init__(self, pieces: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> None:
        self.zip = ZipStream(pieces, ARCHIVE_ERRORS)
        self.chunk_bytes = chunk_bytes
        self.members = 0
        self.skipped_entries = 0

    @property
    def pulled(self) -> int:
        """Bytes taken from the stream so far."""
        return self.zip.pulled

    @property
    def complete(self) -> bool:
        return self.zip.complete

    @property
    def descriptor_members(self) -> int:
        return self.zip.descriptor_members

    def chunks(self) -> Iterator[Chunk]:
        limit = self.chunk_bytes
        names: list[bytes] = []
        lines: list[bytes] = []
        offsets: list[int] = [0]
        bad: list[tuple[str, bytes, str]] = []
        size = 0
        for name, body, reason in self.zip.whole_members():
            if name[-1:] == b"/":  # a folder entry, not an event
                self.skipped_entries += 1
                continue
            self.members += 1
            if reason is None and body[:1] != b"{":
                stripped = body.lstrip()
                if stripped[:1] == b"{":
                    body = stripped
                else:
                    reason = "member is not a JSON object" if stripped else "member is empty"
            if reason is not None:
                bad.append((_member_name(name), body, reason))
                continue
            if b"\n" in body:  # pretty-printed: JSON allows line breaks only as whitespace
                body = body.replace(b"\n", b" ")
            names.append(name)
            lines.append(body)
            size += len(body) + 1
            offsets.append(size)
            if size >= limit:
                yield self._chunk(names, lines, offsets, bad)
                names, lines, offsets, bad, size = [], [], [0], [], 0
        if names or bad:
            yield self._chunk(names, lines, offsets, bad)

    @staticmethod
    def _chunk(names, lines, offsets, bad) -> Chunk:
        lines.append(b"")
        return Chunk(names=names, text=b"\n".join(lines), offsets=offsets, bad=bad)


def _member_name(raw: bytes) -> str:
    # UTF-8 (the names are ASCII in practice; a cp437 name would show replacement characters).
    return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------- parse, type, validate


def pipelined(chunks: Iterator[Chunk], process, cancel=None) -> Iterator:
    """``process(chunk)`` for each chunk, in order, while a thread produces the next ones
    (download and unzip, which hold the GIL, beside the parse and write, which mostly release
    it). At most ``QUEUE_CHUNKS`` chunks wait; an error on either side ends both."""
    handoff: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            handoff.put(error)

    thread = threading.Thread(target=produce, name="street-manager-unzip", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield process(item)
    finally:
        stop.set()
        if thread.is_alive() and cancel is not None:
            cancel()
        while thread.is_alive():  # let the producer see the stop (it never blocks for long)
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
