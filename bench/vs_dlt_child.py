"""What every child process of bench/vs_dlt.py shares, and the parent too: the sources compared
(``SOURCES``), the configurations (``CONFIGS``), the socket guard each child installs first (no
connection but to loopback) and the child's peak memory.
"""

from __future__ import annotations

import resource

import _common as common

SOURCES = {
    "soda": {
        "source": "seattle_crime",
        "conn_id": "civic_seattle_crime",
        "table": "seattle_crime",
        "label": "SODA (seattle_crime)",
    },
    "arcgis": {
        "source": "minneapolis_311",
        "conn_id": "civic_minneapolis_311",
        "table": "minneapolis_311",
        "label": "ArcGIS (minneapolis_311)",
    },
}
CONFIGS = ("ours", "dlt-parquet", "dlt-default")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ---------------------------------------------------------------- guards (in every child)


def loopback_only() -> dict:
    """Refuse every socket connection that is not to loopback; returns the refusal counter."""
    import socket

    refused = {"count": 0, "targets": []}
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            refused["count"] += 1
            refused["targets"].append(str(address)[:80])
            raise ConnectionRefusedError(f"vs_dlt: non-loopback connection refused: {address}")
        return original(self, address)

    socket.socket.connect = guarded
    return refused


def peak_mb() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(common.peak_rss_mb(), children)
