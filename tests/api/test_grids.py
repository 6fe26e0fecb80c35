"""Grid import errors and position lookup (table tests), and the shipped demo grid."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from api.cases.grids import GridImportError, GridIndex, import_cells, parse_geojson
from api.cli.main import main
from api.http.cookies import csrf_token_for
from api.services import Services
from api.storage.models import UNASSIGNED, GridCell
from tests.api.api_testkit import DEMO_GRID, LiveServer, incident_json, post_incident

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
    # each text within its column, and of the type it is stored as (no str() of an object)
    (feature(props={"team": "t" * 65}), "team has 65 characters; at most 64"),
    (feature(props={"name": "n" * 201}), "name has 201 characters; at most 200"),
    (feature(props={"street": "s" * 201}), "street has 201 characters; at most 200"),
    (feature(props={"community": ["c"]}), "community must be a string, not a list"),
    (feature(props={"id": {"a": 1}}), "cell id must be a string (or a whole number), not an object"),
    (feature(props={"id": True}), "cell id must be a string (or a whole number), not a boolean"),
    (feature(props={"id": "c" * 65}), "cell id must be 1-64 characters"),
    (feature(props={"team": 7}), "team must be a string, not a number"),
    (feature(props={"team": " t1 "}), "team ' t1 ' has spaces around it"),
    (feature(props={"name": "a\nb"}), "name has control characters"),
    (
        feature(geometry={"type": "Polygon", "coordinates": [copy.deepcopy(SQUARE)]}),
        "coordinates nested deeper than a Polygon's",
    ),
    (
        feature(geometry={"type": "Polygon", "coordinates": [[[[[[120.0, 30.0]]]]]] * 3}),
        "coordinates nested deeper than a Polygon's",
    ),
    (
        feature(geometry={"type": "Polygon", "coordinates": [[120.0, 30.0], [120.1, 30.0]]}),
        "a position at nesting depth 1: a Polygon's are at 2",
    ),
    (
        feature(geometry={"type": "Polygon", "coordinates": [[[120.0, "30"]] * 4]}),
        "position [120.0, '30'] is not all numbers",
    ),
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


def test_every_text_problem_of_a_feature_is_named() -> None:
    bad = feature(props={"name": "n" * 500, "team": "t" * 300})
    with pytest.raises(GridImportError) as err:
        parse_geojson({"type": "FeatureCollection", "features": [bad]})
    assert err.value.problems == [
        "feature 0 (id 'C1'): name has 500 characters; at most 200; team has 300 characters; at most 64"
    ]


def test_a_whole_number_id_and_the_longest_texts_are_imported(services: Services) -> None:
    props = {"id": 17, "name": "n" * 200, "team": "t" * 64, "street": "s" * 200, "community": None}
    cells = parse_geojson({"type": "FeatureCollection", "features": [feature(props=props)]})
    with services.factory() as session:
        import_cells(session, cells=cells)
        session.commit()
        cell = session.get(GridCell, "17")
        assert cell is not None and (len(cell.name), len(cell.team), cell.community) == (200, 64, None)


def test_a_file_is_named_once_and_deep_nesting_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    deep = tmp_path / "deep.json"
    collection = {"type": "FeatureCollection", "features": [feature(geometry={"type": "Polygon"})]}
    deep.write_text(
        json.dumps(collection).replace(
            '"Polygon"}', '"Polygon", "coordinates": ' + "[" * 100_000 + "]" * 100_000 + "}"
        )
    )
    empty = tmp_path / "empty.json"
    empty.write_text("")
    wide = tmp_path / "wide.json"
    wide.write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature(props={"team": "t" * 300})]})
    )
    for path, reason in (
        (deep, "not readable JSON (nested too deeply)"),
        (empty, "not readable JSON (Expecting value: line 1 column 1 (char 0))"),
        (tmp_path / "missing.json", "no such file"),
        (tmp_path, "a folder, not a file"),
        (wide, "feature 0 (id 'C1'): team has 300 characters; at most 64"),
    ):
        assert main(["-q", "grid", "import", str(path)]) == 1
        err = capsys.readouterr().err
        assert err == f"gridpatrol grid: error: {path}: {reason}\n", err
    assert not (tmp_path / "data").exists()  # nothing imported, no database made for it


@pytest.mark.parametrize(
    ("encoding", "head"),
    [("utf-8", b"\xef\xbb\xbf"), ("utf-16", b""), ("utf-8", b"")],
    ids=["utf-8 with a byte-order mark", "utf-16", "utf-8"],
)
def test_the_cli_imports_a_file_in_the_encodings_the_admin_page_takes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encoding: str,
    head: bytes,
) -> None:
    """A GeoJSON saved by a Windows editor starts with a byte-order mark: the admin page imported it,
    `gridpatrol grid import` refused it ("Unexpected UTF-8 BOM")."""
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    saved = tmp_path / "grid.geojson"
    saved.write_bytes(head + DEMO_GRID.read_text(encoding="utf-8").encode(encoding))
    assert main(["-q", "grid", "import", str(saved)]) == 0, capsys.readouterr().err
    assert "imported 36 grid cells" in capsys.readouterr().out


# --- re-importing a grid over open cases ----------------------------------------------------------------


def _demo_collection() -> dict[str, Any]:
    return json.loads(DEMO_GRID.read_text(encoding="utf-8"))


def _inside(collection: dict[str, Any], cell_id: str) -> tuple[float, float]:
    """(lat, lon) of a point inside a cell of the collection."""
    f = next(f for f in collection["features"] if f["properties"]["id"] == cell_id)
    point = shape(f["geometry"]).representative_point()
    return point.y, point.x


def test_a_reimport_that_strands_open_cases_is_refused_unless_forced(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_server(sqlite_url, run_webhooks=False)
    demo = _demo_collection()
    removed, reteamed = "DEMO-ZIYANG-04", "DEMO-ZIYANG-05"
    with server.client("device") as device:
        for n, cell in enumerate((removed, reteamed)):
            created = post_incident(device, incident_json(f"inc-{n}", position=_inside(demo, cell)))
            assert created.status_code == 201, created.text
    old_team = next(f for f in demo["features"] if f["properties"]["id"] == removed)["properties"]["team"]
    changed = copy.deepcopy(demo)
    changed["features"] = [f for f in changed["features"] if f["properties"]["id"] != removed]
    for f in changed["features"]:
        if f["properties"]["id"] == reteamed:
            f["properties"]["team"] = "team-new"
    path = tmp_path / "changed.geojson"
    path.write_text(json.dumps(changed))
    count = len(changed["features"])
    stranded = [
        f"cell {removed} (team {old_team}) is removed with 1 open case(s): they keep cell {removed} and "
        f"team {old_team} (the map no longer shows them; new sightings there go to the cell their "
        "position is in now)",
        f"cell {reteamed} moves from team {old_team} to team team-new with 1 open case(s): they stay "
        f"with team {old_team} until dispatched to another (new cases go to team-new)",
    ]

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    capsys.readouterr()
    assert main(["-q", "grid", "import", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"gridpatrol grid: error: {path}: not imported: it would leave open cases behind:\n  "
        + "\n  ".join(stranded)
        + "\nClose or dispatch them first, or import anyway with --force\n"
    )
    with server.client("admin") as admin:
        refused = admin.put("/api/grids", json=changed)
        assert refused.status_code == 409, refused.text
        assert refused.json()["errors"][0]["field"] == "force"
        assert len(admin.get("/api/grids").json()["features"]) == count + 1  # nothing changed

        forced = admin.put("/api/grids", params={"force": "true"}, json=changed)
        assert forced.status_code == 200, forced.text
        assert forced.json() == {"imported": count, "warnings": stranded}
        assert len(admin.get("/api/grids").json()["features"]) == count
    # once imported the cases are no longer in a re-teamed or removed cell the grid has: no refusal
    assert main(["-q", "grid", "import", str(path)]) == 0
    assert capsys.readouterr().out == f"imported {count} grid cells from {path}\n"
    # the demo grid back: the removed cell returns and the re-teamed one goes back to the team its open
    # case still has, which strands nothing
    assert main(["-q", "grid", "import", str(DEMO_GRID)]) == 0
    assert capsys.readouterr().out == f"imported {count + 1} grid cells from {DEMO_GRID}\n"


def _overlapping_grid() -> dict[str, Any]:
    """Cells A, B and C: B overlaps A and C; A and C share only a border."""
    shifted = {"type": "Polygon", "coordinates": [[[x + 0.005, y] for x, y in SQUARE[0]]]}
    beside = {"type": "Polygon", "coordinates": [[[x + 0.01, y] for x, y in SQUARE[0]]]}  # a shared border
    return {
        "type": "FeatureCollection",
        "features": [
            feature(props={"id": "B"}, geometry=shifted),
            feature(props={"id": "A"}),
            feature(props={"id": "C"}, geometry=beside),
        ],
    }


def test_overlapping_cells_are_imported_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "overlap.geojson"
    path.write_text(json.dumps(_overlapping_grid()))
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    assert main(["-q", "grid", "import", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "warning: cells A and B overlap: a position in both goes to A (the smaller id)",
        "warning: cells B and C overlap: a position in both goes to B (the smaller id)",
        f"imported 3 grid cells from {path}",
    ]


def test_the_admin_page_shows_an_imports_warnings(make_server: Any, sqlite_url: str) -> None:
    """The admin page's import shows the warnings with its result (before, they reached only the log)."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    token = server.tokens["admin"]
    with server.browser("admin") as admin:
        body = json.dumps(_overlapping_grid()).encode()
        page = admin.post(
            "/admin/grid",
            data={"csrf_token": csrf_token_for(token)},
            files={"file": ("overlap.geojson", body, "application/geo+json")},
        )
        assert page.status_code == 200, page.text[:300]
        assert "Imported 3 grid cells" in page.text and 'id="admin-warnings"' in page.text
        assert "The grid was imported, with 2 warnings:" in page.text
        assert "cells A and B overlap: a position in both goes to A (the smaller id)" in page.text
        # an import without warnings is answered as before: back to the grid page with its result
        demo = admin.post(
            "/admin/grid",
            data={"csrf_token": csrf_token_for(token)},
            files={"file": ("demo.geojson", DEMO_GRID.read_bytes(), "application/geo+json")},
        )
        assert demo.status_code == 303 and demo.headers["location"].startswith("/admin/grid?done=imported")
