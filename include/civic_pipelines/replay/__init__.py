"""The local replay server: serves generated and recorded civic data in each API's real wire
format, with its real paging, filters, errors and injectable faults. Used by the tests and the
offline demo (``civic replay``).

- ``server.py``  generic core: route table, fault switches, request log, control endpoints,
  ``make_server()`` and ``serve_forever()``
- ``soda.py``    Socrata SODA endpoints (``/resource/<id>.json``, ``/api/views/<id>.json``)
- ``soql.py``    the SoQL subset (``$where``, ``$order``, ``$select``)
- ``seattle.py`` the Seattle crime dataset (tazs-3rd5), schemas A and B

Heavy modules load lazily, so ``import civic_pipelines.replay`` stays cheap.
"""

from __future__ import annotations

__all__ = ["make_server", "serve_forever", "ReplayServer", "ReplayState", "SeattleCrimeDataset"]


def __getattr__(name: str):
    if name in ("make_server", "serve_forever", "ReplayServer", "ReplayState"):
        from civic_pipelines.replay import server

        return getattr(server, name)
    if name == "SeattleCrimeDataset":
        from civic_pipelines.replay.seattle import SeattleCrimeDataset

        return SeattleCrimeDataset
    raise AttributeError(name)
