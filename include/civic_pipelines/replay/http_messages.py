"""What the replay server's routes exchange: the request a handler gets, the response it returns,
the route table's entries, and the shared answers (JSON bodies, Socrata-style errors, the core's
HTTP-level faults, a connection reset)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from civic_pipelines.replay.fault_state import Faults, ReplayState


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: str  # raw query string
    params: list[tuple[str, str]]  # decoded, in order
    headers: dict
    body: bytes
    state: ReplayState
    client: tuple = ()  # (host, port) of the client connection

    def param(self, name: str, default=None):
        for key, value in self.params:
            if key == name:
                return value
        return default


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    data_page: bool = False  # a 200 data page: reset_mid_page may fire on it
    abort_half: bool = False


def json_response(status: int, payload, headers: dict | None = None, **kwargs) -> Response:
    return Response(status, orjson.dumps(payload), headers or {}, **kwargs)


def socrata_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"code": code, "error": True, "message": message})


@dataclass
class Route:
    prefix: str
    handler: Callable[[Request], Response]
    methods: tuple = ("GET",)
    faultable: bool = False
    processing_body: bytes = b"[]"  # the body of a 202 "still processing" reply
    on_fault: Callable[[str, Response], Response] | None = None  # the API's own shape of a core fault


def fault_response(
    faults: Faults, processing_body: bytes = b"[]", on_fault: Callable[[str, Response], Response] | None = None
) -> Response | None:
    """The core's HTTP-level faults (429, 503, 202, 500, 502, 401, then ``delay``), in that order:
    the answer of the first that fires, or None (after any delay) to answer normally.
    ``on_fault(name, response)`` lets an API reshape the answer the way its real service sends it."""
    name, response = None, None
    if faults.take("status_429"):
        retry_after = faults.retry_after
        value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        name, response = (
            "status_429",
            json_response(
                429,
                {
                    "code": "too_many_requests",
                    "error": True,
                    "message": "Too many requests; throttled. Retry later or use an app token.",
                },
                {"Retry-After": value},
            ),
        )
    elif faults.take("status_503"):
        name, response = (
            "status_503",
            json_response(
                503, {"code": "service_unavailable", "error": True, "message": "Service temporarily unavailable"}
            ),
        )
    elif faults.take("status_202"):
        name, response = (
            "status_202",
            Response(202, processing_body, {"X-SODA2-Warning": "processing; retry the same request"}),
        )
    elif faults.take("status_500"):
        name, response = (
            "status_500",
            json_response(500, {"code": "internal_error", "error": True, "message": "Internal server error"}),
        )
    elif faults.take("status_502"):
        name, response = (
            "status_502",
            Response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {}, content_type="text/html"),
        )
    elif faults.take("status_401"):
        name, response = (
            "status_401",
            json_response(
                401,
                {"code": "invalid_token", "error": True, "message": "The access token expired or was revoked"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ),
        )
    elif faults.take("delay"):
        time.sleep(faults.delay_seconds)
    if response is not None and on_fault is not None:
        response = on_fault(name, response)
    return response


def reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """End the handler's connection with a TCP reset, like a dropped upstream connection."""
    handler.close_connection = True
    try:  # SO_LINGER 0: close sends a reset instead of a FIN
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass
