"""The local replay server: serves generated and recorded civic data in each API's real wire
format, with its real paging, filters, errors and injectable faults. Used by the tests and the
offline demo (``civic replay``).

Generic pieces (name no dataset, except ``make_server()``, which installs every source):

- ``server.py``          the core: the HTTP server, route table, control endpoints,
  ``make_server()`` and ``serve_forever()``
- ``fault_state.py``     the fault switches and the request log
- ``http_messages.py``   request, response and route types, the core's fault answers
- ``http_stream.py``     HEAD, streamed bodies, byte ranges and ``If-Range``
- ``page_overlap.py``    the ``page_overlap`` fault's state for the paged query APIs
- ``soda.py``, ``soql.py``  Socrata SODA endpoints (``soda.py`` still adapts Seattle itself) and
  the SoQL subset (``$where``, ``$order``, ``$select``)
- ``arcgis.py``, ``arcgis_layers.py``, ``arcgis_where.py``  ArcGIS REST feature services: the
  service, one dataset served as a layer per year, the ``where`` dialect
- ``clause_parsing.py``  what the SoQL and ArcGIS where parsers share
- ``ckan.py``            the CKAN action API and downloads, for any package
- ``zip_files.py``       one-member zips and S3-style ETags for the download APIs
- ``dataset_support.py`` what the generated datasets share
- ``generated.py``       SODA datasets generated from their dataset file alone (``[replay]``)

Per source, the emulator (HTTP behaviour) and its data generator (may be long; no HTTP):

- Seattle crime: served by ``soda.py``; data ``seattle.py``
- Minneapolis 311: ``minneapolis_layers.py`` (its ArcGIS layers); data ``minneapolis.py``
- Toronto 311: ``toronto_ckan.py`` (its CKAN package); data ``toronto.py``
- Street Manager: ``street_manager.py``; data ``street_manager_data.py``
- SRWR: ``srwr.py``; data ``srwr_data.py``
- MDS: ``mds.py`` (with ``mds_providers.py``, ``mds_record_faults.py``); data ``mds_data.py``

``moved_names.py`` keeps the old import paths of names that moved out of the generic modules.

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
