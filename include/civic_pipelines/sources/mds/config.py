"""MDS's configuration: the providers (an Airflow Variable, else the defaults), each provider's
connection and version, and the council districts (a GeoJSON file) points are assigned to."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urljoin

import orjson

from civic_pipelines import connections
from civic_pipelines.core.variables import get_variable
from civic_pipelines.sources.base import NotPublished
from civic_pipelines.sources.mds.contract import (
    ACCEPT,
    BUNDLED_DISTRICTS,
    DEFAULT_PROVIDERS,
    DISTRICT_PROPERTIES,
    DISTRICT_PROPERTY_VARIABLE,
    DISTRICTS_PATH_VARIABLE,
    PROVIDER_NAME,
    PROVIDERS_VARIABLE,
    SPEC,
    MdsConfigError,
)

# ---------------------------------------------------------------- configuration


def parts() -> list[str]:
    """The providers: the Variable ``civic_mds_providers`` (a JSON list), else the default list."""
    value = get_variable(PROVIDERS_VARIABLE, "")
    if value in (None, ""):
        return list(DEFAULT_PROVIDERS)
    listed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed:
        raise MdsConfigError(f"{PROVIDERS_VARIABLE} must be a non-empty JSON list of provider names, not {value!r}")
    bad = [name for name in listed if not isinstance(name, str) or not PROVIDER_NAME.match(name)]
    if bad:
        raise MdsConfigError(
            f"{PROVIDERS_VARIABLE}: provider names are lower-case letters, digits and _ "
            f"(they name a connection and a folder): {bad}"
        )
    return list(dict.fromkeys(listed))


def auth_headers(connection) -> dict:
    return {}  # the civic_mds connection carries nothing: each provider authenticates on its own


def provider_conn_id(provider: str) -> str:
    return SPEC.part_conn_id.format(part=provider)


@dataclass(frozen=True)
class Provider:
    """One provider's resolved configuration. ``secret`` is the bearer token or the client secret."""

    name: str
    base_url: str
    version: str  # as configured, major.minor: "0.4", "1.2", "2.0"
    family: str  # "0.4", "1.x", "2.0"
    auth: str  # "bearer", "oauth2", "none"
    token_url: str | None = None
    client_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    empty_after_hours: float | None = None

    def __repr__(self) -> str:  # never print a credential
        return f"Provider(name={self.name!r}, base_url={self.base_url!r}, version={self.version!r}, auth={self.auth!r})"

    @property
    def accept(self) -> str:
        return ACCEPT[self.family].format(version=self.version)

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path}"


def parse_version(value) -> tuple[str, str]:
    """``(version, family)`` from a configured MDS version: ``"0.4.1"`` -> ``("0.4", "0.4")``,
    ``"1.2"`` -> ``("1.2", "1.x")``, ``"2.0.0"`` -> ``("2.0", "2.0")``."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.\d+)?\s*$", str(value or ""))
    if not match:
        raise MdsConfigError(f"mds_version {value!r} is not a version such as 0.4, 1.2 or 2.0")
    major, minor = int(match.group(1)), int(match.group(2))
    version = f"{major}.{minor}"
    if (major, minor) == (0, 4):
        return version, "0.4"
    if major == 1:
        return version, "1.x"
    if (major, minor) == (2, 0):
        return version, "2.0"
    raise MdsConfigError(
        f"MDS version {version} is not supported (0.4, 1.x and 2.0 are; 0.2/0.3 take millisecond "
        "ranges that this client does not send)"
    )


def provider_config(provider: str) -> Provider:
    """Resolve ``civic_mds_<provider>``; :class:`NotPublished` when there is no such connection."""
    if not isinstance(provider, str) or not PROVIDER_NAME.match(provider):
        raise MdsConfigError(f"mds blocks need a provider name (the part), not {provider!r}")
    conn_id = provider_conn_id(provider)
    connection = connections.resolve(conn_id, "")
    if not connection.base_url or connection.base_url.rstrip("/") in ("https:/", "https://", "http://"):
        raise NotPublished(
            f"no connection {conn_id} (base URL, mds_version, auth) is configured for provider {provider!r}"
        )
    extra = dict(connection.extra or {})
    version, family = parse_version(extra.get("mds_version"))
    auth = str(extra.get("auth") or ("bearer" if connection.password else "none")).lower()
    if auth not in ("bearer", "oauth2", "none"):
        raise MdsConfigError(f"{conn_id}: auth {auth!r} is not one of bearer, oauth2, none")
    token_url = extra.get("token_url")
    if auth == "oauth2":
        if not token_url:
            raise MdsConfigError(f"{conn_id}: auth oauth2 needs token_url in the extras")
        if not (connection.login and connection.password):
            raise MdsConfigError(f"{conn_id}: auth oauth2 needs the client id as login and the secret as password")
        token_url = urljoin(connection.base_url.rstrip("/") + "/", token_url)
    if auth == "bearer" and not connection.password:
        raise MdsConfigError(f"{conn_id}: auth bearer needs the token as the connection's password")
    empty_after = extra.get("empty_after_hours")
    return Provider(
        name=provider,
        base_url=connection.base_url.rstrip("/"),
        version=version,
        family=family,
        auth=auth,
        token_url=token_url if auth == "oauth2" else None,
        client_id=connection.login if auth == "oauth2" else None,
        secret=connection.password if auth in ("bearer", "oauth2") else None,
        empty_after_hours=float(empty_after) if empty_after not in (None, "") else None,
    )


# ---------------------------------------------------------------- districts


@dataclass
class Districts:
    """Polygons with labels and an STRtree over them."""

    source: str
    sha256: str
    labels: list[str]
    tree: object
    generated: bool

    def assign(self, lons: list, lats: list) -> tuple[list[str | None], int]:
        """The district of each point (None without a point or outside every district) and how
        many points with coordinates matched none. A point on a shared border goes to the
        district listed first in the file."""
        import numpy as np
        import shapely

        n = len(lons)
        out: list[str | None] = [None] * n
        present = [i for i in range(n) if lons[i] is not None and lats[i] is not None]
        if not present:
            return out, 0
        points = shapely.points(
            np.array([lons[i] for i in present], dtype="float64"), np.array([lats[i] for i in present], dtype="float64")
        )
        found, polygons = self.tree.query(points, predicate="intersects")
        best: dict[int, int] = {}
        for point_index, polygon_index in zip(found.tolist(), polygons.tolist()):
            if point_index not in best or polygon_index < best[point_index]:
                best[point_index] = polygon_index
        for point_index, polygon_index in best.items():
            out[present[point_index]] = self.labels[polygon_index]
        return out, len(present) - len(best)

    def describe(self) -> dict:
        return {
            "file": self.source,
            "sha256": self.sha256,
            "districts": len(set(self.labels)),
            "generated_grid": self.generated,
        }


def districts_path() -> Path:
    configured = get_variable(DISTRICTS_PATH_VARIABLE, "")
    return Path(configured).expanduser() if configured else BUNDLED_DISTRICTS


def load_districts(path: Path | None = None) -> Districts:
    path = Path(path) if path is not None else districts_path()
    data = path.read_bytes()
    return _load_districts(str(path), hashlib.sha256(data).hexdigest(), get_variable(DISTRICT_PROPERTY_VARIABLE, ""))


@lru_cache(maxsize=8)
def _load_districts(path: str, sha256: str, property_name: str) -> Districts:
    import shapely
    from shapely.geometry import shape

    document = orjson.loads(Path(path).read_bytes())
    features = document.get("features") if isinstance(document, dict) else None
    if not features:
        raise MdsConfigError(f"district file {path} is not a GeoJSON FeatureCollection with features")
    names = (property_name,) if property_name else DISTRICT_PROPERTIES
    geometries, labels = [], []
    for index, feature in enumerate(features):
        properties = feature.get("properties") or {}
        label = next((properties[name] for name in names if properties.get(name) not in (None, "")), None)
        if label is None:
            raise MdsConfigError(f"district file {path}: feature {index} has none of the properties {list(names)}")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        geometry = shape(feature["geometry"])
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise MdsConfigError(f"district file {path}: feature {index} is a {geometry.geom_type}, not a polygon")
        geometries.append(geometry)
        labels.append(str(label))
    generated = "GENERATED" in str(document.get("name", "")) or "GENERATED" in str(document.get("description", ""))
    return Districts(source=path, sha256=sha256, labels=labels, tree=shapely.STRtree(geometries), generated=generated)
