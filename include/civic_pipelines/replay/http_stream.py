"""HEAD requests and streamed bodies for the replay server, added per server instance.

The core (``server.py``) sends every body as one ``bytes`` and has no ``HEAD``. Archives of a
gigabyte need both: :func:`enable_streaming` swaps the server's request handler class for a
subclass that answers ``HEAD`` (the headers a ``GET`` would send, ``Content-Length`` included,
and no body, for every route that lists ``"HEAD"`` among its methods) and sends a
:class:`StreamedResponse` piece by piece. Everything else goes through the core unchanged, and
the core's ``reset_mid_page`` fault still applies: half the announced length, then a TCP reset.

:func:`parse_range` reads a ``Range: bytes=a-b`` header, and :func:`range_answer` (streamed bodies)
or :func:`bytes_answer` (bodies in memory) answer it, for every emulator that serves archives (CKAN,
SRWR, Street Manager), so a download cut short resumes as it does against the real hosts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from civic_pipelines.replay.server import Response, reset_connection


def _no_pieces() -> Iterable[bytes]:
    return ()


@dataclass
class StreamedResponse(Response):
    """A response whose body is ``length`` bytes produced by ``pieces()`` (called once per send)."""

    length: int = 0
    pieces: Callable[[], Iterable[bytes]] = field(default=_no_pieces)


def enable_streaming(server) -> None:
    """Give ``server`` (a :class:`~civic_pipelines.replay.server.ReplayServer`) HEAD and streamed bodies."""
    httpd = server._httpd
    base = httpd.RequestHandlerClass
    if getattr(base, "streams_bodies", False):
        return

    class StreamingHandler(base):
        streams_bodies = True

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("HEAD")

        def _send(self, response: Response) -> None:
            head = self.command == "HEAD"
            streamed = isinstance(response, StreamedResponse)
            if not streamed and not head:
                return super()._send(response)
            length = response.length if streamed else len(response.body)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if head:
                return
            if not streamed:
                self.wfile.write(response.body)
                return
            budget = length // 2 if response.abort_half else length
            try:
                for piece in response.pieces():
                    if len(piece) >= budget:
                        self.wfile.write(piece[:budget])
                        budget = 0
                        break
                    self.wfile.write(piece)
                    budget -= len(piece)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if response.abort_half:
                reset_connection(self)

    httpd.RequestHandlerClass = StreamingHandler


# ---------------------------------------------------------------- ranges (every archive emulator resumes)

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def if_range_ok(if_range: str | None, etag: str, date_matches: Callable[[str], bool]) -> bool:
    """Whether a range request's ``If-Range`` (an entity tag, or a date ``date_matches`` judges)
    still names the current body; no header: it does."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    return date_matches(value)


def parse_range(value: str, length: int):
    """One ``bytes=a-b`` range: ``(start, end)`` inclusive, ``"unsatisfiable"``, or None to
    ignore the header (several ranges or bad syntax: the whole body is sent)."""
    match = _RANGE_RE.match(value)
    if not match or (match.group(1) == "" and match.group(2) == ""):
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, length - n), length - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= length:
        return "unsatisfiable"
    end = int(last) if last else length - 1
    return start, min(end, length - 1)


def range_answer(
    range_header: str | None, size: int, headers: dict, content_type: str, part: Callable[[int, int, dict], Response]
) -> Response | None:
    """The answer to a ``Range`` header on a body of ``size`` bytes: a 416 past the end, or
    ``part(start, end, headers)`` (the 206, ``end`` inclusive, its headers given ``Content-Range``);
    None when there is no header or it is one to ignore, so the caller sends the whole body."""
    if not range_header:
        return None
    parsed = parse_range(range_header, size)
    if parsed == "unsatisfiable":
        return Response(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, content_type=content_type)
    if parsed is None:
        return None
    start, end = parsed
    return part(start, end, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"})


def bytes_answer(data: bytes, headers: dict, content_type: str, range_header: str | None) -> Response:
    """``data`` whole (a 200 data page, which ``reset_mid_page`` may cut) or the part a ``Range``
    header asks for (206, or 416)."""
    partial = range_answer(
        range_header,
        len(data),
        headers,
        content_type,
        lambda start, end, part_headers: Response(206, data[start : end + 1], part_headers, content_type=content_type),
    )
    if partial is not None:
        return partial
    return Response(200, data, headers, content_type=content_type, data_page=True)
