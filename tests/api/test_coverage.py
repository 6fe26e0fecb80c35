"""Which grid cells a patrol passed (api/jobs/coverage.py, issue 12): passes from a track's fixes (table
tests: entering, leaving, half steps at a border, a gap ending a pass, fixes outside every cell), and
through the service: an upload with a GPS track, its job done by the worker, lists the cells it passed
in GET /api/coverage, by time window, written once however often the job runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely.geometry
from sqlalchemy import event, text

from api.accounts.accounts import create_user
from api.accounts.tokens import login
from api.cases.grids import Assignment, GridIndex
from api.errors import DamagedRecord
from api.jobs.coverage import _metres, cell_passes, coverage, off_grid_warning
from api.services import Services
from api.storage.models import Upload, UploadCoverage
from tests.api.api_testkit import LiveServer, make_settings, upload_with_track, wait_job
from tests.api.test_gps_tracks import server, still_video  # noqa: F401  (the worker with a scripted pipeline)

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
M_PER_DEG_LON = 111_195.0 * 0.8660254  # at 30 degrees north


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lookup(lat: float, lon: float) -> Assignment | None:
    """Three cells side by side along the equator-ish strip: A [0, 100 m), B [100 m, 200 m) east of
    120.0 E at 30 N, nothing beyond 200 m or south of 29.99."""
    east_m = (lon - 120.0) * M_PER_DEG_LON
    if lat < 29.99 or not 0 <= east_m < 200:
        return None
    return Assignment("A" if east_m < 100 else "B", "team-" + ("a" if east_m < 100 else "b"))


def east(metres: float) -> float:
    return 120.0 + metres / M_PER_DEG_LON


def test_passes_through_cells_with_their_metres() -> None:
    fixes = [(at(s), 30.0, east(20 * s)) for s in range(10)]  # 20 m/s due east from 0 to 180 m
    passes = cell_passes(fixes, lookup)
    assert [(p.cell_id, p.team) for p in passes] == [("A", "team-a"), ("B", "team-b")]
    a, b = passes
    assert (a.entered_at, a.left_at) == (at(0), at(5))  # left at the first fix outside it (100 m)
    assert (b.entered_at, b.left_at) == (at(5), at(9))
    # 0..80 m in A, the step 80->100 split at the border: half each; B from 100 to 180 m
    assert a.metres == pytest.approx(80 + 10, abs=0.5)
    assert b.metres == pytest.approx(10 + 80, abs=0.5)
    assert a.metres + b.metres == pytest.approx(_metres(fixes[0], fixes[-1]), abs=0.5)


@pytest.mark.parametrize(
    ("fixes", "expected"),
    [
        # a gap of 60 s (> 30 s) in A ends the pass at its last fix and starts another
        (
            [(at(0), 30.0, east(10)), (at(10), 30.0, east(20)), (at(70), 30.0, east(30))],
            [("A", 0, 10), ("A", 70, 70)],
        ),
        # outside every cell, in, out again: one pass, left at the first fix outside
        ([(at(0), 29.0, east(10)), (at(5), 30.0, east(10)), (at(10), 29.0, east(10))], [("A", 5, 10)]),
        # back and forth between A and B: a pass each time
        (
            [
                (at(0), 30.0, east(90)),
                (at(1), 30.0, east(110)),
                (at(2), 30.0, east(90)),
                (at(3), 30.0, east(110)),
            ],
            [("A", 0, 1), ("B", 1, 2), ("A", 2, 3), ("B", 3, 3)],
        ),
        ([(at(0), 29.0, east(10)), (at(5), 29.0, east(500))], []),  # never in a cell
        ([], []),
    ],
)
def test_pass_table(fixes: list[tuple[datetime, float, float]], expected: list[tuple[str, int, int]]) -> None:
    got = [(p.cell_id, p.entered_at, p.left_at) for p in cell_passes(fixes, lookup)]
    assert got == [(cell, at(entered), at(left)) for cell, entered, left in expected]


# the van drives north from DEMO-QINGBO-02 through 03 into 04 (cells 30.255627-30.262814-30.27-30.277186
# N between 120.146679 and 120.155 E in configs/demo-grid.geojson), a fix every 10 s
CROSSING_GPX = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="van-2" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
  <trkpt lat="30.2600" lon="120.1500"><time>2026-11-20T02:00:00Z</time></trkpt>
  <trkpt lat="30.2620" lon="120.1500"><time>2026-11-20T02:00:10Z</time></trkpt>
  <trkpt lat="30.2640" lon="120.1500"><time>2026-11-20T02:00:20Z</time></trkpt>
  <trkpt lat="30.2680" lon="120.1500"><time>2026-11-20T02:00:30Z</time></trkpt>
  <trkpt lat="30.2720" lon="120.1500"><time>2026-11-20T02:00:40Z</time></trkpt>
</trkseg></trk></gpx>
"""


def patrol_across_three_cells(device: httpx.Client, tmp_path: Path) -> None:
    """The device uploads a clip with CROSSING_GPX, started at the track's first fix (02:00Z); its job
    is waited for and done."""
    made = upload_with_track(
        device,
        still_video(tmp_path / "a.avi", 7),
        ("patrol.gpx", CROSSING_GPX, "application/gpx+xml"),
        "2026-11-20T10:00:00+08:00",
    )
    assert wait_job(device, made.json()["id"])["status"] == "done"


def test_an_uploads_track_lists_the_cells_it_passed(server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    with server.client("device") as device, server.client("operator") as operator:
        patrol_across_three_cells(device, tmp_path)
        covered = operator.get("/api/coverage", params={"since": "2026-11-20T00:00:00Z"}).json()["cells"]
        assert [c["cell_id"] for c in covered] == ["DEMO-QINGBO-02", "DEMO-QINGBO-03", "DEMO-QINGBO-04"]
        by_cell = {c["cell_id"]: c for c in covered}
        middle = by_cell["DEMO-QINGBO-03"]
        assert middle["team"] == "team-qingbo" and len(middle["passes"]) == 1
        one = middle["passes"][0]
        assert (one["entered_at"], one["left_at"]) == ("2026-11-20T02:00:20Z", "2026-11-20T02:00:40Z")
        uploads = operator.get("/api/uploads").json()["items"]
        assert one["upload_id"] == next(u["id"] for u in uploads if u["filename"] == "patrol.avi")
        # 30.2620 -> 30.2640 crosses into 03 (half the 222 m step), 30.2640 -> 30.2680 (445 m) in it,
        # 30.2680 -> 30.2720 crosses out (half of 445 m)
        assert middle["metres"] == pytest.approx(111 + 445 + 222, rel=0.02)
        total = sum(c["metres"] for c in covered)
        assert total == pytest.approx(1334, rel=0.02)  # 0.012 degrees of latitude
        later = operator.get("/api/coverage", params={"since": "2026-11-21T00:00:00Z"}).json()
        assert later == {"total": 0, "page": 1, "per_page": 50, "passes_per_cell": 20, "cells": []}
        assert (
            operator.get("/api/coverage", params={"until": "2026-11-20T02:00:10Z"}).json()["cells"][0][
                "cell_id"
            ]
            == "DEMO-QINGBO-02"
        )
        assert operator.get("/api/coverage", params={"since": "yesterday"}).status_code == 422


def test_coverage_comes_a_page_of_cells_at_a_time(server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    """GET /api/coverage pages its cells (by id) as /api/cases pages its cases: page and per_page with
    the same limits, the total of cells passed; a bad value is a 422 naming it. It listed every cell
    passed in the window in one answer, however many."""
    with server.client("device") as device, server.client("operator") as operator:
        patrol_across_three_cells(device, tmp_path)
        whole = operator.get("/api/coverage").json()
        assert (whole["total"], whole["page"], whole["per_page"]) == (3, 1, 50)
        pages = [operator.get("/api/coverage", params={"per_page": 2, "page": n}).json() for n in (1, 2, 3)]
        assert [[c["cell_id"] for c in p["cells"]] for p in pages] == [
            ["DEMO-QINGBO-02", "DEMO-QINGBO-03"],
            ["DEMO-QINGBO-04"],
            [],
        ]
        assert [p["total"] for p in pages] == [3, 3, 3]
        assert pages[0]["cells"] + pages[1]["cells"] == whole["cells"]  # each cell with all its passes
        windowed = operator.get(
            "/api/coverage", params={"until": "2026-11-20T02:00:30Z", "per_page": 1, "page": 2}
        ).json()
        assert windowed["total"] == 2 and [c["cell_id"] for c in windowed["cells"]] == ["DEMO-QINGBO-03"]
        for params, field in [
            ({"per_page": "0"}, "per_page"),
            ({"per_page": "501"}, "per_page"),
            ({"page": "0"}, "page"),
            ({"page": "100001"}, "page"),
            ({"page": "x"}, "page"),
        ]:
            bad = operator.get("/api/coverage", params=params)
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field, bad.text
        assert operator.get("/api/coverage", params={"per_page": 500, "page": 100_000}).json()["cells"] == []


def test_a_busy_cell_lists_its_latest_passes_and_counts_them_all(make_server: Any, sqlite_url: str) -> None:
    """A cell passed five times lists its latest passes_per_cell passes (in time order) and says it
    has five in all (passes_total), its metres and seconds summed over all five; a cell passed once
    lists it whole. Before, each cell listed every pass in the window, however many."""
    service = make_server(sqlite_url, run_worker=False, run_webhooks=False, people=False, grid=False)
    with service.services.factory() as session:
        create_user(session, username="op", password="op-secret", role="operator")
        upload = Upload(sha256="c" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
        session.add(upload)
        session.flush()
        minutes_in = [("A", 0), ("B", 1), ("A", 4), ("A", 2), ("A", 5), ("A", 3)]  # not in time order
        session.add_all(
            UploadCoverage(
                upload_id=upload.id,
                cell_id=cell_id,
                team="t",
                entered_at=at(minute * 60).replace(tzinfo=None),
                left_at=at(minute * 60 + 10).replace(tzinfo=None),
                metres=100.0,
            )
            for cell_id, minute in minutes_in
        )
        session.commit()
    service.tokens["operator"] = login(service.services.factory, username="op", password="op-secret", ttl_h=1)
    with service.client("operator") as operator:
        found = operator.get("/api/coverage", params={"passes_per_cell": 2}).json()
        assert found["passes_per_cell"] == 2
        busy, quiet = found["cells"]
        assert [p["entered_at"] for p in busy["passes"]] == ["2026-11-20T01:04:00Z", "2026-11-20T01:05:00Z"]
        assert (busy["passes_total"], busy["metres"], busy["seconds"]) == (5, 500.0, 50.0)
        assert (len(quiet["passes"]), quiet["passes_total"]) == (1, 1)
        assert len(operator.get("/api/coverage").json()["cells"][0]["passes"]) == 5  # 20 by default
        for bad in ("0", "201"):
            answer = operator.get("/api/coverage", params={"passes_per_cell": bad})
            assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "passes_per_cell"


def test_a_cell_with_many_passes_reads_only_the_latest_ones(services: Services) -> None:
    """A cell passed 300 times, asked for its latest 7: the database counts and sums all 300 (metres,
    seconds to the microsecond) and hands over the 7 latest rows only; passes entered at the same time
    go by id, the team is the latest pass's. Before, every pass of the page's cells in the window was
    read and summed in Python, 100,000 rows for a busy cell on every request."""
    with services.factory() as session:
        upload = Upload(sha256="d" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
        session.add(upload)
        session.flush()
        passes = [
            UploadCoverage(
                upload_id=upload.id,
                cell_id="BUSY",
                team=f"team-{n}",
                entered_at=at(10 * (n // 2)).replace(tzinfo=None),  # two passes each time
                left_at=at(10 * (n // 2) + 3 + n / 1000 + 0.000_001).replace(tzinfo=None),
                metres=n / 10,
            )
            for n in range(300)
        ]
        passes.append(
            UploadCoverage(  # before the window: neither listed nor summed
                upload_id=upload.id,
                cell_id="BUSY",
                team="old",
                entered_at=at(-60).replace(tzinfo=None),
                left_at=at(-50).replace(tzinfo=None),
                metres=9.0,
            )
        )
        session.add_all(passes)
        session.commit()
        ids = [p.id for p in passes]
    loaded: list[int] = []

    def count(target: UploadCoverage, _context: object) -> None:
        loaded.append(target.id)

    event.listen(UploadCoverage, "load", count)
    try:
        with services.factory() as session:
            found = coverage(session, since=T0, until=None, passes_per_cell=7)
    finally:
        event.remove(UploadCoverage, "load", count)
    (busy,) = found.cells
    assert [p.id for p in busy.passes] == ids[293:300]
    assert len(loaded) == 7
    assert busy.team == "team-299" and busy.passes_total == 300
    assert busy.metres == pytest.approx(sum(n / 10 for n in range(300)))
    seconds = sum(3 + n / 1000 + 0.000_001 for n in range(300))
    assert busy.seconds == pytest.approx(seconds, abs=1e-6)


def test_an_unlisted_pass_with_a_garbled_time_is_still_named(tmp_path: Path, sqlite_url: str) -> None:
    """SQLite: a pass whose time was edited into no time, older than those listed, is a DamagedRecord
    naming the value (a 503), as when every pass was read; not a sum that leaves it out."""
    services = Services.build(make_settings(tmp_path, sqlite_url))
    try:
        with services.factory() as session:
            upload = Upload(sha256="e" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
            session.add(upload)
            session.flush()
            session.add_all(
                UploadCoverage(
                    upload_id=upload.id,
                    cell_id="A",
                    team="t",
                    entered_at=at(60 * n).replace(tzinfo=None),
                    left_at=at(60 * n + 5).replace(tzinfo=None),
                    metres=1.0,
                )
                for n in range(3)
            )
            session.commit()
            session.execute(
                text("UPDATE upload_coverage SET left_at = 'garbage' WHERE entered_at < '2026-11-20 01:01'")
            )
            session.commit()
        with services.factory() as session, pytest.raises(DamagedRecord, match="'garbage'"):
            coverage(session, since=None, until=None, passes_per_cell=1)
    finally:
        services.close()


def test_an_enforcement_user_reads_the_passes_of_its_teams_cells_only(
    make_server: Any, sqlite_url: str
) -> None:
    """GET /api/coverage as the periodic report counts the passes: an enforcement user gets its team's
    cells as the grid has them now (a cell a grid import gave it, with its passes from before; not
    the cell taken from it); everyone else every cell. Before, team-ziyang read team-hubin's passes
    there, while its report, its cases and its map showed its own cells only."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    service = make_server(sqlite_url, run_worker=False, run_webhooks=False)
    with service.services.factory() as session:
        upload = Upload(sha256="f" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
        session.add(upload)
        session.flush()
        for n, (cell_id, team) in enumerate(
            [
                ("DEMO-ZIYANG-04", "team-ziyang"),
                ("DEMO-ZIYANG-05", "team-ziyang"),
                ("DEMO-HUBIN-04", "team-hubin"),
            ]
        ):
            session.add(
                UploadCoverage(
                    upload_id=upload.id,
                    cell_id=cell_id,
                    team=team,
                    entered_at=at(60 * n).replace(tzinfo=None),
                    left_at=at(60 * n + 10).replace(tzinfo=None),
                    metres=50.0,
                )
            )
        session.commit()

    def cells(client: httpx.Client) -> tuple[int, list[str]]:
        found = client.get("/api/coverage").json()
        return found["total"], [cell["cell_id"] for cell in found["cells"]]

    everything = (3, ["DEMO-HUBIN-04", "DEMO-ZIYANG-04", "DEMO-ZIYANG-05"])
    with (
        service.client("admin") as admin,
        service.client("viewer") as viewer,
        service.client("ziyang") as ziyang,
        service.client("hubin") as hubin,
    ):
        assert cells(ziyang) == (2, ["DEMO-ZIYANG-04", "DEMO-ZIYANG-05"])
        assert cells(hubin) == (1, ["DEMO-HUBIN-04"])
        assert cells(admin) == cells(viewer) == everything
        grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
        for feature in grid["features"]:
            if feature["properties"]["id"] == "DEMO-ZIYANG-05":
                feature["properties"]["team"] = "team-hubin"
        assert admin.put("/api/grids", json=grid).status_code == 200
        assert cells(ziyang) == (1, ["DEMO-ZIYANG-04"])
        assert cells(hubin) == (2, ["DEMO-HUBIN-04", "DEMO-ZIYANG-05"])
        assert cells(admin) == everything


def test_each_cell_is_labelled_with_the_team_the_grid_gives_it_now(make_server: Any, sqlite_url: str) -> None:
    """A grid import gives DEMO-ZIYANG-05 to team-hubin: /api/coverage labels the cell team-hubin, with
    its passes from before, as the periodic report counts it; a cell no longer in the grid keeps the
    team of its latest pass. Before, every cell showed the team recorded on its latest pass, the old
    team after the import."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    service = make_server(sqlite_url, run_worker=False, run_webhooks=False)
    with service.services.factory() as session:
        upload = Upload(sha256="9" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
        session.add(upload)
        session.flush()
        for n, (cell_id, team) in enumerate(
            [("DEMO-ZIYANG-05", "team-ziyang"), ("GONE-01", "team-old"), ("GONE-01", "team-older")]
        ):
            session.add(
                UploadCoverage(
                    upload_id=upload.id,
                    cell_id=cell_id,
                    team=team,
                    entered_at=at(-60 * n).replace(tzinfo=None),  # the first listed is the latest
                    left_at=at(-60 * n + 10).replace(tzinfo=None),
                    metres=50.0,
                )
            )
        session.commit()

    def teams(client: httpx.Client, **params: Any) -> dict[str, str | None]:
        return {
            cell["cell_id"]: cell["team"]
            for cell in client.get("/api/coverage", params=params).json()["cells"]
        }

    with service.client("admin") as admin:
        assert teams(admin) == {"DEMO-ZIYANG-05": "team-ziyang", "GONE-01": "team-old"}
        grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
        for feature in grid["features"]:
            if feature["properties"]["id"] == "DEMO-ZIYANG-05":
                feature["properties"]["team"] = "team-hubin"
        assert admin.put("/api/grids", json=grid).status_code == 200
        assert teams(admin) == {"DEMO-ZIYANG-05": "team-hubin", "GONE-01": "team-old"}
        assert teams(admin, per_page=1, page=2) == {"GONE-01": "team-old"}


# a small grid of two cells side by side in Paris (lon 2.34..2.36 E, lat 48.85..48.86 N): a longitude
# under 90 reads as a latitude too, so a track with the two swapped is in range, and must be told
PARIS_GRID = [
    ("PARIS-W", "team-w", shapely.geometry.box(2.34, 48.85, 2.35, 48.86)),
    ("PARIS-E", "team-e", shapely.geometry.box(2.35, 48.85, 2.36, 48.86)),
]


@pytest.mark.parametrize(
    ("points", "said"),
    [
        ([(48.855, 2.345), (48.90, 2.40)], None),  # a fix in a cell: nothing to say
        ([(48.90, 2.40)], "its nearest fix (48.90000, 2.40000) is 5.3 km from the grid's bounds"),
        ([(2.345, 48.855), (2.355, 48.855)], "with latitude and longitude swapped, 2 of its 2 fixes"),
        ([(2.345, 48.855), (2.5, 47.0)], "with latitude and longitude swapped, 1 of its 2 fixes"),
        ([(51.5074, -0.1278)], "is 342.8 km from the grid's bounds"),  # London's track
        ([], None),
    ],
)
def test_a_track_that_passes_no_grid_cell_is_told(
    points: list[tuple[float, float]], said: str | None
) -> None:
    fixes = [(at(10 * i), lat, lon) for i, (lat, lon) in enumerate(points)]
    warning = off_grid_warning(fixes, GridIndex(PARIS_GRID), "drive_0612.gpx")
    if said is None:
        assert warning is None
        return
    assert warning is not None and said in warning, warning
    assert warning.startswith(
        "GPS track 'drive_0612.gpx' passes through no grid cell, so the incidents it placed are filed "
        "without one (unassigned): "
    )
    assert ("wrong way round" in warning) == ("swapped" in said)
    assert ("another place's track" in warning) == ("swapped" not in said)


def test_a_track_between_the_cells_is_told_so_and_without_a_grid_nothing_is() -> None:
    ring = [
        ("N", None, shapely.geometry.box(2.34, 48.855, 2.36, 48.86)),
        ("S", None, shapely.geometry.box(2.34, 48.84, 2.36, 48.845)),
    ]
    between = [(at(0), 48.85, 2.35)]
    warning = off_grid_warning(between, GridIndex(ring), "t.csv")
    assert warning is not None and "is within the grid's bounds but between its cells" in warning
    assert off_grid_warning(between, GridIndex([]), "t.csv") is None
