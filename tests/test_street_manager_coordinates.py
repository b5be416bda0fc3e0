"""Street Manager's works coordinates: British National Grid WKT (points, lines, polygons) to WGS84
longitude and latitude, checked against the Ordnance Survey's own transformation formulas."""

from __future__ import annotations

import math
from math import atan2, cos, degrees, radians, sin, sqrt, tan

import pyarrow as pa
from test_street_manager import read

from civic_pipelines.replay.street_manager import ArchiveSpec, build_archive
from civic_pipelines.sources import street_manager as sm

# ---------------------------------------------------------------- coordinates


def os_bng_to_wgs84(easting: float, northing: float) -> tuple[float, float]:
    """Ordnance Survey's own method (A guide to coordinate systems in Great Britain): inverse
    Transverse Mercator on Airy 1830, then OSGB36 -> WGS84 by OS's Helmert parameters (negated).
    Independent of PROJ: the check of the extractor's pipeline."""
    a, b = 6377563.396, 6356256.909
    f0, lat0, lon0, e0, n0 = 0.9996012717, radians(49), radians(-2), 400000, -100000
    e2 = 1 - (b * b) / (a * a)
    n = (a - b) / (a + b)
    lat, m = lat0, 0.0
    while True:
        lat = (northing - n0 - m) / (a * f0) + lat
        dl, sl = lat - lat0, lat + lat0
        m = (
            b
            * f0
            * (
                (1 + n + 5 / 4 * n**2 + 5 / 4 * n**3) * dl
                - (3 * n + 3 * n**2 + 21 / 8 * n**3) * sin(dl) * cos(sl)
                + (15 / 8 * n**2 + 15 / 8 * n**3) * sin(2 * dl) * cos(2 * sl)
                - 35 / 24 * n**3 * sin(3 * dl) * cos(3 * sl)
            )
        )
        if abs(northing - n0 - m) < 1e-5:
            break
    nu = a * f0 / sqrt(1 - e2 * sin(lat) ** 2)
    rho = a * f0 * (1 - e2) / (1 - e2 * sin(lat) ** 2) ** 1.5
    eta2, t, sec = nu / rho - 1, tan(lat), 1 / cos(lat)
    de = easting - e0
    phi = (
        lat
        - t / (2 * rho * nu) * de**2
        + t / (24 * rho * nu**3) * (5 + 3 * t**2 + eta2 - 9 * t**2 * eta2) * de**4
        - t / (720 * rho * nu**5) * (61 + 90 * t**2 + 45 * t**4) * de**6
    )
    lam = (
        lon0
        + sec / nu * de
        - sec / (6 * nu**3) * (nu / rho + 2 * t**2) * de**3
        + sec / (120 * nu**5) * (5 + 28 * t**2 + 24 * t**4) * de**5
        - sec / (5040 * nu**7) * (61 + 662 * t**2 + 1320 * t**4 + 720 * t**6) * de**7
    )
    nu_a = a / sqrt(1 - e2 * sin(phi) ** 2)
    x, y, z = nu_a * cos(phi) * cos(lam), nu_a * cos(phi) * sin(lam), (1 - e2) * nu_a * sin(phi)
    tx, ty, tz, s = 446.448, -125.157, 542.060, -20.4894e-6
    rx, ry, rz = (radians(v / 3600) for v in (0.1502, 0.2470, 0.8421))
    x, y, z = (
        tx + (1 + s) * x - rz * y + ry * z,
        ty + rz * x + (1 + s) * y - rx * z,
        tz - ry * x + rx * y + (1 + s) * z,
    )
    a2, b2 = 6378137.0, 6356752.314245
    e2w = 1 - (b2 * b2) / (a2 * a2)
    p = sqrt(x * x + y * y)
    lat2 = atan2(z, p * (1 - e2w))
    for _ in range(10):
        lat2 = atan2(z + e2w * a2 / sqrt(1 - e2w * sin(lat2) ** 2) * sin(lat2), p)
    return degrees(atan2(y, x)), degrees(lat2)


def test_a_known_bng_point_converts_to_wgs84():
    # The real Sheffield permit (Lowedges Road) and the SNS docs example (Church Street, Westminster).
    for e, n, near in (
        (433674.488, 380502.109, (-1.496, 53.320)),
        (527155.3328125, 182227.946386719, (-0.170, 51.522)),
    ):
        lon, lat, counts = sm.bng_wkt_to_wgs84(pa.array([f"POINT({e} {n})"]))
        want = os_bng_to_wgs84(e, n)
        assert abs(lon[0].as_py() - want[0]) < 1e-5 and abs(lat[0].as_py() - want[1]) < 1e-5
        assert abs(lon[0].as_py() - near[0]) < 0.01 and abs(lat[0].as_py() - near[1]) < 0.01
        assert counts == {"points": 1, "converted": 1}


def test_centroids_of_lines_and_polygons_and_missing_geometries():
    wkt = pa.array(
        [
            "LINESTRING(501251.53 222574.64,501305.92 222506.65)",  # the docs examples' line
            "LINESTRING(0 0, 10 0, 10 30)",  # length weighted: (7.5, 11.25)... of 40 m
            "POLYGON((0 0,40 0,40 40,0 40,0 0),(0 0,20 0,20 20,0 20,0 0))",  # a square less a corner hole
            "point (433674.488 380502.109)",
            "MULTIPOINT((0 0),(10 10))",
            "POINT Z (433674.488 380502.109 12)",
            None,
            "",
            "  ",
            "POLYGON((1 2",
            "CIRCLE(1 2)",
        ]
    )
    lon, lat, counts = sm.bng_wkt_to_wgs84(wkt)
    expect = [
        ((501251.53 + 501305.92) / 2, (222574.64 + 222506.65) / 2),
        (8.75, 11.25),
        ((40 * 40 * 20 - 20 * 20 * 10) / 1200, (40 * 40 * 20 - 20 * 20 * 10) / 1200),
        (433674.488, 380502.109),
        (5, 5),
        (433674.488, 380502.109),
    ]
    for i, (e, n) in enumerate(expect):
        want = os_bng_to_wgs84(e, n)
        assert abs(lon[i].as_py() - want[0]) < 1e-5 and abs(lat[i].as_py() - want[1]) < 1e-5, i
    assert lon.to_pylist()[6:] == [None] * 5 and lat.null_count == 5
    assert counts == {
        "linestrings": 2,
        "polygons": 1,
        "points": 1,
        "other_geometries": 2,
        "missing": 3,
        "unreadable": 2,
        "converted": 6,
    }
    assert all(math.isfinite(v) for v in lon.to_pylist()[:6])


def test_generated_coordinates_are_converted_and_missing_ones_counted():
    spec = ArchiveSpec("permit", "2024-03", 600)
    table, _, stats = read(build_archive(spec))
    wkt = table["works_location_coordinates"].to_pylist()
    missing = sum(1 for w in wkt if not w)
    assert missing > 0 and stats["coordinates"]["missing"] == missing == table["longitude"].null_count
    assert stats["coordinates"]["converted"] == len(wkt) - missing
    assert {"points", "linestrings", "polygons"} <= set(stats["coordinates"])
    lons = [v for v in table["longitude"].to_pylist() if v is not None]
    lats = [v for v in table["latitude"].to_pylist() if v is not None]
    assert -6 < min(lons) and max(lons) < 2 and 49.8 < min(lats) and max(lats) < 56  # England
