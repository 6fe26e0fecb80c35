"""Patrol tracks for the grid map: the worker writes a thinned shape of an upload's GPS track when its
job finishes (api.jobs.track_shape), and the API lists uploads with tracks and serves the shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.jobs.track_shape import MAX_POINTS, read_track_shape, shape_path, thin, write_track_shape
from tests.api.api_testkit import LiveServer, wait_job
from tests.api.test_gps_tracks import TRACK_GPX, pipeline, still_video, worker_server

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def long_gpx(fixes: int) -> bytes:
    """A GPX of `fixes` fixes 1 s apart from START, heading north-east through DEMO-QINGBO-03."""
    points = "\n".join(
        f'  <trkpt lat="{30.2640 + i * 1e-6:.6f}" lon="{120.1480 + i * 2e-6:.6f}">'
        f"<time>{(START + timedelta(seconds=i)).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for i in range(fixes)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="van-1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>\n'
        f"{points}\n</trkseg></trk></gpx>\n"
    ).encode()


@pytest.mark.parametrize(
    ("n", "max_points", "expected"),
    [
        (0, 500, []),
        (1, 500, [0]),
        (3, 500, [0, 1, 2]),
        (500, 500, list(range(500))),
        (5, 3, [0, 2, 4]),
        (10, 4, [0, 3, 6, 9]),
        (7, 2, [0, 6]),
        (11, 6, [0, 2, 4, 6, 8, 10]),
    ],
)
def test_thin_keeps_evenly_spaced_points_and_both_ends(n: int, max_points: int, expected: list[int]) -> None:
    points = [(float(i), float(-i)) for i in range(n)]
    assert thin(points, max_points) == [(float(i), float(-i)) for i in expected]


def test_thin_refuses_fewer_than_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        thin([(0.0, 0.0)] * 3, 1)


def test_shape_of_a_long_gpx_is_thinned_to_500_lon_lat_points(tmp_path: Path) -> None:
    track = tmp_path / "abc.track.gpx"
    track.write_bytes(long_gpx(1201))
    written = write_track_shape(track)
    assert written == shape_path(track) == tmp_path / "abc.track.gpx.points.json"
    points = json.loads(written.read_text())
    assert len(points) == MAX_POINTS
    assert points[0] == [120.148, 30.264]  # [lon, lat], GeoJSON's order
    assert points[-1] == [120.1504, 30.2652]
    assert points == sorted(points)  # in time order (the track moves north-east)
    assert read_track_shape(track) == [tuple(p) for p in points]
    assert not list(tmp_path.glob(".shape-*"))  # no temporary file left behind


def test_the_shape_leaves_out_the_fixes_the_jump_check_drops(tmp_path: Path) -> None:
    """A receiver's stale first fix (0, 0: on the map a line from the Gulf of Guinea to the district)
    and a jump mid-way are not drawn, as the pipeline and the coverage leave them out."""
    text = long_gpx(20).decode()
    fixes = text.split("\n")
    first, middle = 2, 2 + 10  # the header is two lines
    fixes[first] = fixes[first].replace('lat="30.264000" lon="120.148000"', 'lat="0.000000" lon="0.000000"')
    assert 'lat="0.000000"' in fixes[first]
    fixes[middle] = fixes[middle].replace('lat="30.2640', 'lat="31.2640')
    track = tmp_path / "jumpy.track.gpx"
    track.write_text("\n".join(fixes))
    points = json.loads(write_track_shape(track).read_text())
    assert len(points) == 18
    assert all(30.26 < lat < 30.27 for _, lat in points)


def test_a_track_that_cannot_be_read_raises_the_named_track_error(tmp_path: Path) -> None:
    from streams import TrackError

    track = tmp_path / "bad.track.csv"
    track.write_text("time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n1,123.4,120\n")
    with pytest.raises(TrackError, match="line 3: bad latitude 123.4"):
        write_track_shape(track)
    assert not shape_path(track).exists()
    assert read_track_shape(track) is None


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return worker_server(make_server, sqlite_url, pipeline)


def test_uploads_with_tracks_are_listed_and_their_shapes_served(server: LiveServer, tmp_path: Path) -> None:
    with server.client("device") as device, server.client("operator") as operator:
        long = device.post(
            "/api/uploads",
            files={
                "file": ("patrol.avi", still_video(tmp_path / "a.avi", 1), "video/x-msvideo"),
                "track": ("patrol.gpx", long_gpx(1201), "application/gpx+xml"),
            },
            data={"start_time": "2026-11-20T09:00:00+08:00", "camera_id": "demo-cam-01"},
        )
        short = device.post(
            "/api/uploads",
            files={
                "file": ("short.avi", still_video(tmp_path / "b.avi", 2), "video/x-msvideo"),
                "track": ("short.gpx", TRACK_GPX, "application/gpx+xml"),
            },
            data={"start_time": "2026-11-20T09:00:00+08:00"},
        )
        untracked = device.post(
            "/api/uploads",
            files={"file": ("plain.avi", still_video(tmp_path / "c.avi", 3), "video/x-msvideo")},
        )
        jobs = [wait_job(device, r.json()["id"]) for r in (long, short, untracked)]
        assert [j["status"] for j in jobs] == ["done", "done", "done"], jobs
        long_id, short_id, plain_id = (j["upload"]["id"] for j in jobs)

        listed = operator.get("/api/uploads", params={"has_track": "true"})
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [i["id"] for i in items] == [short_id, long_id]  # newest first
        assert all(i["has_track"] and i["track_ready"] and i["job_status"] == "done" for i in items)
        assert [i["job_id"] for i in items] == [jobs[1]["id"], jobs[0]["id"]]
        assert items[1]["filename"] == "patrol.avi" and items[1]["camera_id"] == "demo-cam-01"
        assert items[1]["start_time"] == "2026-11-20T01:00:00Z"
        everything = operator.get("/api/uploads").json()["items"]
        assert [i["id"] for i in everything] == [plain_id, short_id, long_id]
        assert (
            operator.get("/api/uploads", params={"has_track": "false"}).json()["items"][0]["id"] == plain_id
        )

        track = operator.get(f"/api/uploads/{long_id}/track")
        assert track.status_code == 200, track.text
        body = track.json()
        assert body["upload_id"] == long_id and body["camera_id"] == "demo-cam-01"
        assert len(body["points"]) == MAX_POINTS
        assert body["points"][0] == [120.148, 30.264] and body["points"][-1] == [120.1504, 30.2652]
        assert operator.get(f"/api/uploads/{short_id}/track").json()["points"] == [
            [120.148, 30.264],
            [120.152, 30.268],
        ]

        none = operator.get(f"/api/uploads/{plain_id}/track")
        assert none.status_code == 404 and "without a GPS track" in none.json()["detail"]
        assert operator.get("/api/uploads/999999/track").status_code == 404

        # the shape is written when the job finishes: before that the track is listed but not ready
        uploads_dir = Path(server.services.settings.uploads_dir)
        shape = shape_path(uploads_dir / f"{items[0]['sha256']}.track.gpx")
        shape.rename(shape.with_suffix(".moved"))
        listed_again = operator.get("/api/uploads", params={"has_track": "true"}).json()["items"]
        assert [(i["id"], i["track_ready"]) for i in listed_again] == [(short_id, False), (long_id, True)]
        assert operator.get(f"/api/uploads/{short_id}/track").status_code == 404

    with server.client("viewer") as viewer:
        assert viewer.get("/api/uploads").status_code == 403
        assert viewer.get(f"/api/uploads/{long_id}/track").status_code == 403
    with server.client("ziyang") as enforcement:
        assert enforcement.get(f"/api/uploads/{long_id}/track").status_code == 200
