"""Street Manager's coordinates: BNG (EPSG:27700) WKT to WGS84 longitude and latitude of the point,
or of a linestring's or polygon's centroid, with a fixed PROJ pipeline (see the package docstring)."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from civic_pipelines.sources.street_manager.contract import BNG_TO_WGS84

# ---------------------------------------------------------------- coordinates


@lru_cache(maxsize=1)
def _transformer():
    from pyproj import Transformer

    return Transformer.from_pipeline(BNG_TO_WGS84)


_NUM = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_SIMPLE = r"[-+0-9.eE]+"  # a number's characters (the cast to float64 then checks the number)


def _unread_matching(wkt: pa.Array, remaining: pa.Array, pattern: str):
    """The rows still unread whose WKT matches ``pattern`` (with a group ``v``): their positions (numpy)
    and each one's ``v`` text; None when there is none."""
    if not pc.any(remaining).as_py():
        return None
    rows = pc.indices_nonzero(remaining)
    found = pc.extract_regex(wkt.take(rows), pattern)
    matched = pc.fill_null(pc.is_valid(found), False)
    if not pc.any(matched).as_py():
        return None
    return rows.filter(matched).to_numpy(), pc.struct_field(found, "v").filter(matched)


def bng_wkt_to_wgs84(wkt: pa.Array) -> tuple[pa.Array, pa.Array, Counter]:
    """WGS84 longitude and latitude of each BNG WKT geometry: the point, or the centroid of a
    linestring (length weighted) or polygon (area weighted, holes subtracted); multi-part
    geometries by the same rules on all their parts. Null (counted) when missing or unreadable."""
    import numpy as np

    n = len(wkt)
    counts: Counter = Counter()
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    if n == 0:
        return pa.array([], pa.float64()), pa.array([], pa.float64()), counts
    missing = pc.fill_null(pc.invert(pc.match_substring_regex(wkt, r"\S")), True)
    counts["missing"] = pc.sum(pc.cast(missing, pa.int64())).as_py() or 0
    remaining = pc.invert(missing)
    # Points (most of them), straight from the text; then each kind on the rows still unread.
    point = pc.extract_regex(
        wkt, rf"(?i)^\s*POINT\s*\(\s*(?P<x>{_SIMPLE})\s+(?P<y>{_SIMPLE})(?:\s+{_SIMPLE})?\s*\)\s*$"
    )
    is_point = pc.fill_null(pc.is_valid(point), False)
    if pc.any(is_point).as_py():
        rows = pc.indices_nonzero(is_point).to_numpy()
        try:
            px = pc.cast(pc.struct_field(point, "x").filter(is_point), pa.float64()).to_numpy(zero_copy_only=False)
            py = pc.cast(pc.struct_field(point, "y").filter(is_point), pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # a malformed number: these points go one by one below
            pass
        else:
            x[rows], y[rows] = px, py
            counts["points"] = len(rows)
            remaining = pc.and_(remaining, pc.invert(is_point))
    # Linestrings and polygons, vectorised over their vertices.
    line = _unread_matching(wkt, remaining, r"(?i)^\s*LINESTRING\s*\((?P<v>[^()]*)\)\s*$")
    if line is not None:
        line_rows, vertices = line
        rings = pc.split_pattern(vertices, ",")  # one "ring" per row
        done = _line_centroids(rings, pa.array(np.arange(len(line_rows)), pa.int64()), len(line_rows))
        if done is not None:
            x[line_rows], y[line_rows] = done
            counts["linestrings"] = len(line_rows)
            remaining = pc.and_(remaining, pc.invert(_mask(n, line_rows)))
    polygon = _unread_matching(
        wkt, remaining, r"(?i)^\s*POLYGON\s*\(\s*\((?P<v>[^()]*(?:\)\s*,\s*\([^()]*)*)\)\s*\)\s*$"
    )
    if polygon is not None:
        polygon_rows, vertices = polygon
        ring_lists = pc.split_pattern_regex(vertices, r"\)\s*,\s*\(")
        ring_row = pc.list_parent_indices(ring_lists)
        rings = pc.split_pattern(pc.list_flatten(ring_lists), ",")
        first = np.zeros(len(rings), dtype=bool)
        offsets = ring_lists.offsets.to_numpy()
        offsets = offsets - offsets[0]
        first[offsets[:-1][np.diff(offsets) > 0]] = True
        done = _polygon_centroids(rings, ring_row, first, len(polygon_rows))
        if done is not None:
            x[polygon_rows], y[polygon_rows] = done
            counts["polygons"] = len(polygon_rows)
            remaining = pc.and_(remaining, pc.invert(_mask(n, polygon_rows)))
    # The rest (multi-part geometries, Z/M, anything odd) one by one.
    if pc.any(remaining).as_py():
        rows = pc.indices_nonzero(remaining)
        for row, value in zip(rows.to_pylist(), wkt.take(rows).to_pylist()):
            result = _centroid_python(value.strip().upper())
            if result is None:
                counts["unreadable"] += 1
            else:
                x[row], y[row] = result
                counts["other_geometries"] += 1
    have = ~np.isnan(x) & ~np.isnan(y)
    longitude = np.full(n, np.nan)
    latitude = np.full(n, np.nan)
    if have.any():
        lon, lat = _transformer().transform(x[have], y[have])
        longitude[have], latitude[have] = lon, lat
        counts["converted"] = int(np.count_nonzero(np.isfinite(longitude)))
    counts["unreadable"] += int(np.count_nonzero(have & ~np.isfinite(longitude)))
    nulls = ~np.isfinite(longitude)
    return (pa.array(longitude, pa.float64(), mask=nulls), pa.array(latitude, pa.float64(), mask=nulls), +counts)


def _mask(n: int, rows) -> pa.Array:
    import numpy as np

    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _vertices(rings: pa.Array):
    """(x, y, ring index) of every vertex of a list<string> of "x y" pairs; None if any is unreadable."""
    flat = pc.list_flatten(rings)
    pairs = pc.extract_regex(flat, rf"^\s*(?P<x>{_SIMPLE})\s+(?P<y>{_SIMPLE})(?:\s+{_SIMPLE})*\s*$")
    if pairs.null_count:
        return None
    try:
        x = pc.cast(pc.struct_field(pairs, "x"), pa.float64()).to_numpy(zero_copy_only=False)
        y = pc.cast(pc.struct_field(pairs, "y"), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    ring = pc.list_parent_indices(rings).to_numpy()
    return x, y, ring


def _line_centroids(rings: pa.Array, ring_row: pa.Array, rows: int):
    import numpy as np

    found = _vertices(rings)
    if found is None:
        return None
    x, y, ring = found
    row_of_ring = ring_row.to_numpy()
    row = row_of_ring[ring]
    same = ring[:-1] == ring[1:]
    length = np.hypot(np.diff(x), np.diff(y)) * same
    weight = np.bincount(row[:-1], length, minlength=rows)
    cx = np.bincount(row[:-1], length * (x[:-1] + x[1:]) / 2, minlength=rows)
    cy = np.bincount(row[:-1], length * (y[:-1] + y[1:]) / 2, minlength=rows)
    count = np.bincount(row, minlength=rows)
    mean_x = np.bincount(row, x, minlength=rows) / np.maximum(count, 1)
    mean_y = np.bincount(row, y, minlength=rows) / np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_x = np.where(weight > 0, cx / weight, mean_x)
        out_y = np.where(weight > 0, cy / weight, mean_y)
    out_x[count == 0] = np.nan
    out_y[count == 0] = np.nan
    return out_x, out_y


def _polygon_centroids(rings: pa.Array, ring_row: pa.Array, exterior, rows: int):
    import numpy as np

    found = _vertices(rings)
    if found is None:
        return None
    x, y, ring = found
    n_rings = len(rings)
    starts = np.searchsorted(ring, np.arange(n_rings))
    nxt = np.arange(1, len(x) + 1)
    last = np.r_[ring[1:] != ring[:-1], True]
    nxt[last] = starts[ring[last]]  # close each ring (a closed ring adds a zero-length edge)
    cross = x * y[nxt] - x[nxt] * y
    area = np.bincount(ring, cross, minlength=n_rings) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ring_cx = np.bincount(ring, (x + x[nxt]) * cross, minlength=n_rings) / (6 * area)
        ring_cy = np.bincount(ring, (y + y[nxt]) * cross, minlength=n_rings) / (6 * area)
    row_of_ring = ring_row.to_numpy()
    signed = np.abs(area) * np.where(exterior, 1.0, -1.0)
    ok = np.isfinite(ring_cx) & np.isfinite(ring_cy)
    weight = np.bincount(row_of_ring, np.where(ok, signed, 0.0), minlength=rows)
    sx = np.bincount(row_of_ring, np.where(ok, signed * ring_cx, 0.0), minlength=rows)
    sy = np.bincount(row_of_ring, np.where(ok, signed * ring_cy, 0.0), minlength=rows)
    row = row_of_ring[ring]
    count = np.bincount(row, minlength=rows)
    mean_x = np.bincount(row, x, minlength=rows) / np.maximum(count, 1)
    mean_y = np.bincount(row, y, minlength=rows) / np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_x = np.where(np.abs(weight) > 0, sx / weight, mean_x)
        out_y = np.where(np.abs(weight) > 0, sy / weight, mean_y)
    out_x[count == 0] = np.nan
    out_y[count == 0] = np.nan
    return out_x, out_y


_TOKEN = re.compile(rf"\s*(\(|\)|,|{_NUM}|[A-Z]+)")


def _parse_wkt(text: str):
    """A small WKT reader: (kind, nested lists of (x, y)) or None."""
    tokens = [t for t in _TOKEN.findall(text)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", text):
        return None
    at = 0

    def geometry():
        nonlocal at
        kind = tokens[at]
        at += 1
        while at < len(tokens) and tokens[at] in ("Z", "M", "ZM"):
            at += 1
        if at < len(tokens) and tokens[at] == "EMPTY":
            at += 1
            return kind, None
        if kind == "GEOMETRYCOLLECTION":
            expect("(")
            parts = [geometry()]
            while tokens[at] == ",":
                at += 1
                parts.append(geometry())
            expect(")")
            return kind, parts
        return kind, nested()

    def expect(token):
        nonlocal at
        if tokens[at] != token:
            raise ValueError(token)
        at += 1

    def nested():
        nonlocal at
        expect("(")
        if tokens[at] == "(":
            items = [nested()]
            while tokens[at] == ",":
                at += 1
                items.append(nested())
            expect(")")
            return items
        points = []
        while True:
            numbers = []
            while tokens[at] not in (",", ")"):
                numbers.append(float(tokens[at]))
                at += 1
            if len(numbers) < 2:
                raise ValueError("coordinate")
            points.append((numbers[0], numbers[1]))
            if tokens[at] == ")":
                at += 1
                return points
            at += 1

    try:
        result = geometry()
        return result if at == len(tokens) else None
    except (IndexError, ValueError):
        return None


def _centroid_python(text: str | None):
    """Centroid of any WKT geometry (the highest dimension's parts count, as in OGC)."""
    if not text:
        return None
    parsed = _parse_wkt(text)
    if parsed is None:
        return None
    sums = {0: [0.0, 0.0, 0.0], 1: [0.0, 0.0, 0.0], 2: [0.0, 0.0, 0.0]}

    def ring_area(ring):
        area = cx = cy = 0.0
        for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
            cross = x0 * y1 - x1 * y0
            area += cross
            cx += (x0 + x1) * cross
            cy += (y0 + y1) * cross
        area /= 2
        return (abs(area), cx / (6 * area), cy / (6 * area)) if area else (0.0, 0.0, 0.0)

    def add(kind, body):
        if body is None:
            return
        if kind == "POINT":
            sums[0][0] += body[0][0]
            sums[0][1] += body[0][1]
            sums[0][2] += 1
        elif kind == "MULTIPOINT":
            for item in body:
                add("POINT", item if isinstance(item, list) else [item])
        elif kind == "LINESTRING":
            for (x0, y0), (x1, y1) in zip(body, body[1:]):
                length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
                sums[1][0] += length * (x0 + x1) / 2
                sums[1][1] += length * (y0 + y1) / 2
                sums[1][2] += length
        elif kind == "MULTILINESTRING":
            for item in body:
                add("LINESTRING", item)
        elif kind == "POLYGON":
            for index, ring in enumerate(body):
                area, cx, cy = ring_area(ring)
                sign = 1 if index == 0 else -1
                sums[2][0] += sign * area * cx
                sums[2][1] += sign * area * cy
                sums[2][2] += sign * area
        elif kind == "MULTIPOLYGON":
            for item in body:
                add("POLYGON", item)
        elif kind == "GEOMETRYCOLLECTION":
            for sub_kind, sub_body in body:
                add(sub_kind, sub_body)
        else:
            raise ValueError(kind)

    try:
        add(*parsed)
    except (ValueError, TypeError, IndexError):
        return None
    for dimension in (2, 1, 0):
        sx, sy, weight = sums[dimension]
        if weight:
            return sx / weight, sy / weight
    return None
