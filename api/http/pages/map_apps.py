"""Links that open a case's place in the map apps used in China, with the coordinates each expects.

A case's position is WGS84 (GPS) degrees. Amap (高德) and the other maps published in China draw on
GCJ-02, WGS84 shifted by a published, deliberately irregular formula (a few hundred metres in the
cities); Baidu draws on BD-09, GCJ-02 shifted once more. A WGS84 point handed to either app as its own
lands that far off, on the wrong side of a block. Outside China (a rough box around it, the one the
formula's published implementations use) there is no shift. The `geo:` link stays for the phone's
default maps app (Android), which takes WGS84.

These are links the phone opens (in the app, or the app's web page), not anything the page loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode

# GCJ-02's ellipsoid (Krasovsky 1940): semi-major axis in metres and first eccentricity squared
_KRASOVSKY_A_M = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_BD_X_PI = math.pi * 3000.0 / 180.0  # BD-09's own constant
SOURCE = "gridpatrol"  # the `src` the apps ask callers to name themselves with


def outside_china(lat: float, lon: float) -> bool:
    """Whether the point (WGS84 degrees) is outside the box GCJ-02 shifts: lon 72.004–137.8347 E,
    lat 0.8293–55.8271 N, as the formula's published implementations draw it."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _shift_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _shift_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """(lat, lon) in WGS84 degrees to GCJ-02 degrees; unchanged outside China."""
    if outside_china(lat, lon):
        return lat, lon
    dlat = _shift_lat(lon - 105.0, lat - 35.0)
    dlon = _shift_lon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _KRASOVSKY_EE * math.sin(rad) ** 2
    dlat = (dlat * 180.0) / ((_KRASOVSKY_A_M * (1 - _KRASOVSKY_EE)) / (magic * math.sqrt(magic)) * math.pi)
    dlon = (dlon * 180.0) / (_KRASOVSKY_A_M / math.sqrt(magic) * math.cos(rad) * math.pi)
    return lat + dlat, lon + dlon


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """(lat, lon) in GCJ-02 degrees to BD-09 (Baidu's `bd09ll`) degrees."""
    z = math.sqrt(lon * lon + lat * lat) + 0.00002 * math.sin(lat * _BD_X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _BD_X_PI)
    return z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065


def wgs84_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """(lat, lon) in WGS84 degrees to BD-09 degrees; unchanged outside China (Baidu draws WGS84 there)."""
    if outside_china(lat, lon):
        return lat, lon
    return gcj02_to_bd09(*wgs84_to_gcj02(lat, lon))


@dataclass(frozen=True)
class MapLinks:
    """Where a phone opens a place: `geo` for its default maps app (WGS84), `amap` and `baidu` for
    those apps (or their web pages when the app is not installed), each in its own coordinates."""

    geo: str
    amap: str
    baidu: str


def map_links(lat: float, lon: float, *, name: str, place: str = "") -> MapLinks:
    """The links for a place at (lat, lon), WGS84 degrees, shown in the apps as `name` (and `place`,
    a line under it, in Baidu's)."""
    glat, glon = wgs84_to_gcj02(lat, lon)
    blat, blon = wgs84_to_bd09(lat, lon)
    amap = {
        "position": f"{glon:.6f},{glat:.6f}",
        "name": name,
        "src": SOURCE,
        "coordinate": "gaode",
        "callnative": 1,  # open the Amap app when installed, its web page when not
    }
    baidu = {
        "location": f"{blat:.6f},{blon:.6f}",
        "title": name,
        "content": place or name,
        "coord_type": "bd09ll",
        "output": "html",
        "src": f"webapp.{SOURCE}.tasks",
    }
    return MapLinks(
        geo=f"geo:{lat},{lon}?q={lat},{lon}",
        amap=f"https://uri.amap.com/marker?{urlencode(amap)}",
        baidu=f"https://api.map.baidu.com/marker?{urlencode(baidu)}",
    )
