"""Digital chalking end to end (issue 12): two patrol uploads, from two vehicles 20 minutes apart, through
a real server, its worker and the shipped model, on the synthetic drive-by of tests/drive_by.py (a real
car parked on a real street, seen from a driving car; what that proves and what not is said in
tests/detect/test_drive_by.py).

The first pass opens no case: it is a chalk mark, open, where the car stands. The second finds the car
still there: one illegal_parking case carrying both passes' evidence, both marks confirmed with it. A
third pass, 28 minutes after the first, confirms again and joins the same case.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from api.accounts.accounts import create_device
from detect.ground import GroundOffset, distance_m, offset_position
from streams.frame import GeoPoint
from tests.api.api_testkit import LiveServer, wait_job
from tests.drive_by import (
    DRIVE_BY_MOUNTING,
    RIGHT,
    START,
    Z0,
    drive_by,
    drive_by_gpx,
    patrol_site_data,
    samples_dir,
    write_video,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def server(make_server, sqlite_url: str, tmp_path: Path) -> LiveServer:  # type: ignore[no-untyped-def]
    samples_dir()
    site = tmp_path / "patrol-site.yaml"
    site.write_text(yaml.safe_dump(patrol_site_data(tmp_path, DRIVE_BY_MOUNTING), allow_unicode=True))
    live = make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        settings={"site_config": site, "worker_poll_s": 0.1},
    )
    with live.services.factory() as session:
        for van in ("van-a", "van-b"):
            _, live.tokens[van] = create_device(session, name=van, camera_id="patrol-test")
        session.commit()
    return live


# an hour ago: an open mark older than GRIDPATROL_CHALK_MAX_HOURS by the clock shows as expired
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _pass(server: LiveServer, van: str, video: Path, minutes: float) -> dict:
    """One upload of the drive-by by `van`, `minutes` after BASE, with its track; its finished job."""
    start = BASE + timedelta(minutes=minutes)
    body = video.read_bytes() + f"pass at +{minutes} min".encode()  # a new file: uploads are by content
    with server.client(van) as device:
        made = device.post(
            "/api/uploads",
            files={
                "file": (f"{van}.avi", body, "video/x-msvideo"),
                "track": (f"{van}.gpx", drive_by_gpx(start).encode(), "application/gpx+xml"),
            },
            data={"start_time": start.isoformat()},
        )
        assert made.status_code == 201, made.text
        job = wait_job(device, made.json()["id"], timeout=300)
    assert job["status"] == "done", job
    return job


def test_two_passes_of_a_parked_car_make_one_case(server: LiveServer, tmp_path: Path) -> None:
    from detect.config import load_config
    from detect.pipeline import build_detector

    detector = build_detector(load_config(Path(__file__).resolve().parents[2] / "configs" / "site.yaml"))
    video = write_video(
        drive_by(samples_dir(), detector, tmp_path / "frames", parked=True), tmp_path / "d.avi"
    )
    where = offset_position(START, 0.0, GroundOffset(Z0, RIGHT))

    _pass(server, "van-a", video, 0)
    with server.client("operator") as operator:
        assert operator.get("/api/cases", params={"category": "illegal_parking"}).json()["items"] == []
        marks = operator.get("/api/chalk-marks").json()["items"]
        assert len(marks) == 1 and marks[0]["status"] == "open"
        first = marks[0]
        assert distance_m(GeoPoint(first["position"]["lat"], first["position"]["lon"]), where) < 2.0

        _pass(server, "van-b", video, 20)
        cases = operator.get("/api/cases", params={"category": "illegal_parking"}).json()["items"]
        assert len(cases) == 1
        case = operator.get(f"/api/cases/{cases[0]['id']}").json()
        marks = operator.get("/api/chalk-marks").json()["items"]
        assert sorted(m["status"] for m in marks) == ["confirmed", "confirmed"]
        assert {m["case_id"] for m in marks} == {case["id"]}
        # both passes' evidence on the case, each file as stored
        shown = [e for s in case["sightings_list"] for e in s["evidence"]]
        raws = [e for e in shown if e["role"] == "raw"]
        assert len(raws) == 2
        for e in raws:
            got = operator.get(e["url"])
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == e["sha256"]

        _pass(server, "van-a", video, 28)  # 28 min after the first pass: the car is still there
        marks = operator.get("/api/chalk-marks").json()["items"]
        assert sorted(m["status"] for m in marks) == ["confirmed"] * 3
        assert {m["case_id"] for m in marks} == {case["id"]}
        cases = operator.get("/api/cases", params={"category": "illegal_parking"}).json()["items"]
        assert [c["id"] for c in cases] == [case["id"]]  # the same case, by the merge rule
        assert len(operator.get(f"/api/cases/{case['id']}").json()["sightings_list"]) == 2
