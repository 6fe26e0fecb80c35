"""WGS84 -> GCJ-02 -> BD-09 for the map apps' links (api.http.pages.map_apps), against published pairs.

Reference values:
- WGS84 -> GCJ-02, Shanghai, Shenzhen, Beijing: the test table of googollee/eviltransform
  (python/test.py and javascript/test.js, "wgsLat, wgsLng, gcjLat, gcjLng").
- WGS84 -> GCJ-02 and GCJ-02 -> BD-09 at (39.915 N, 116.404 E), Beijing: the results printed in the
  README of wandergis/coordtransform (the npm package `coordtransform`).
- GCJ-02 -> BD-09 of Beijing railway station, GCJ-02 (39.90245, 116.42703), BD-09 (39.90851, 116.43351):
  the example in the R package cst's bd2gcj documentation (5 decimals).
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit

import pytest

from api.http.pages.map_apps import gcj02_to_bd09, map_links, outside_china, wgs84_to_bd09, wgs84_to_gcj02

WGS_TO_GCJ = [
    # (wgs lat, wgs lon), (gcj lat, gcj lon)
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),  # Shanghai
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),  # Shenzhen
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),  # Beijing
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),  # Beijing (coordtransform)
]
GCJ_TO_BD = [
    ((39.915, 116.404), (39.92133699351021, 116.41036949371029), 1e-9),  # coordtransform
    ((39.90245, 116.42703), (39.90851, 116.43351), 1e-5),  # Beijing railway station (cst)
]


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    rad = math.pi / 180
    dlat, dlon = (b[0] - a[0]) * rad, (b[1] - a[1]) * rad
    h = math.sin(dlat / 2) ** 2 + math.cos(a[0] * rad) * math.cos(b[0] * rad) * math.sin(dlon / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


@pytest.mark.parametrize(("wgs", "gcj"), WGS_TO_GCJ)
def test_wgs84_to_gcj02_matches_the_published_pairs(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    got = wgs84_to_gcj02(*wgs)
    assert got == pytest.approx(gcj, abs=1e-9)
    assert 100 < metres(wgs, got) < 1000  # the shift a WGS84 point handed to Amap is off by


@pytest.mark.parametrize(("gcj", "bd", "tolerance"), GCJ_TO_BD)
def test_gcj02_to_bd09_matches_the_published_pairs(
    gcj: tuple[float, float], bd: tuple[float, float], tolerance: float
) -> None:
    assert gcj02_to_bd09(*gcj) == pytest.approx(bd, abs=tolerance)


def test_wgs84_to_bd09_is_gcj02_then_bd09() -> None:
    wgs, gcj = WGS_TO_GCJ[1]
    assert wgs84_to_bd09(*wgs) == pytest.approx(gcj02_to_bd09(*gcj), abs=1e-12)


OUTSIDE = [(48.8584, 2.2945), (37.8199, -122.4783), (-33.8568, 151.2153), (35.6812, 139.7671), (0.5, 120.0)]


@pytest.mark.parametrize("point", OUTSIDE)
def test_outside_china_nothing_is_shifted(point: tuple[float, float]) -> None:
    """Paris, San Francisco, Sydney, Tokyo, the sea south of the box: the apps draw WGS84 there."""
    assert outside_china(*point)
    assert wgs84_to_gcj02(*point) == point
    assert wgs84_to_bd09(*point) == point


def test_the_links_carry_each_apps_coordinates_in_its_documented_form() -> None:
    """Amap: position=LON,LAT with coordinate=gaode (GCJ-02); Baidu: location=LAT,LON with
    coord_type=bd09ll and output=html; the names as given, escaped; geo: keeps WGS84."""
    lat, lon = 22.543847, 113.912316
    links = map_links(lat, lon, name="A-0007 占道经营", place="南山区 & 前海")
    assert links.geo == f"geo:{lat},{lon}?q={lat},{lon}"
    amap = urlsplit(links.amap)
    assert (amap.scheme, amap.netloc, amap.path) == ("https", "uri.amap.com", "/marker")
    query = {k: v[0] for k, v in parse_qs(amap.query).items()}
    assert query["coordinate"] == "gaode" and query["name"] == "A-0007 占道经营"
    glon, glat = (float(v) for v in query["position"].split(","))
    assert (glat, glon) == pytest.approx((22.540796131694766, 113.9171764808363), abs=1e-6)
    baidu = urlsplit(links.baidu)
    assert (baidu.scheme, baidu.netloc, baidu.path) == ("https", "api.map.baidu.com", "/marker")
    query = {k: v[0] for k, v in parse_qs(baidu.query).items()}
    assert query["coord_type"] == "bd09ll" and query["output"] == "html"
    assert query["title"] == "A-0007 占道经营" and query["content"] == "南山区 & 前海"
    blat, blon = (float(v) for v in query["location"].split(","))
    assert (blat, blon) == pytest.approx(wgs84_to_bd09(lat, lon), abs=1e-6)
