"""civic-pipelines: civic open data, one source-month block at a time.

Shared machinery lives here (settings, connections, HTTP, lake writer, block planning); each
source's API client and record contract lives in ``sources/<source>.py``; the offline replay
server lives in ``replay/``.
"""

__version__ = "0.1.0"
