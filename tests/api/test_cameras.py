"""Cameras managed by the case service (issue 14): the registry through the API and the CLI,
validated like the site config, stream credentials in no response or log line but the runner's, and
each camera's live state, online and offline with webhook events."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.cameras.registry import CameraWatch
from api.cli.main import main
from api.storage.models import Camera, WebhookDelivery
from tests.api.api_testkit import LiveServer, import_demo_grid, incident_json, post_incident

SECRET_URL = "rtsp://admin:s3cret-pw@10.1.2.3:554/Streaming/Channels/101?token=tok-123&channel=1"
SECRETS = ("s3cret-pw", "tok-123", "admin:", "Streaming")
ZONE = {"id": "kerb", "kind": "no_parking", "points_norm": [[0, 0.6], [0.5, 0.6], [0.5, 1], [0, 1]]}


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url)


def _camera(camera_id: str = "gate-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": camera_id,
        "stream_url": SECRET_URL,
        "name": "North gate",
        "position": {"lat": 30.2741, "lon": 120.1551},
        "zones": [ZONE],
        "active_hours": ["06:00-22:00"],
    }
    return {**body, **extra}


def _runner_key(admin: httpx.Client, name: str = "runner-1") -> str:
    r = admin.post("/api/devices", json={"name": name, "runner": True})
    assert r.status_code == 201, r.text
    assert r.json()["runner"] is True and r.json()["camera_id"] is None
    return str(r.json()["key"])


def test_registry_through_the_api_never_shows_the_credentials(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with server.client("admin") as admin, server.client("operator") as op:
        r = admin.post("/api/cameras", json=_camera())
        assert r.status_code == 201, r.text
        info = r.json()
        assert info["stream"] == "rtsp://10.1.2.3:554"
        assert info["zones"][0]["id"] == "kerb" and info["active_hours"] == ["06:00-22:00"]
        assert info["state"]["online"] is None and info["enabled"] is True
        assert admin.post("/api/cameras", json=_camera()).status_code == 409
        listed = op.get("/api/cameras")
        assert [c["id"] for c in listed.json()] == ["gate-1"]
        r = admin.patch(
            "/api/cameras/gate-1", json={"enabled": False, "team": "team-hubin", "position": None}
        )
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is False and r.json()["position"] is None
        assert r.json()["team"] == "team-hubin"
        assert op.get("/api/cameras/gate-1").json()["enabled"] is False
        assert op.get("/api/cameras/nope").status_code == 404
        assert admin.patch("/api/cameras/nope", json={"enabled": True}).status_code == 404
        everything = listed.text + r.text + info.__repr__()
    for secret in SECRETS:
        assert secret not in everything
        assert secret not in caplog.text


BAD_CAMERAS: list[tuple[str, dict[str, Any], str]] = [
    ("zone kind misspelt", {"zones": [{**ZONE, "kind": "no_parkin"}]}, "zones.0.kind"),
    ("zone outside the image", {"zones": [{**ZONE, "points_norm": [[0, 0], [1.5, 0], [1, 1]]}]}, "zones"),
    ("zone without area", {"zones": [{**ZONE, "points_norm": [[0, 0], [0.5, 0.5], [1, 1]]}]}, "zones"),
    ("duplicate zone ids", {"zones": [ZONE, ZONE]}, "duplicate zone ids"),
    ("unknown time zone", {"timezone": "Mars/Olympus"}, "unknown time zone"),
    ("hours not HH:MM-HH:MM", {"active_hours": ["6-22"]}, "active_hours.0"),
    ("not a URL", {"stream_url": "camera one"}, "stream_url"),
    ("bad id", {"id": "gate 1"}, "id"),
    ("unknown key", {"zone": []}, "zone"),
    ("half a position", {"position": {"lat": 30.2}}, "position.lon"),
    ("unknown grid cell", {"grid_cell_id": "NOPE"}, "grid_cell_id: no grid cell 'NOPE'"),
    ("'..' as an id (a runner's spool folder)", {"id": ".."}, "id"),
    ("a NUL in the name", {"name": "gate\x00one"}, "name"),
    ("a span of no time", {"active_hours": ["10:00-10:00"]}, "a span of no time"),
    ("hours past the end of the day", {"active_hours": ["08:00-24:30"]}, "active_hours.0"),
    ("zone hours with a line break", {"zones": [{**ZONE, "active_hours": ["06:00-22:00\n"]}]}, "zones.0"),
    ("a zone id with a line break", {"zones": [{**ZONE, "id": "a\nb"}]}, "zones.0.id"),
    (
        "not a live stream",
        {"stream_url": "file:///etc/passwd"},
        "stream_url: file:///etc/passwd: cannot read file://",
    ),
]

# stream URLs a runner could not open (FFmpeg reads the host up to the first '/', '?' or '#', as a URL
# parser does): refused, naming stream_url, and nothing of the password shown anywhere
BAD_URLS: list[tuple[str, str, str]] = [
    ("rtsp://admin:20240#@10.0.0.9/live", "20240", "an '@' after the host"),
    ("rtsp://admin:13579/24680@10.0.0.9:554/live", "13579", "an '@' after the host"),
    ("rtsp://admin:pw-Qz?x@10.0.0.9/live", "pw-Qz", "an '@' after the host"),
    ("rtsp://[admin:pw-Zb]@10.0.0.9/live", "pw-Zb", "not a valid URL"),
    ("rtsp://admin:pa[ss-Wy@10.0.0.9/live", "ss-Wy", "not a valid URL"),
]


@pytest.mark.parametrize(
    ("body", "named"), [(b, n) for _, b, n in BAD_CAMERAS], ids=[i for i, _, _ in BAD_CAMERAS]
)
def test_a_bad_camera_is_a_422_naming_it(server: LiveServer, body: dict[str, Any], named: str) -> None:
    with server.client("admin") as admin:
        r = admin.post("/api/cameras", json=_camera(**body))
        assert r.status_code == 422, r.text
        assert named in r.text, r.text
        assert admin.get("/api/cameras").json() == []


def test_a_stream_url_a_runner_cannot_open_is_refused_without_showing_it(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with server.client("admin") as admin:
        assert admin.post("/api/cameras", json=_camera()).status_code == 201
        answers = []
        for url, secret, reason in BAD_URLS:
            for r in (
                admin.post("/api/cameras", json=_camera("gate-2", stream_url=url)),
                admin.patch("/api/cameras/gate-1", json={"stream_url": url, "name": "changed"}),
            ):
                assert r.status_code == 422 and "stream_url" in r.text and reason in r.text, r.text
                assert secret not in r.text
                answers.append(r.text)
        cameras = admin.get("/api/cameras").json()  # the list still answers, unchanged
    assert [(c["id"], c["name"], c["stream"]) for c in cameras] == [
        ("gate-1", "North gate", "rtsp://10.1.2.3:554")
    ]
    for _url, secret, _reason in BAD_URLS:
        assert secret not in caplog.text


ONLY = "(only http, https, rtmp, rtmps, rtmpt, rtmpts, rtp, rtsp, rtsps, srt, tcp, udp)"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "ftp://admin:pw-Ftp@cam.example/live",
            f"ftp://admin:***@cam.example/live: cannot read ftp:// URLs {ONLY}",
        ),
        (
            "rtsp://admin:pw-Port@cam.example:99999/live",
            "rtsp://admin:***@cam.example:99999/live: not a valid URL",
        ),
        (
            "rtsp://admin:pw-Hash#@cam.example/live",
            "rtsp://admin:***@cam.example/live: an '@' after the host",
        ),
        # the '@' left out: the password reads as a port, so the URL is named by its scheme alone
        ("rtsp://admin:pw-NoAt/live", "rtsp://(no host): not a valid URL"),
    ],
)
def test_a_bad_stream_url_is_named_masked_with_its_reason_the_same_way_everywhere(
    server: LiveServer,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    said: str,
) -> None:
    """The API, `gridpatrol camera add` and, for a scheme no source reads, `gridpatrol detect` and a
    runner (both open it with streams.open_source) name a bad stream URL alike: the URL with its password
    masked, then the reason. Before, the API and the CLI said "stream_url: Value error, <reason>" without
    the URL, while detect said "<URL>: cannot read ftp:// URLs", another reason for the same URL."""
    from streams import SourceError, open_source

    with server.client("admin") as admin:
        r = admin.post("/api/cameras", json=_camera("gate-9", stream_url=url))
    assert r.status_code == 422 and r.json()["detail"].startswith(f"stream_url: {said}"), r.text
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["camera", "add", "gate-9", "--url", url]) == 1
    err = capsys.readouterr().err
    assert f"camera gate-9: stream_url: {said}" in err, err
    if url.startswith("ftp:"):
        with pytest.raises(SourceError) as opened:
            open_source(url)
        assert str(opened.value) == said
    assert "pw-" not in r.text + err


def test_only_runners_read_stream_urls_and_report_state(server: LiveServer) -> None:
    with server.client("admin") as admin:
        assert admin.post("/api/cameras", json=_camera()).status_code == 201
        assert admin.post("/api/cameras", json=_camera("gate-2", enabled=False)).status_code == 201
        key = _runner_key(admin)
        assert admin.get("/api/runner/cameras").status_code == 403
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        cameras = runner.get("/api/runner/cameras").json()
        assert [(c["id"], c["stream_url"]) for c in cameras] == [("gate-1", SECRET_URL)]  # enabled only
        assert runner.get("/api/cameras").status_code == 403
        frame = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        r = runner.put(
            "/api/cameras/gate-1/state",
            json={
                "fps": 4.9,
                "last_frame_at": frame.astimezone(timezone(timedelta(hours=8))).isoformat(),
                "runner_state": {"spool": 0},
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["online"] is True and r.json()["runner"] == "runner-1"
        assert r.json()["last_frame_at"] == frame.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert runner.put("/api/cameras/nope/state", json={}).status_code == 404
        assert runner.put("/api/cameras/gate-1/state", json={"fps": -1}).status_code == 422
        deep: dict[str, Any] = {}
        for _ in range(300):
            deep = {"d": deep}
        for runner_state in (deep, {"log": "x" * 70_000}):  # the camera list must stay readable
            r = runner.put("/api/cameras/gate-1/state", json={"fps": 5, "runner_state": runner_state})
            assert r.status_code == 422 and "runner_state" in r.text, r.text[:300]
        # an error with a password a URL parser misreads, a NUL; a last frame from a clock ahead
        ahead = datetime.now(UTC) + timedelta(days=3)
        odd = {
            "fps": 4.9,
            "last_frame_at": ahead.isoformat(),
            "last_error": "could not open rtsp://admin:S3c#ret-Kq@10.0.0.9/live\x00 (timeout)",
            "runner_state": {"spool": 0},
        }
        r = runner.put("/api/cameras/gate-1/state", json=odd)
        assert r.status_code == 200, r.text
        assert r.json()["last_error"] == "could not open rtsp://admin:***@10.0.0.9/live  (timeout)"
        assert r.json()["last_frame_at"] <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = runner.put("/api/cameras/gate-1/state", json={**odd, "last_frame_at": frame.isoformat()})
        assert r.status_code == 200 and r.json()["online"] is True
    for who in ("device", "operator"):
        with server.client(who) as other:
            assert other.get("/api/runner/cameras").status_code == 403
            assert other.put("/api/cameras/gate-1/state", json={}).status_code == 403
    with server.client("operator") as op:
        state = op.get("/api/cameras/gate-1").json()["state"]
        assert state["fps"] == 4.9 and state["runner_state"] == {"spool": 0}


def test_a_camera_team_the_grid_does_not_know_is_refused_and_flagged(  # type: ignore[no-untyped-def]
    make_server, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A typo'd team would file the camera's cases to a team no enforcement user is in: once a grid is
    imported, a team none of its cells names is a 422 naming `team` with the grid's teams (API and
    CLI); before that any team is taken, and a camera whose team a later grid lacks keeps working,
    flagged in GET /api/cameras and `camera list` until its team is edited."""
    server = make_server(db_url, grid=False)
    with server.client("admin") as admin:
        r = admin.post("/api/cameras", json=_camera("gate-1", team="teem-3"))  # no grid yet: taken
        assert r.status_code == 201 and r.json()["team_warning"] is None, r.text
        import_demo_grid(server.services)
        flagged = admin.get("/api/cameras/gate-1").json()["team_warning"]
        assert "teem-3" in flagged and "team-ziyang" in flagged, flagged
        r = admin.post("/api/cameras", json=_camera("gate-2", team="teem-3"))
        assert r.status_code == 422 and "team" in r.text and "teem-3" in r.text, r.text
        assert "team-hubin, team-nanxing, team-qingbo, team-wangjiang, team-xiaoying, team-ziyang" in r.text
        r = admin.patch("/api/cameras/gate-1", json={"enabled": False, "team": "teem-3"})  # kept as it is
        assert r.status_code == 200 and "teem-3" in r.json()["team_warning"], r.text
        r = admin.patch("/api/cameras/gate-1", json={"team": "teem-4"})
        assert r.status_code == 422 and "teem-4" in r.text and "team-ziyang" in r.text, r.text
        monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
        capsys.readouterr()
        assert main(["camera", "add", "gate-3", "--url", "rtsp://h/x", "--team", "teem-3"]) == 1
        err = capsys.readouterr().err
        assert "team" in err and "teem-3" in err and "team-ziyang" in err, err
        assert main(["camera", "list"]) == 0
        assert "teem-3 NOT IN GRID" in capsys.readouterr().out
        r = admin.patch("/api/cameras/gate-1", json={"team": "team-ziyang"})
        assert r.status_code == 200 and r.json()["team_warning"] is None, r.text
        assert [c["id"] for c in admin.get("/api/cameras").json()] == ["gate-1"]  # nothing else stored
    assert main(["camera", "add", "gate-3", "--url", "rtsp://h/x", "--team", "team-ziyang"]) == 0
    assert main(["camera", "list"]) == 0
    assert "NOT IN GRID" not in capsys.readouterr().out


def test_a_runner_s_clock_difference_is_served_and_flagged(  # type: ignore[no-untyped-def]
    server: LiveServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """A runner reports how far its clock is from the service's (its minus the service's): 90 s behind
    is served with the camera and flagged, in the API and `camera list`, and logged once at the service,
    not at each report; 2 s is not flagged; an older runner's report without it reads unknown; a
    value that is no number of seconds is a 422 naming the field, the stored one kept."""
    caplog.set_level(logging.WARNING, logger="api.cameras.registry")
    with server.client("admin") as admin:
        for camera_id in ("gate-1", "gate-2", "gate-3"):
            assert admin.post("/api/cameras", json=_camera(camera_id)).status_code == 201
        key = _runner_key(admin)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        for offset_s in (-90.0, -90.4, -89.6):  # every 5 s, as the runner measures it
            r = runner.put("/api/cameras/gate-1/state", json={"fps": 5, "clock_offset_s": offset_s})
            assert r.status_code == 200, r.text
        assert r.json()["clock_offset_s"] == -89.6 and "90 s behind" in r.json()["clock_warning"]
        assert (
            runner.put("/api/cameras/gate-2/state", json={"fps": 5, "clock_offset_s": 2.0}).status_code == 200
        )
        assert runner.put("/api/cameras/gate-3/state", json={"fps": 5}).status_code == 200  # an older runner
        bad_values = ['"90"', "1e12", "-1e12", "NaN", "Infinity", "true", "[90]"]
        for bad in bad_values:
            r = runner.put(
                "/api/cameras/gate-1/state",
                content=f'{{"fps": 5, "clock_offset_s": {bad}}}',
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 422 and "clock_offset_s" in r.text, (bad, r.status_code, r.text[:300])
    with server.client("operator") as op:
        states = {c["id"]: c["state"] for c in op.get("/api/cameras").json()}
    assert states["gate-1"]["clock_offset_s"] == -89.6  # the bad reports stored nothing
    assert "behind the case service's" in states["gate-1"]["clock_warning"]
    assert (states["gate-2"]["clock_offset_s"], states["gate-2"]["clock_warning"]) == (2.0, None)
    assert (states["gate-3"]["clock_offset_s"], states["gate-3"]["clock_warning"]) == (None, None)
    said = [r.getMessage() for r in caplog.records if "clock is" in r.getMessage()]
    assert len(said) == 1 and "gate-1" in said[0] and "90 s behind" in said[0], said
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["camera", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "-90 s BEHIND" in rows["gate-1"] and "+2 s " in rows["gate-2"] and "BEHIND" not in rows["gate-2"]
    assert " ? " in rows["gate-3"]


def test_a_runner_s_clock_near_the_line_is_logged_with_hysteresis(  # type: ignore[no-untyped-def]
    server: LiveServer, caplog
) -> None:
    """The difference is measured to about 1 s: a clock near 5 s is logged when it reaches 5 s and
    back within only under 3 s, not at each crossing; the served flag is the plain 5 s rule."""
    caplog.set_level(logging.INFO, logger="api.cameras.registry")
    with server.client("admin") as admin:
        assert admin.post("/api/cameras", json=_camera("gate-1")).status_code == 201
        key = _runner_key(admin)
    flags = []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        for offset_s in (5.2, 4.6, 5.1, 2.0, 5.3):
            caplog.clear()
            r = runner.put("/api/cameras/gate-1/state", json={"fps": 5, "clock_offset_s": offset_s})
            assert r.status_code == 200, r.text
            flags.append(r.json()["clock_warning"] is not None)
            said = [(r.levelname, r.getMessage()) for r in caplog.records if "clock is" in r.getMessage()]
            if offset_s in (5.2, 5.3):
                assert len(said) == 1 and said[0][0] == "WARNING" and "5 s ahead of" in said[0][1], said
            elif offset_s == 2.0:
                assert len(said) == 1 and said[0][0] == "INFO" and "back within 3 s" in said[0][1], said
            else:
                assert said == [], (offset_s, said)
    assert flags == [True, False, True, False, True]


def test_a_camera_goes_offline_and_back_with_webhook_events(make_server, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = make_server(db_url, run_webhooks=False, settings={"webhook_allow_hosts": "127.0.0.1"})
    services = server.services
    with server.client("admin") as admin:
        admin.post("/api/cameras", json=_camera())
        key = _runner_key(admin)
        hook = admin.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["camera.offline", "camera.online"]},
        )
    assert hook.status_code == 201, hook.text
    watch = CameraWatch(services.factory, offline_after_s=30)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        assert runner.put("/api/cameras/gate-1/state", json={"fps": 5}).status_code == 200
        assert watch.run_once() == []  # reported just now
        with services.factory() as session:  # ... 31 s ago
            camera = session.get(Camera, "gate-1")
            assert camera is not None and camera.reported_at is not None
            camera.reported_at -= timedelta(seconds=31)
            session.commit()
        assert watch.run_once() == ["gate-1"]
        assert watch.run_once() == []  # told once
        with server.client("operator") as op:
            state = op.get("/api/cameras/gate-1").json()["state"]
        assert state["online"] is False and state["since"] is not None
        assert runner.put("/api/cameras/gate-1/state", json={"fps": 5}).status_code == 200
        with server.client("admin") as admin:  # disabled: no runner analyses it, so neither state
            assert admin.patch("/api/cameras/gate-1", json={}).status_code == 422  # nothing to change
            assert (
                admin.patch("/api/cameras/gate-1", json={"enabled": False}).json()["state"]["online"] is None
            )
        assert runner.put("/api/cameras/gate-1/state", json={"fps": 5}).json()["online"] is None
        assert watch.run_once() == []
    with services.factory() as session:
        events = [(d.event, json.loads(d.payload)) for d in session.scalars(select(WebhookDelivery))]
    assert [e for e, _ in events] == ["camera.offline", "camera.online"]
    assert events[0][1]["camera"]["id"] == "gate-1" and events[0][1]["camera"]["online"] is False


def test_a_camera_reported_without_fresh_frames_goes_offline(make_server, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Its stream dropped: the runner goes on reporting (fps 0, the reason) but no frame comes; it is
    offline once its last frame is older than offline_after_s, and back with a fresh one. A camera
    outside its active hours gives no frames and stays online."""
    server = make_server(db_url, run_webhooks=False, settings={"camera_offline_after_s": 30})
    watch = CameraWatch(server.services.factory, offline_after_s=30)
    with server.client("admin") as admin:
        admin.post("/api/cameras", json=_camera())
        admin.post("/api/cameras", json=_camera("gate-2"))
        key = _runner_key(admin)
    now = datetime.now(UTC)
    old = (now - timedelta(seconds=45)).isoformat()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        fresh = runner.put("/api/cameras/gate-1/state", json={"fps": 5, "last_frame_at": now.isoformat()})
        assert fresh.json()["online"] is True
        asleep = {"fps": 0, "last_frame_at": old, "runner_state": {"status": "outside active hours"}}
        assert runner.put("/api/cameras/gate-2/state", json=asleep).json()["online"] is True
        dropped = {"fps": 0, "last_frame_at": old, "last_error": "no frame for 45 s (rtsp://cam:554)"}
        r = runner.put("/api/cameras/gate-1/state", json=dropped)
        assert r.json()["online"] is True  # offline is the watch's to say, once
        assert watch.run_once() == ["gate-1"]
        assert runner.put("/api/cameras/gate-1/state", json=dropped).json()["online"] is False  # still none
        assert watch.run_once() == []
        back = runner.put("/api/cameras/gate-1/state", json={"fps": 5, "last_frame_at": now.isoformat()})
        assert back.json()["online"] is True


def test_runner_incidents_need_a_registered_camera_and_take_its_cell(server: LiveServer) -> None:
    with server.client("admin") as admin:
        admin.post("/api/cameras", json=_camera(grid_cell_id="DEMO-ZIYANG-01", team="team-hubin"))
        key = _runner_key(admin)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as runner:
        r = post_incident(runner, incident_json("r-1", source_id="unknown-cam"))
        assert r.status_code == 422 and "incident.source_id" in r.text, r.text
        r = post_incident(runner, incident_json("r-2", source_id="gate-1"))
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]
    with server.client("admin") as admin:
        case = admin.get(f"/api/cases/{case_id}").json()
    assert case["grid_cell"] == "DEMO-ZIYANG-01" and case["team"] == "team-hubin"  # not the cell's
    assert case["camera_id"] == "gate-1"


def test_camera_cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    zones = tmp_path / "zones.yaml"
    zones.write_text(json.dumps([ZONE]))
    assert main(["camera", "add", "gate-1", "--url", SECRET_URL, "--zones-file", str(zones)]) == 0
    assert main(["camera", "add", "gate-1", "--url", SECRET_URL]) == 1
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps([{**ZONE, "kind": "no_parkin"}]))
    assert main(["camera", "add", "gate-2", "--url", "rtsp://h/x", "--zones-file", str(bad)]) == 1
    assert "zones.0.kind" in capsys.readouterr().err
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes("- id: 路口\n  kind: no_parking\n  points_norm: [[0,0],[1,0],[0,1]]\n".encode("gbk"))
    assert main(["camera", "add", "gate-2", "--url", "rtsp://h/x", "--zones-file", str(gbk)]) == 1
    assert "gbk.yaml: not UTF-8 text (byte 8); save it as UTF-8" in capsys.readouterr().err
    assert main(["camera", "edit", "gate-1", "--lat", "30.27", "--lon", "120.15", "--always"]) == 0
    assert main(["camera", "edit", "gate-1", "--team", "team-x", "--no-team"]) == 1
    assert "--no-team clears team" in capsys.readouterr().err
    assert main(["camera", "add", "gate-3", "--url", "rtsp://[admin:pw-Zb]@10.0.0.9/live"]) == 1
    err = capsys.readouterr().err
    assert "stream_url" in err and "not a valid URL" in err and "pw-Zb" not in err
    assert main(["camera", "disable", "gate-1"]) == 0
    site = tmp_path / "site.yaml"
    config = Path("configs/site.yaml").read_text(encoding="utf-8")
    site.write_text(
        config.replace("models/gridpatrol-n.pt", str(Path("models/gridpatrol-n.pt").resolve())).replace(
            "  - id: demo-cam-02\n", "  - id: demo-cam-02\n    source: rtsp://cam2.example/live\n"
        ),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["camera", "import", str(site)]) == 0
    out = capsys.readouterr().out
    assert "imported 1 camera(s)" in out and "not imported: demo-cam-01" in out
    # a camera the registry would refuse is refused here too, named, and the others are imported
    site.write_text(
        site.read_text(encoding="utf-8").replace(
            "  - id: demo-cam-01\n", "  - id: demo-cam-01\n    source: rtsp://admin:pw-Qz#1@10.0.0.7/live\n"
        ),
        encoding="utf-8",
    )
    assert main(["camera", "import", str(site)]) == 1
    out = capsys.readouterr().out
    assert (
        "not imported: demo-cam-01 (stream_url: rtsp://admin:***@10.0.0.7/live: an '@' after the host" in out
    )
    assert "pw-Qz" not in out and "imported 0 camera(s)" in out
    assert main(["camera", "list"]) == 0
    out = capsys.readouterr().out
    assert "gate-1" in out and "demo-cam-02" in out and "rtsp://cam2.example" in out
    for secret in SECRETS:
        assert secret not in out


def test_camera_list_says_what_each_runner_does_and_its_last_error(  # type: ignore[no-untyped-def]
    make_server, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """An admin's `camera list` showed a camera whose password a reboot reset as `online` with fps 0,
    and one whose stream had been lost for hours as `OFFLINE since ...`, never why: the runner's
    status and last error were in `GET /api/cameras` only. They are its STATUS column and, whole,
    lines under the table; a camera whose reports stopped says so rather than its runner's last word."""
    server = make_server(db_url, run_webhooks=False)
    with server.client("admin") as admin:
        for camera_id in ("gate-1", "gate-2", "gate-3"):
            assert admin.post("/api/cameras", json=_camera(camera_id)).status_code == 201
        key = _runner_key(admin)
    why = "no frame for 45 s: wrong user name or password (the camera answered 401 Unauthorized); retrying"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        stalled = {"fps": 0, "last_error": why, "runner_state": {"status": "stalled"}}
        assert runner.put("/api/cameras/gate-1/state", json=stalled).status_code == 200
        fine = {"fps": 5, "runner_state": {"status": "analysing"}}
        assert runner.put("/api/cameras/gate-2/state", json=fine).status_code == 200
    with server.services.factory() as session:  # gate-2's runner went silent 2 minutes ago
        camera = session.get(Camera, "gate-2")
        assert camera is not None and camera.reported_at is not None
        camera.reported_at -= timedelta(seconds=120)
        session.commit()
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["camera", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start, end = lines[0].index("STATUS"), lines[0].index("RUNNER")
    status = {line.split()[0]: line[start:end].strip() for line in lines[1:4]}
    assert status == {"gate-1": "stalled", "gate-2": "(no report)", "gate-3": "-"}
    assert lines[4:6] == ["", "LAST ERRORS (UTC)"]
    assert len(lines) == 7 and lines[6].startswith("gate-1 (reported ") and lines[6].endswith(f"): {why}")


def test_a_runner_s_error_names_the_stream_as_every_answer_does(  # type: ignore[no-untyped-def]
    make_server, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner words a stream it cannot open with its URL masked (rtsp://admin:***@host:554/path?token=***):
    the camera's last error showed its user name and path in GET /api/cameras, the camera.offline webhook
    (sent to integrators) and the service's log, which the registry shows as scheme://host:port only."""
    from streams.urls import shown_url

    caplog.set_level(logging.INFO)
    server = make_server(db_url, run_webhooks=False, settings={"webhook_allow_hosts": "127.0.0.1"})
    with server.client("admin") as admin:
        assert admin.post("/api/cameras", json=_camera()).status_code == 201
        key = _runner_key(admin)
        hook = admin.post(
            "/api/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["camera.offline"]}
        )
        assert hook.status_code == 201, hook.text
    refused = (
        f"{shown_url(SECRET_URL)}: cannot connect: wrong user name or password (the camera answered 401)"
    )
    assert "admin:***@" in refused  # as the runner words it
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as runner:
        r = runner.put("/api/cameras/gate-1/state", json={"fps": 0, "last_error": refused})
        assert r.status_code == 200, r.text
        reported = r.text
    with server.services.factory() as session:
        camera = session.get(Camera, "gate-1")
        assert camera is not None and camera.reported_at is not None
        camera.reported_at -= timedelta(seconds=120)
        session.commit()
    assert CameraWatch(server.services.factory, offline_after_s=30).run_once() == ["gate-1"]
    with server.client("operator") as op:
        shown = op.get("/api/cameras/gate-1").json()["state"]["last_error"]
        listed = op.get("/api/cameras").text
    assert (
        shown == "rtsp://10.1.2.3:554: cannot connect: wrong user name or password (the camera answered 401)"
    )
    with server.services.factory() as session:
        (delivery,) = session.scalars(select(WebhookDelivery))
        payload = delivery.payload
    assert json.loads(payload)["camera"]["last_error"] == shown
    for text in (reported, listed, payload, caplog.text):
        for secret in SECRETS:
            assert secret not in text
