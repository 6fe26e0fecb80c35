"""Grid import errors and position lookup (table tests), and the shipped demo grid."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from shapely.geometry import shape

from api.cases.grids import GridImportError, GridIndex, import_cells, parse_geojson
from api.services import Services
from api.storage.models import UNASSIGNED, GridCell
from tests.api.api_testkit import DEMO_GRID

SQUARE = [[[120.0, 30.0], [120.01, 30.0], [120.01, 30.01], [120.0, 30.01], [120.0, 30.0]]]


def feature(**changes: Any) -> dict[str, Any]:
    f: dict[str, Any] = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": copy.deepcopy(SQUARE)},
        "properties": {"id": "C1", "name": "Cell 1", "street": "S", "community": "C", "team": "t1"},
    }
    for key, value in changes.items():
        if key == "props":
            f["properties"].update(value)
        else:
            f[key] = value
    return f


BAD = [
    (
        feature(geometry={"type": "Point", "coordinates": [120, 30]}),
        "must be a Polygon or MultiPolygon, got Point",
    ),
    (feature(props={"team": ""}), "lack team"),
    (feature(props={"id": None}), "lack a cell id"),
    (
        feature(
            geometry={
                "type": "Polygon",
                "coordinates": [[[30.0, 200.0], [30.1, 200.0], [30.1, 200.1], [30.0, 200.0]]],
            }
        ),
        "not WGS84",
    ),
    (
        feature(
            geometry={
                "type": "Polygon",
                "coordinates": [[[120, 30], [120.01, 30.01], [120.01, 30], [120, 30.01], [120, 30]]],
            }
        ),
        "not valid (Self-intersection",
    ),
    (
        feature(geometry={"type": "Polygon", "coordinates": [[[120, 30], [120.01, 30], [120, 30]]]}),
        "Too few points",
    ),
    (feature(properties=None), "has no properties"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD)
def test_bad_feature_is_named_with_reason(bad: dict[str, Any], reason: str) -> None:
    good = feature(props={"id": "OK"})
    with pytest.raises(GridImportError) as err:
        parse_geojson({"type": "FeatureCollection", "features": [good, bad]})
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("feature 1")
    assert reason in err.value.problems[0]


def test_duplicate_ids_and_top_level() -> None:
    with pytest.raises(GridImportError, match="duplicate cell id"):
        parse_geojson({"type": "FeatureCollection", "features": [feature(), feature()]})
    with pytest.raises(GridImportError, match="FeatureCollection"):
        parse_geojson([])


LOOKUP = [
    ((30.005, 120.005), "A"),
    ((30.015, 120.005), "B"),
    ((30.01, 120.005), "A"),  # on the shared border: the smaller id
    ((30.5, 120.5), UNASSIGNED),
    ((None, None), UNASSIGNED),
    ((30.005, 120.025), "M"),  # second part of a MultiPolygon
]


@pytest.mark.parametrize(("point", "cell"), LOOKUP)
def test_lookup(point: tuple[float | None, float | None], cell: str) -> None:
    a = {"type": "Polygon", "coordinates": SQUARE}
    b = {"type": "Polygon", "coordinates": [[[x, y + 0.01] for x, y in SQUARE[0]]]}
    m = {
        "type": "MultiPolygon",
        "coordinates": [[[[x + 0.05, y] for x, y in SQUARE[0]]], [[[x + 0.02, y] for x, y in SQUARE[0]]]],
    }
    index = GridIndex([("B", "tb", shape(b)), ("A", "ta", shape(a)), ("M", "tm", shape(m))])
    assert index.lookup(*point).cell_id == cell


def test_demo_grid_covers_the_demo_camera() -> None:
    data = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    cells = parse_geojson(data)
    assert 24 <= len(cells) <= 100
    index = GridIndex([(c.id, c.team, shape(c.geometry)) for c in cells])
    assert index.lookup(30.2741, 120.1551).cell_id != UNASSIGNED  # configs/site.yaml demo-cam-01
    assert len({c.team for c in cells}) >= 3


def test_import_replaces_cells_and_cache_follows(services: Services) -> None:
    cells = parse_geojson({"type": "FeatureCollection", "features": [feature()]})
    with services.factory() as session:
        import_cells(session, cells=cells)
        session.commit()
        assert services.grid_cache.get(session).lookup(30.005, 120.005).cell_id == "C1"
    renamed = parse_geojson({"type": "FeatureCollection", "features": [feature(props={"id": "C2"})]})
    with services.factory() as session:
        import_cells(session, cells=renamed)
        session.commit()
        services.grid_cache.invalidate()
        assert [c.id for c in session.query(GridCell)] == ["C2"]
        assert services.grid_cache.get(session).lookup(30.005, 120.005).cell_id == "C2"
