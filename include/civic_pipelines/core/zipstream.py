"""One forward zip reader for every source that downloads archives (Street Manager, SRWR, CKAN).

A zip is read strictly forward through its local file headers as the bytes arrive, the way
``unzip`` reads a pipe: the central directory at the end is never needed (DfT's is broken), and
nothing is written to disk. Each member is inflated (deflate) or copied (stored) and checked
against its CRC-32 and size, from the local header, from the zip64 extra field, or from the data
descriptor that follows the data when the writer streamed it (then the deflate stream's own end
delimits the member). The archive is complete when the central directory's first record follows
the last member.

Two ways to read, one parser:

* :meth:`ZipStream.whole_members`: ``(raw name, body, problem)`` per member, for archives of a
  million small members (Street Manager's events); the common case (deflate, sizes in the
  header) is one ``zlib.decompress`` of a slice of the buffer, with no object per member.
* :meth:`ZipStream.members` / :class:`FirstMatch`: a member's bytes in pieces of at most
  ``piece_size``, for one large member (a CSV of a year) that must never be held whole.

Errors are the caller's: :class:`ZipErrors` names the exception class raised for a stream that
ends before the central directory (*truncated*), for damaged bytes (*corrupt*: a member that does
not inflate or fails its CRC-32 or size check, or bytes that are neither a member nor the central
directory) and for a member that cannot be read forward (*unsupported*). Street Manager fails the
block with its ``Archive*`` errors; CKAN and SRWR raise ``TransientBodyError`` for damage, so the
download is repeated.

**Why not the ``stream-unzip`` library.** It reads the same way (local headers, data descriptors,
zip64), but three things rule it out here (figures from 2026-12-07, on two cores shared with other
work at a load average of 20 to 38, so wall times are 2-10x a quiet machine's and vary run to run).

* *Speed.* ``bench/street_manager.py --events 200000`` (a permit month of 200,000 events, 167.7
  MB), one run each, the block's reader swapped for ``stream-unzip`` 0.0.101: ceiling 116.2 s and
  block 250.8 s, against 40.8-93.0 s and 52.6-126.1 s for the previous reader and 61.1-101.0 s and
  80.8-138.5 s for this module in three back-to-back pairs of the same hour (previous / this
  module, ceiling and block: 40.8 / 61.1 and 52.6 / 80.8 s; 93.0 / 101.0 and 112.5 / 121.7 s;
  84.5 / 69.5 and 126.1 / 138.5 s: the load, not the reader, moves them). On the unzip step alone (20,000 members, every
  member read whole, best of three, CPU seconds so the load does not count): previous reader 0.25
  s, this module 0.26 s, ``stream-unzip`` 0.71 s, 2.7x, about 23 us more per member (it builds a
  dozen closures and generators and a flag tuple for each), so about 25 s more CPU for a real
  permit month's 1.1 million members, in the thread that feeds the parser. The issue allowed 10 %.
* *Bytes.* It cannot stop at the central directory: it drains the stream to its end (the bench
  block read 167.7 MB instead of 153.1 MB; about 80 MB more for a real permit month), although the
  broken directory is never needed.
* *Bad members.* It raises on an encrypted member or one of another method, so a reader cannot set
  it aside and go on (Street Manager quarantines those).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

LOCAL_SIGNATURE = b"PK\x03\x04"
CENTRAL_SIGNATURE = b"PK\x01\x02"
END_SIGNATURES = (b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")  # end record, zip64 end record and locator
DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_LOCAL_SIG = 0x04034B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
DEFLATED, STORED = 8, 0
PIECE = 1 << 20  # inflated bytes per piece when a member is streamed


class ZipError(RuntimeError):
    """The zip cannot be read whole (the default class of every error below)."""


class ZipTruncated(ZipError):
    """The stream ends before the central directory."""


class ZipCorrupt(ZipError):
    """Damaged bytes: a member that does not inflate or fails its check, or bytes that are neither
    a member nor the central directory."""


class ZipUnsupported(ZipError):
    """A member that cannot be read forward (stored or encrypted with its size after the data), or,
    when streamed, one that is encrypted or compressed with a method other than deflate."""


@dataclass(frozen=True)
class ZipErrors:
    """The exception classes a caller wants raised (each is called with the message)."""

    truncated: type[Exception] = ZipTruncated
    corrupt: type[Exception] = ZipCorrupt
    unsupported: type[Exception] = ZipUnsupported


def zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    """``(uncompressed, compressed)`` from a local header's zip64 extra field, or None."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        if tag == 0x0001 and size >= 16:
            return struct.unpack_from("<QQ", extra, at + 4)
        at += 4 + size
    return None


def member_name(raw: bytes, flags: int = FLAG_UTF8) -> str:
    """A member's name: UTF-8 when the header says so (or by default), else code page 437."""
    return raw.decode("utf-8", "replace") if flags & FLAG_UTF8 else raw.decode("cp437")


def problem_of(flags: int, method: int) -> str | None:
    """Why a member's bytes cannot be read (encrypted, another method), or None."""
    if flags & FLAG_ENCRYPTED:
        return "member is encrypted"
    if method not in (DEFLATED, STORED):
        return f"member uses compression method {method}"
    return None


class ZipStream:
    """The members of a zip read strictly forward from byte pieces (see the module docstring).

    ``pulled``: bytes taken from the stream so far; ``entries``: members whose header was read;
    ``descriptor_members``: members whose sizes followed their data; ``complete``: the central
    directory was reached (the rest of the stream is not read)."""

    def __init__(self, pieces: Iterable[bytes], errors: ZipErrors = ZipErrors()) -> None:
        self._pieces = self._counted(pieces)
        self.errors = errors
        self.pulled = 0
        self.entries = 0
        self.descriptor_members = 0
        self.complete = False
        self._buf = b""
        self._pos = 0

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

    # -- errors

    def _ended(self, buf: bytes) -> None:
        """The stream ended between members: complete at the central directory, else truncated."""
        if buf[:4] in END_SIGNATURES or buf[:4] == CENTRAL_SIGNATURE:
            self.complete = True
            return
        raise self.errors.truncated(
            f"the archive ends after {self.pulled} bytes and {self.entries} members, before its central "
            "directory: it is truncated"
        )

    def _stray(self, buf: bytes, pos: int):
        head = buf[pos : pos + 4]
        return self.errors.corrupt(
            f"unexpected bytes {head!r} at offset {self.pulled - len(buf) + pos} after {self.entries} members: "
            "neither a member nor the central directory"
        )

    def _cut(self, name: bytes | None = None):
        which = f"member {self.entries + 1}" + (f" ({member_name(name)})" if name is not None else "")
        return self.errors.truncated(
            f"the archive is cut short inside {which} (after {self.entries} whole members, {self.pulled} bytes), "
            "before its central directory: it is truncated"
        )

    def _damaged(self, name: bytes, what: str):
        # Damaged bytes are not a bad record: the member's content is lost.
        return self.errors.corrupt(
            f"member {self.entries + 1} ({member_name(name)}) {what}: the archive's bytes are "
            f"damaged (after {self.pulled} bytes)"
        )

    def _unreadable(self, name: bytes, what: str):
        return self.errors.unsupported(f"member {member_name(name)} {what}: it cannot be read forward")

    # -- many small members, each whole

    def whole_members(self) -> Iterator[tuple[bytes, bytes, str | None]]:
        """``(raw name, body, problem)`` per member, in archive order; ``problem`` (encrypted,
        another method) leaves ``body`` empty. Folder entries are members too (names end in /)."""
        unpack = _LOCAL.unpack_from
        decompress, crc32 = zlib.decompress, zlib.crc32
        buf, pos = self._buf, self._pos
        while True:
            n = len(buf)
            if n - pos < 30:
                buf, enough = self._more(buf, pos, 30)
                pos = 0
                if not enough:
                    self._buf, self._pos = buf, 0
                    self._ended(buf)
                    return
                continue
            sig, _v, flags, method, _t, _d, crc, csize, usize, name_len, extra_len = unpack(buf, pos)
            start = pos + 30 + name_len + extra_len
            end = start + csize
            if sig == _LOCAL_SIG and method == 8 and not flags & 0x09 and end <= n and csize != 0xFFFFFFFF != usize:
                # The common case, kept short: a deflated member with its sizes in the header.
                name = buf[pos + 30 : pos + 30 + name_len]
                pos = end
                try:
                    body = decompress(buf[start:end], -15, usize or 1)
                except zlib.error as error:
                    raise self._damaged(name, f"does not inflate ({error})") from error
                if len(body) != usize or crc32(body) != crc:
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
                self.entries += 1
                yield name, body, None
                continue
            if sig != _LOCAL_SIG:
                head = buf[pos : pos + 4]
                if head == CENTRAL_SIGNATURE or head in END_SIGNATURES:
                    self.complete = True
                    self._buf, self._pos = buf, pos
                    return
                raise self._stray(buf, pos)
            if start > n:
                buf, enough = self._more(buf, pos, start - pos)
                pos = 0
                if not enough:
                    raise self._cut()
                continue
            name = buf[pos + 30 : pos + 30 + name_len]
            extra = buf[pos + 30 + name_len : start]
            if flags & FLAG_DESCRIPTOR:  # sizes after the data: inflate until the deflate stream ends
                self._buf, self._pos = buf, start
                body = b"".join(self._body(name, flags, method, crc, csize, usize, extra, 1 << 30))
                buf, pos = self._buf, self._pos
                self.entries += 1
                yield name, body, None
                continue
            if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
                sizes = zip64_sizes(extra)
                if sizes:
                    usize, csize = sizes
                end = start + csize
            if end > n:
                buf, enough = self._more(buf, pos, end - pos)
                pos = 0
                if not enough:
                    raise self._cut(name)
                continue
            problem = problem_of(flags, method)
            body = b""
            if problem is None:
                if method == DEFLATED:
                    try:
                        body = decompress(buf[start:end], -15, usize or 1)
                    except zlib.error as error:
                        raise self._damaged(name, f"does not inflate ({error})") from error
                else:
                    body = buf[start:end]
                if len(body) != usize or crc32(body) != crc:
                    raise self._damaged(name, f"fails its CRC-32/size check ({len(body)} bytes, expected {usize})")
            pos = end
            self.entries += 1
            yield name, body, problem

    # -- few large members, each in pieces

    def members(self, piece_size: int = PIECE) -> Iterator[StreamedMember]:
        """Each member as a :class:`StreamedMember`, in archive order. A member the caller does
        not read to its end is read (and checked) before the next one is given."""
        while True:
            buf, enough = self._more(self._buf, self._pos, 30)
            self._buf, self._pos = buf, 0
            head = buf[:4]
            if head == CENTRAL_SIGNATURE or head in END_SIGNATURES:
                self.complete = True
                return
            if not enough:
                self._ended(buf)  # raises: the stream ended before the central directory
            if head != LOCAL_SIGNATURE:
                raise self._stray(buf, 0)
            _sig, _v, flags, method, _t, _d, crc, csize, usize, name_len, extra_len = _LOCAL.unpack_from(buf, 0)
            start = 30 + name_len + extra_len
            buf, enough = self._more(buf, 0, start)
            if not enough:
                raise self._cut()
            name, extra = buf[30 : 30 + name_len], buf[30 + name_len : start]
            self._buf, self._pos = buf, start
            member = StreamedMember(self, name, flags, method, crc, csize, usize, extra, piece_size)
            yield member
            for _ in member:  # not read (or not to its end): read it to check it and reach the next
                pass
            self.entries += 1

    def _body(
        self, name: bytes, flags: int, method: int, crc: int, csize: int, usize: int, extra: bytes, piece_size: int
    ) -> Iterator[bytes]:
        """The member's bytes from ``self._buf[self._pos:]`` on, checked at its end; leaves the
        buffer just after the member (and its data descriptor)."""
        descriptor = bool(flags & FLAG_DESCRIPTOR)
        sizes = zip64_sizes(extra)
        if not descriptor and sizes and (csize == 0xFFFFFFFF or usize == 0xFFFFFFFF):
            usize, csize = sizes
        if descriptor and (method != DEFLATED or flags & FLAG_ENCRYPTED):
            raise self._unreadable(name, "is stored or encrypted with its size after the data")
        problem = problem_of(flags, method)
        if problem is not None:
            raise self.errors.unsupported(
                f"zip {problem} ({member_name(name, flags)}): only deflate and stored members are read"
            )
        got_crc, got_size = 0, 0
        data = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        if method == DEFLATED:
            inflater = zlib.decompressobj(-15)
            while True:
                if not data:
                    data = next(self._pieces, None)
                    if data is None:
                        raise self._cut(name)
                try:
                    out = inflater.decompress(data, piece_size)
                except zlib.error as error:
                    raise self._damaged(name, f"does not inflate ({error})") from error
                data = inflater.unconsumed_tail
                if out:
                    got_crc = zlib.crc32(out, got_crc)
                    got_size += len(out)
                    yield out
                if inflater.eof:
                    break
            rest = inflater.unused_data
        else:
            left = csize
            while left:
                if not data:
                    data = next(self._pieces, None)
                    if data is None:
                        raise self._cut(name)
                out, data = data[: min(left, piece_size)], data[min(left, piece_size) :]
                left -= len(out)
                got_crc = zlib.crc32(out, got_crc)
                got_size += len(out)
                yield out
            rest = data
        if descriptor:
            self.descriptor_members += 1
            crc, usize, rest = self._descriptor(rest, sizes is not None, name)
        if got_size != usize or got_crc != crc:
            raise self._damaged(name, f"fails its CRC-32/size check ({got_size} bytes, expected {usize})")
        self._buf, self._pos = rest, 0

    def _descriptor(self, rest: bytes, zip64: bool, name: bytes) -> tuple[int, int, bytes]:
        """``(crc, uncompressed size, bytes after it)`` of the data descriptor at ``rest``'s start
        (its signature is optional; zip64 sizes when the header had a zip64 extra field)."""
        need = 4 + (16 if zip64 else 8) + 4
        while len(rest) < need:
            piece = next(self._pieces, None)
            if piece is None:
                if len(rest) >= need - 4 and rest[:4] != DESCRIPTOR_SIGNATURE:
                    break
                raise self._cut(name)
            rest += piece
        if rest[:4] == DESCRIPTOR_SIGNATURE:
            rest = rest[4:]
        crc = struct.unpack_from("<I", rest, 0)[0]
        usize = struct.unpack_from("<Q" if zip64 else "<I", rest, 4 + (8 if zip64 else 4))[0]
        return crc, usize, rest[4 + (16 if zip64 else 8) :]


class StreamedMember:
    """One member of a :class:`ZipStream`: ``name`` (decoded), ``raw_name``, ``size`` (bytes read
    so far) and its bytes by iterating it, once, in pieces of at most ``piece_size``."""

    def __init__(
        self,
        stream: ZipStream,
        raw_name: bytes,
        flags: int,
        method: int,
        crc: int,
        csize: int,
        usize: int,
        extra: bytes,
        piece_size: int,
    ) -> None:
        self.raw_name = raw_name
        self.name = member_name(raw_name, flags)
        self.size = 0
        self._body = stream._body(raw_name, flags, method, crc, csize, usize, extra, piece_size)

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._body:
            self.size += len(piece)
            yield piece


class FirstMatch:
    """The bytes of the first member whose name matches ``pattern`` (a regex, searched), in
    pieces; the members before it are read, checked and dropped, and the rest of the archive is
    not read. ``name``, ``skipped`` (the names before it) and ``size`` tell what was read;
    ``no_match`` is the exception class raised when no member matches."""

    def __init__(
        self,
        pieces: Iterable[bytes],
        pattern: str,
        errors: ZipErrors = ZipErrors(),
        no_match: type[Exception] = ZipError,
        piece_size: int = PIECE,
    ) -> None:
        self._stream = ZipStream(pieces, errors)
        self._pattern = re.compile(pattern)
        self._no_match = no_match
        self._piece_size = piece_size
        self.name: str | None = None
        self.skipped: list[str] = []
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for member in self._stream.members(self._piece_size):
            if self.name is None and self._pattern.search(member.name):
                self.name = member.name
                yield from member
                self.size = member.size
                return  # the rest of the archive is not needed
            self.skipped.append(member.name)
        raise self._no_match(
            f"no zip member matches {self._pattern.pattern!r} (members: {', '.join(self.skipped) or 'none'})"
        )
