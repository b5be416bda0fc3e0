"""Street Manager's archives as newline-delimited JSON chunks: members read forward from the zip,
joined into chunks, handed across threads to the parser."""

from __future__ import annotations

import queue
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from civic_pipelines.sources.street_manager.contract import ArchiveCorrupt, ArchiveTruncated

CHUNK_BYTES = 32 << 20  # JSON text per parsed chunk (~20k permit events); one record batch each
QUEUE_CHUNKS = 2  # chunks unzipped ahead of the parser


# ---------------------------------------------------------------- the forward zip reader

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = b"PK\x01\x02"
_END_SIGS = (b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
_DESCRIPTOR_SIG = 0x08074B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")


@dataclass
class Chunk:
    """Members joined into newline-delimited JSON: line i is member ``names[i]``."""

    names: list[bytes]  # the members' names as stored (decoded on demand: see ``name``)
    text: bytes  # the lines, each ended by b"\n"
    offsets: list[int]  # start of each line, plus the end
    bad: list[tuple[str, bytes, str]] = field(default_factory=list)  # (member, raw, reason)

    def line(self, index: int) -> bytes:
        return self.text[self.offsets[index]: self.offsets[index + 1] - 1]

    def name(self, index: int) -> str:
        return _member_name(self.names[index])


class ZipWalker:
    """The members of a zip read strictly forward from its local file headers (the central
    directory is never needed and the DfT's is broken), joined into :class:`Chunk` s."""

    def __init__(self, pieces: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._pieces = self._counted(pieces)
        self.chunk_bytes = chunk_bytes
        self.members = 0
        self.descriptor_members = 0
        self.skipped_entries = 0
        self.pulled = 0  # bytes taken from the stream so far
        self.complete = False

    def _counted(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if piece:
                self.pulled += len(piece)
                yield piece

    def _more(self, buf: bytes, pos: int, need: int) -> tuple[bytes, bool]:
        """``buf[pos:]`` extended to at least ``need`` bytes, and whether it got them (False: the
        stream ended first; the bytes are what was left)."""
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < need:
            piece = next(self._pieces, None)
            if piece is None:
                return b"".join(parts), False
            parts.append(piece)
            have += len(piece)
        return b"".join(parts), True

    def chunks(self) -> Iterator[Chunk]:
        unpack = _LOCAL.unpack_from
        decompress, crc32 = zlib.decompress, zlib.crc32
        limit = self.chunk_bytes
        buf, pos = b"", 0
        names: list[str] = []
        lines: list[bytes] = []
        offsets: list[int] = [0]
        bad: list[tuple[str, bytes, str]] = []
        size = 0
        while True:
            n = len(buf)
            if n - pos < 30:
                buf, enough = self._more(buf, pos, 30)
                pos = 0
                if not enough:
                    if buf[:4] in _END_SIGS or buf[:4] == _CENTRAL_SIG:
                        self.complete = True
                        break
                    raise ArchiveTruncated(
                        f"the archive ends after {self.pulled} bytes and {self.members} members, "
                        "before its central directory: it is truncated")
                continue
            sig, _v, flags, method, _t, _d, crc, csize, usize, name_len, extra_len = unpack(buf, pos)
            start = pos + 30 + name_len + extra_len
            end = start + csize
            if sig == _LOCAL_SIG and method == 8 and not flags & 0x09 and csize != 0xFFFFFFFF and end <= n:
                # The common case, kept short: a deflated member with its sizes in the header.
                name = buf[pos + 30: pos + 30 + name_len]
                pos = end
                try:
                    body = decompress(buf[start:end], -15, usize or 1)
                except zlib.error as error:
                    raise self._damaged(name, f"does not inflate ({error})") from error
                if len(body) != usize or crc32(body) != crc:
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
                reason = None
            elif sig != _LOCAL_SIG:
                head = buf[pos:pos + 4]
                if head == _CENTRAL_SIG or head in _END_SIGS:
                    self.complete = True
                    break
                raise ArchiveCorrupt(f"unexpected bytes {head!r} at offset {self.pulled - n + pos} after "
                                     f"{self.members} members: neither a member nor the central directory")
            elif flags & 0x08:  # sizes after the data: inflate until the deflate stream ends
                if start > n:
                    buf, enough = self._more(buf, pos, start - pos)
                    pos = 0
                    if not enough:
                        raise self._cut()
                    continue
                name = buf[pos + 30: pos + 30 + name_len]
                extra = buf[pos + 30 + name_len: start]
                body, buf, pos, reason = self._descriptor_member(buf, start, method, name, extra)
                self.descriptor_members += 1
            else:
                if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
                    if start > n:
                        buf, enough = self._more(buf, pos, start - pos)
                        pos = 0
                        if not enough:
                            raise self._cut()
                        continue
                    sizes = _zip64_sizes(buf[pos + 30 + name_len: start])
                    if sizes:
                        usize, csize = sizes
                    end = start + csize
                if end > n:
                    buf, enough = self._more(buf, pos, end - pos)
                    pos = 0
                    if not enough:
                        raise self._cut()
                    continue
                name = buf[pos + 30: pos + 30 + name_len]
                reason = None
                body = b""
                if flags & 0x01:
                    reason = "member is encrypted"
                elif method == 8:
                    try:
                        body = decompress(buf[start:end], -15, usize or 1)
                    except zlib.error as error:
                        raise self._damaged(name, f"does not inflate ({error})") from error
                elif method == 0:
                    body = buf[start:end]
                else:
                    reason = f"member uses compression method {method}"
                if reason is None and (len(body) != usize or crc32(body) != crc):
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
                pos = end
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

    def _damaged(self, name: bytes, what: str) -> ArchiveCorrupt:
        # Damaged bytes are not a bad record: the event is lost, so landing the rest would land a
        # partial month that looks whole. The block fails; the previous landing stays.
        return ArchiveCorrupt(f"member {self.members + 1} ({_member_name(name)}) {what}: the archive's bytes are "
                              f"damaged (after {self.pulled} bytes); the month is not landed")

    def _cut(self) -> ArchiveTruncated:
        return ArchiveTruncated(f"the archive ends inside member {self.members + 1} (after {self.members} whole "
                                f"members, {self.pulled} bytes), before its central directory: it is truncated")

    @staticmethod
    def _chunk(names, lines, offsets, bad) -> Chunk:
        lines.append(b"")
        return Chunk(names=names, text=b"\n".join(lines), offsets=offsets, bad=bad)

    def _descriptor_member(self, buf: bytes, start: int, method: int, name: str, extra: bytes):
        """Inflate a member whose sizes follow its data; returns (body, buffer, position, reason)."""
        name = _member_name(name)
        if method != 8:
            raise ArchiveCorrupt(f"member {name} is stored with its size after the data: it cannot be read forward")
        inflater = zlib.decompressobj(-15)
        out = []
        data = buf[start:]
        while True:
            try:
                out.append(inflater.decompress(data))
            except zlib.error as error:
                raise ArchiveCorrupt(f"member {name} does not inflate ({error}) and gives no size to skip it") from error
            if inflater.eof:
                break
            data = next(self._pieces, None)
            if data is None:
                raise self._cut()
        rest = inflater.unused_data
        zip64 = _zip64_sizes(extra) is not None
        need = 4 + (16 if zip64 else 8) + 4
        while len(rest) < need:
            piece = next(self._pieces, None)
            if piece is None:
                if len(rest) >= need - 4 and rest[:4] != b"PK\x07\x08":
                    break
                raise self._cut()
            rest += piece
        if struct.unpack_from("<I", rest, 0)[0] == _DESCRIPTOR_SIG:
            rest = rest[4:]
        crc = struct.unpack_from("<I", rest, 0)[0]
        usize = struct.unpack_from("<Q" if zip64 else "<I", rest, 4 + (8 if zip64 else 4))[0]
        rest = rest[4 + (16 if zip64 else 8):]
        body = b"".join(out)
        if len(body) != usize or zlib.crc32(body) != crc:
            raise ArchiveCorrupt(f"member {name} fails its CRC-32/size check ({len(body)} bytes, expected {usize}): "
                                 "the archive's bytes are damaged; the month is not landed")
        return body, rest, 0, None


def _member_name(raw: bytes) -> str:
    # UTF-8 (the names are ASCII in practice; a cp437 name would show replacement characters).
    return raw.decode("utf-8", "replace")


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        if tag == 0x0001 and size >= 16:
            return struct.unpack_from("<QQ", extra, at + 4)
        at += 4 + size
    return None


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
