"""Drop-in area boundaries for the 311 choropleth.

Put a GeoJSON FeatureCollection at ``$CIVIC_BOUNDARIES/<city>.geojson`` (default folder
``data/boundaries/``), where ``<city>`` is the city id of ``fct_service_requests.city``
(``toronto``, ``nyc``, ``minneapolis``). Each feature is one area:

* ``properties.area``: the area exactly as the fact's ``area`` column spells it (Toronto's ward
  name, e.g. ``Toronto-St. Paul's (12)``; NYC's community board, e.g. ``01 BROOKLYN``);
  ``properties.name`` is read when ``area`` is absent;
* ``properties.area_system`` (optional): the fact's ``area_system`` the feature belongs to
  (Toronto's ``25-ward`` or ``44-ward``); without it the feature matches the area name in any
  system;
* ``geometry``: a ``Polygon`` or ``MultiPolygon`` in WGS84 longitude/latitude (RFC 7946).

The file is read again when it changes; areas without a feature are listed under the map, and a
feature without requests is drawn empty. A city without a file gets the points map only.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Area:
    area: str
    area_system: str | None
    rings: tuple[tuple[tuple[float, float], ...], ...]  # exterior rings, (lon, lat) pairs


@dataclass(frozen=True)
class Boundaries:
    city: str
    path: Path
    areas: tuple[Area, ...]
    errors: tuple[str, ...] = ()


def _exterior_rings(geometry: dict) -> list[list]:
    kind = (geometry or {}).get("type")
    coordinates = (geometry or {}).get("coordinates") or []
    if kind == "Polygon":
        return coordinates[:1]
    if kind == "MultiPolygon":
        return [polygon[0] for polygon in coordinates if polygon]
    return []


def parse(city: str, path: Path) -> Boundaries:
    payload = json.loads(path.read_text())
    if payload.get("type") != "FeatureCollection":
        raise ValueError(f"{path.name}: not a GeoJSON FeatureCollection")
    areas, errors = [], []
    for index, feature in enumerate(payload.get("features") or []):
        properties = feature.get("properties") or {}
        name = properties.get("area", properties.get("name"))
        rings = _exterior_rings(feature.get("geometry"))
        if name is None or not rings:
            errors.append(f"feature {index}: needs properties.area and a Polygon or MultiPolygon geometry")
            continue
        areas.append(
            Area(
                str(name),
                properties.get("area_system"),
                tuple(tuple((float(x), float(y)) for x, y, *_ in ring) for ring in rings),
            )
        )
    return Boundaries(city, path, tuple(areas), tuple(errors))


class BoundaryFiles:
    """``<folder>/<city>.geojson`` files, parsed once per modification."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[Path, tuple[int, Boundaries | None]] = {}
        self._lock = threading.Lock()

    def path(self, city: str) -> Path:
        return self.folder / f"{city}.geojson"

    def get(self, city: str) -> Boundaries | None:
        path = self.path(city)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
        try:
            boundaries = parse(city, path)
        except (OSError, ValueError, TypeError) as error:
            log.warning("boundary file %s unreadable: %s", path, error)
            # an OSError's text names the whole path: the note names the file only (the log has it all)
            why = f"unreadable ({type(error).__name__}, see the server's log)" if isinstance(error, OSError) else error
            boundaries = Boundaries(city, path, (), (f"{path.name}: {why}",))
        with self._lock:
            self._cache[path] = (mtime, boundaries)
        return boundaries
