"""Minneapolis 311 on the replay's ArcGIS service: the generated dataset (``minneapolis.py``) served as
the ``Public_311_<YEAR>`` hosted layers, at the layer path its dataset file names
(``datasets/minneapolis_311.toml``, ``[adapter] layer_path``), so the replay and the extractor share it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from civic_pipelines.replay.arcgis import ArcGisApi
from civic_pipelines.replay.arcgis_layers import DEFAULT_MAX_RECORD_COUNT

DATASET_FILE = Path(__file__).resolve().parent.parent / "datasets" / "minneapolis_311.toml"
with DATASET_FILE.open("rb") as _handle:
    MINNEAPOLIS_PATH = tomllib.load(_handle)["adapter"]["layer_path"]


def install_minneapolis(server, dataset=None, max_record_count: int = DEFAULT_MAX_RECORD_COUNT):
    """Serve Minneapolis 311 (``Public_311_<YEAR>`` layers) on ``server``; returns the dataset.

    Creates a :class:`~civic_pipelines.replay.minneapolis.Minneapolis311Dataset` unless one is
    given, registers it on a new :class:`~civic_pipelines.replay.arcgis.ArcGisApi` under
    :data:`MINNEAPOLIS_PATH` and installs it (``server.apis["arcgis"]``)."""
    from civic_pipelines.replay.minneapolis import Minneapolis311Dataset

    if dataset is None:
        dataset = Minneapolis311Dataset()
    api = ArcGisApi()
    api.add_layer_family(dataset, MINNEAPOLIS_PATH, max_record_count=max_record_count)
    server.install(api)
    return dataset
