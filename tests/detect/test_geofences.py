"""Geofences for moving cameras (detect/geofences.py, issue 12): which prohibitions hold at a WGS84
point and local time, allowed places lifting them while active, and a bad file named feature by
feature (also through the site config, which checks it when loaded)."""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from detect.config import ConfigError, load_config
from detect.geofences import load_geofences, parse_geofences
from streams.frame import GeoPoint

SITE = Path(__file__).resolve().parents[2] / "configs" / "site.yaml"


def square(lon: float, lat: float, size: float = 0.001) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(fence_id: str, kind: str, geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"id": fence_id, "kind": kind, **props}, "geometry": geometry}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


# a no-parking street (0.002 deg square) with a parking bay inside it (06:00-22:00 only) and a market
# on the same street allowed 17:00-02:00 (wrapping midnight) inside a no-vending zone
STREET = collection(
    feature("street", "no_parking", square(120.150, 30.260, 0.002)),
    feature("bay", "parking_allowed", square(120.1505, 30.2605, 0.0005), active_hours=["06:00-22:00"]),
    feature("no-stalls", "no_vending", square(120.150, 30.260, 0.002)),
    feature("night-market", "vending_allowed", square(120.151, 30.261, 0.0005), active_hours=["17:00-02:00"]),
    feature("dump", "no_dumping", square(120.160, 30.270)),
)


@pytest.mark.parametrize(
    ("lat", "lon", "local", "kinds"),
    [
        (30.2601, 120.1501, time(12, 0), {"no_parking", "no_vending"}),  # the street, outside bay/market
        (30.2607, 120.1507, time(12, 0), {"no_vending"}),  # in the bay by day: parking allowed
        (30.2607, 120.1507, time(23, 0), {"no_parking", "no_vending"}),  # the bay closed at night
        (30.2612, 120.1512, time(18, 0), {"no_parking"}),  # the night market open
        (30.2612, 120.1512, time(1, 30), {"no_parking"}),  # still open after midnight
        (30.2612, 120.1512, time(3, 0), {"no_parking", "no_vending"}),  # closed
        (30.2705, 120.1605, time(3, 0), {"no_dumping"}),
        (30.3000, 120.2000, time(12, 0), set()),  # nowhere
        (30.2600, 120.1500, time(12, 0), {"no_parking", "no_vending"}),  # on the corner: inside
    ],
)
def test_prohibitions_at_a_place_and_time(lat: float, lon: float, local: time, kinds: set[str]) -> None:
    assert parse_geofences(STREET).kinds_at(GeoPoint(lat, lon), local) == kinds


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (feature("x", "no_smoking", square(120.0, 30.0)), "feature 0 (x): properties.kind 'no_smoking'"),
        (feature("", "no_parking", square(120.0, 30.0)), "feature 0: properties.id must be 1-64"),
        (
            feature("x", "no_parking", {"type": "Point", "coordinates": [120.0, 30.0]}),
            "Polygon or MultiPolygon",
        ),
        (feature("x", "no_parking", square(30.0, 120.0)), "[lon, lat] in WGS84"),  # lat/lon swapped
        (
            feature(
                "x",
                "no_parking",
                {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            ),
            "crosses itself",
        ),
        (feature("x", "no_parking", square(120.0, 30.0), active_hours=["25:00-26:00"]), "HH:MM-HH:MM"),
    ],
)
def test_a_bad_fence_is_named(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_geofences(collection(bad))
    assert message in str(caught.value)


def test_twice_the_same_id_and_not_a_collection() -> None:
    twice = collection(
        feature("a", "no_parking", square(120.0, 30.0)), feature("a", "no_vending", square(120.0, 30.0))
    )
    with pytest.raises(ConfigError, match=r"feature 1 \(a\): the id is used twice"):
        parse_geofences(twice)
    with pytest.raises(ConfigError, match="not a GeoJSON FeatureCollection"):
        parse_geofences({"type": "Feature"})


def test_the_site_config_checks_its_geofence_file(tmp_path: Path) -> None:
    site = yaml.safe_load(SITE.read_text())
    site["model"]["weights"] = str((SITE.parent / site["model"]["weights"]).resolve())
    (tmp_path / "fences.geojson").write_text(json.dumps(STREET))
    site["geofences"] = "fences.geojson"  # relative to the config file
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    config = load_config(tmp_path / "site.yaml")
    assert config.geofences == (tmp_path / "fences.geojson").resolve()
    assert len(load_geofences(config.geofences)) == 5
    (tmp_path / "fences.geojson").write_text(
        json.dumps(collection(feature("x", "nope", square(120.0, 30.0))))
    )
    with pytest.raises(ConfigError, match=r"fences.geojson: feature 0 \(x\): properties.kind 'nope'"):
        load_config(tmp_path / "site.yaml")
    (tmp_path / "fences.geojson").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable GeoJSON"):
        load_config(tmp_path / "site.yaml")
