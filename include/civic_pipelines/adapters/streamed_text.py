"""Text streamed from a download's byte pieces, never held whole: a look at the first bytes (is it
a zip?), decoding to UTF-8 in pieces, and a file object Arrow's streaming CSV reader can read.

Used by the CKAN adapter and by SRWR's export files, both of which read a CSV (often inside a zip)
as it arrives.

**Decoding.** The bytes are decoded with the given encoding (Open Data Toronto: ``latin-1``; every
byte is a character, so nothing fails) and re-encoded as UTF-8 for Arrow; pure-ASCII pieces pass
through untouched. A leading UTF-8 byte order mark is removed and then declares the file UTF-8
(decoded with replacement characters for invalid bytes).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterable, Iterator


def first_bytes(pieces: Iterable[bytes], count: int) -> tuple[bytes, Iterator[bytes]]:
    """At least ``count`` leading bytes (fewer when the body is shorter) and the pieces after them."""
    pieces = iter(pieces)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= count:
            break
    return head, pieces


def chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """``first`` then ``rest``, empty pieces left out."""
    if first:
        yield first
    for piece in rest:
        if piece:
            yield piece


class Utf8Stream:
    """Decode byte pieces with ``encoding`` (a leading UTF-8 BOM switches to UTF-8 and is
    dropped) and yield UTF-8; ASCII pieces pass through unchanged."""

    def __init__(self, pieces: Iterable[bytes], encoding: str) -> None:
        self._pieces = pieces
        self.encoding = encoding
        self.bytes_in = 0
        self.bom = False

    def __iter__(self) -> Iterator[bytes]:
        head, pieces = first_bytes(self._pieces, 3)
        if head.startswith(codecs.BOM_UTF8):
            head = head[3:]
            self.encoding = "utf-8"
            self.bom = True
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        for piece in chain_first(head, pieces):
            self.bytes_in += len(piece)
            if piece.isascii() and not decoder.getstate()[0]:
                yield piece
            else:
                yield decoder.decode(piece).encode("utf-8")
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail.encode("utf-8")


class PiecesReader(io.RawIOBase):
    """A readable file over byte pieces, for Arrow; the header line is taken off first."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        super().__init__()
        self._pieces = iter(pieces)
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        if self._done:
            return False
        for piece in self._pieces:
            if piece:
                self._buffer += piece
                return True
        self._done = True
        return False

    def at_end(self) -> bool:
        """Nothing left after what was read (a file that is only its header line)."""
        return not self._buffer and not self._more()

    def header_line(self) -> bytes:
        while b"\n" not in self._buffer:
            if not self._more():
                line, self._buffer = self._buffer, b""
                return line
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def read(self, size: int = -1) -> bytes:
        # Fill the request (up to Arrow's block size) from as many pieces as it takes.
        while size < 0 or len(self._buffer) < size:
            if not self._more():
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)
