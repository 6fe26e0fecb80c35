"""The pipeline with a scripted detector over listed frames or a still image folder (no model): wiring,
evidence, ids, positions from a GPS track."""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from detect.pipeline import Pipeline, detect_footage
from detect.values import Detection, Incident
from streams.frame import Frame
from tests.detect.rule_fixtures import make_config


class ScriptedDetector:
    """Returns given detections per frame index (a fake, not a mock)."""

    def __init__(self, script: dict[int, list[Detection]]) -> None:
        self.script = script
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        dets = self.script.get(self.calls, [])
        self.calls += 1
        return dets


class IdentityTracker:
    """Keeps the scripted track ids."""

    def update(self, detections, image):
        return list(detections)


def textured_frames(n: int, fps: float = 1.0) -> list[Frame]:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)  # still camera: same texture every frame
    return [Frame(image=image, ts=i / fps, source_id="cam", index=i) for i in range(n)]


CAR = Detection(box=(40.0, 200.0, 200.0, 300.0), score=0.9, class_name="car", kind="car", track_id=3)


def run_pipeline(tmp_path: Path, n_frames: int) -> list[Incident]:
    config = make_config()
    pipeline = Pipeline(
        config,
        config.cameras[0],
        detector=ScriptedDetector({i: [CAR] for i in range(n_frames)}),
        tracker=IdentityTracker(),
        out_dir=tmp_path,
        source_id="cam",
    )
    return list(pipeline.process(textured_frames(n_frames)))


def test_parked_car_gives_one_incident_with_verified_evidence(tmp_path):
    incidents = run_pipeline(tmp_path, 15)
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc.category == "illegal_parking" and inc.object_kind == "car" and inc.zone_id == "left"
    assert inc.first_seen_ts == 0 and inc.last_seen_ts == 14 and not inc.closed
    assert inc.track_ids == (3,)
    assert [e.role for e in inc.evidence] == [
        "annotated", "crop", "raw", "dwell_first", "dwell_middle", "dwell_last"
    ]  # fmt: skip
    for e in inc.evidence:
        data = (tmp_path / e.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.sha256
    crop = next(e for e in inc.evidence if e.role == "crop")
    import cv2

    img = cv2.imread(str(tmp_path / crop.path))
    assert img.shape[0] < 200 and img.shape[1] < 250  # the car, not the frame


def test_same_footage_same_incident_ids(tmp_path):
    a = run_pipeline(tmp_path / "a", 15)
    b = run_pipeline(tmp_path / "b", 15)
    assert [i.id for i in a] == [i.id for i in b]
    assert [e.sha256 for e in a[0].evidence] == [e.sha256 for e in b[0].evidence]


def test_incident_json_round_trip(tmp_path):
    inc = run_pipeline(tmp_path, 15)[0]
    assert Incident.from_json(inc.to_json()) == inc


def test_too_short_gives_none(tmp_path):
    assert run_pipeline(tmp_path, 10) == []  # dwell 9 s < 10 s


def panning_frames(n: int) -> list[Frame]:
    """A camera turning: the scene slides 20 px a second to the left (the car stays put in the image)."""
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 255, (360, 640 + 20 * n, 3), dtype=np.uint8)
    return [
        Frame(image=scene[:, 20 * i : 20 * i + 640].copy(), ts=float(i), source_id="cam", index=i)
        for i in range(n)
    ]


@pytest.mark.parametrize(("require_static_camera", "incidents"), [(True, 0), (False, 1)])
def test_camera_motion_is_measured_only_where_a_rule_reads_it(tmp_path, require_static_camera, incidents):
    config = make_config(
        categories={
            "illegal_parking": {
                "kinds": ["car"],
                "zone_kind": "no_parking",
                "min_dwell_s": 10,
                "min_observations": 3,
                "require_static_camera": require_static_camera,
            }
        }
    )
    pipeline = Pipeline(
        config,
        config.cameras[0],
        detector=ScriptedDetector({i: [CAR] for i in range(15)}),
        tracker=IdentityTracker(),
        out_dir=tmp_path,
        source_id="cam",
    )
    assert (pipeline.motion is not None) is require_static_camera
    assert len(list(pipeline.process(panning_frames(15)))) == incidents


def test_emit_open_yields_fired_then_final_with_same_id(tmp_path):
    config = make_config()
    pipeline = Pipeline(
        config,
        config.cameras[0],
        # a surer sighting after it fired: the final record shows a better frame than the first
        detector=ScriptedDetector({i: [CAR if i < 12 else replace(CAR, score=0.97)] for i in range(15)}),
        tracker=IdentityTracker(),
        out_dir=tmp_path,
        source_id="cam",
        emit_open=True,
    )
    first, final = list(pipeline.process(textured_frames(15)))
    assert first.id == final.id
    assert first.last_seen_ts == 10 and final.last_seen_ts == 14
    assert first.best_ts == 0 and final.best_ts == 12
    for record in (first, final):  # both records' files are on disk as hashed
        for e in record.evidence:
            assert hashlib.sha256((tmp_path / e.path).read_bytes()).hexdigest() == e.sha256


# --- footage with a GPS track: detect_footage over a still image folder ---

T0 = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
# a van at 22 m/s, then 10 m/s (a track faster than a car drives would be GPS jumps, left out)
TRACK_GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
  <trkpt lat="30.2600" lon="120.1400"><time>2026-11-20T01:00:00Z</time></trkpt>
  <trkpt lat="30.2610" lon="120.1420"><time>2026-11-20T01:00:10Z</time></trkpt>
  <trkpt lat="30.2610" lon="120.1430"><time>2026-11-20T01:00:20Z</time></trkpt>
</trkseg></trk></gpx>
"""


def still_footage(folder: Path, n: int) -> Path:
    """A still camera's footage: the same textured image n times (one a second with image_fps=1)."""
    import cv2

    folder.mkdir()
    image = textured_frames(1)[0].image
    for i in range(n):
        assert cv2.imwrite(str(folder / f"frame_{i:03d}.png"), image)
    return folder


def detect_with_track(tmp_path: Path, track, config=None, **kwargs) -> list[Incident]:
    config = config or make_config()
    # the surest sighting, which the evidence shows, is at t = 7 s
    detector = ScriptedDetector({i: [CAR if i != 7 else replace(CAR, score=0.97)] for i in range(15)})
    incidents = detect_footage(
        still_footage(tmp_path / "footage", 15),
        config,
        out_dir=tmp_path / "out",
        image_fps=1.0,
        detector=detector,
        tracker=IdentityTracker(),
        track=track,
        **kwargs,
    )
    return list(incidents)


def test_track_gives_the_incident_the_position_at_its_evidence_frame(tmp_path):
    gpx = tmp_path / "patrol.gpx"
    gpx.write_text(TRACK_GPX)
    # footage starts 2 s into the track, given in local time: the evidence frame (ts 7) is at track
    # time 9 s, nine tenths of the way from the first fix to the second
    start = datetime(2026, 11, 20, 9, 0, 2, tzinfo=timezone(timedelta(hours=8)))
    (inc,) = detect_with_track(tmp_path, gpx, start_time=start)
    assert inc.best_ts == 7 and inc.first_seen_wall == start
    assert inc.position == (pytest.approx(30.2609), pytest.approx(120.1418))


def test_a_gps_jump_does_not_place_the_incident_of_a_camera_without_a_mounting(tmp_path):
    """A phone's receiver writes one fix at 0, 0 mid-track (or kilometres off: multipath between tall
    buildings). The track of a camera without a mounting (the default site's patrol dashcam) was read
    with it: the evidence frame, a second after it, was placed half-way to the Gulf of Guinea. It is
    left out as for a mounted camera, and the frame placed between the true fixes around it."""
    assert make_config().cameras[0].mounting is None
    jumped = TRACK_GPX.replace(
        "</trkpt>\n", '</trkpt>\n  <trkpt lat="0" lon="0"><time>2026-11-20T01:00:08Z</time></trkpt>\n', 1
    )
    gpx = tmp_path / "patrol.gpx"
    gpx.write_text(jumped)
    (inc,) = detect_with_track(tmp_path, gpx, start_time=T0 + timedelta(seconds=2))
    assert inc.position == (pytest.approx(30.2609), pytest.approx(120.1418))  # 9 s: between 0 s and 10 s


def test_a_start_time_in_utc_gives_times_at_the_cameras_local_offset(tmp_path):
    """The worker hands an upload's start time back in UTC (as the database keeps it): the incident,
    its strip and the pages that show its times read it at the camera's zone (Asia/Shanghai), the
    same instant, not at +00:00."""
    assert make_config().cameras[0].timezone == "Asia/Shanghai"
    (inc,) = detect_with_track(tmp_path, None, start_time=T0)
    assert inc.first_seen_wall == T0 and inc.first_seen_wall.utcoffset() == timedelta(hours=8)
    data = inc.to_json()
    assert data["first_seen_wall"] == "2026-11-20T09:00:00+08:00"
    assert data["last_seen_wall"] == "2026-11-20T09:00:14+08:00"
    strip = [e for e in data["evidence"] if e.get("wall_time")]
    assert strip and all(e["wall_time"].endswith("+08:00") for e in strip)


def test_csv_track_times_without_an_offset_are_the_cameras_local_time(tmp_path):
    csv = tmp_path / "patrol.csv"  # TRACK_GPX's fixes, written in Asia/Shanghai time without an offset
    csv.write_text(
        "time,lat,lon\n2026-11-20 09:00:00,30.2600,120.1400\n2026-11-20 09:00:10,30.2610,120.1420\n"
        "2026-11-20 09:00:20,30.2610,120.1430\n"
    )
    assert make_config().cameras[0].timezone == "Asia/Shanghai"
    (inc,) = detect_with_track(tmp_path, csv, start_time=T0 + timedelta(seconds=2))
    assert inc.position == (
        pytest.approx(30.2609),
        pytest.approx(120.1418),
    )  # read as UTC: 8 h off, no position


def test_track_without_start_time_is_aligned_with_its_first_fix(tmp_path):
    from streams.gps import load_track

    gpx = tmp_path / "patrol.gpx"
    gpx.write_text(TRACK_GPX)
    (inc,) = detect_with_track(tmp_path, load_track(gpx))
    assert inc.first_seen_wall == T0 and inc.last_seen_wall == T0 + timedelta(seconds=14)
    assert inc.position == (pytest.approx(30.2607), pytest.approx(120.1414))


def test_where_the_track_says_nothing_the_cameras_configured_position_stays(tmp_path):
    from detect.config import Position

    config = make_config()
    camera = config.cameras[0].model_copy(update={"position": Position(lat=30.25, lon=120.15)})
    config = config.model_copy(update={"cameras": [camera]})
    gpx = tmp_path / "patrol.gpx"
    gpx.write_text(TRACK_GPX)
    # footage an hour after the track: no frame is covered
    (inc,) = detect_with_track(tmp_path, gpx, config, start_time=T0 + timedelta(hours=1))
    assert inc.position == (30.25, 120.15)


def test_bad_track_fails_before_any_frame_is_analysed(tmp_path):
    from streams.gps import TrackError

    bad = tmp_path / "patrol.csv"
    bad.write_text("time,lat,lon\n2026-11-20T01:00:00Z,30.26,120.14\n2026-11-20T01:00:10Z,123.4,120.16\n")
    detector = ScriptedDetector({})
    incidents = detect_footage(
        still_footage(tmp_path / "footage", 3),
        make_config(),
        out_dir=tmp_path / "out",
        detector=detector,
        tracker=IdentityTracker(),
        track=bad,
    )
    with pytest.raises(TrackError, match=r"patrol\.csv: line 3: bad latitude 123\.4"):
        next(incidents)
    assert detector.calls == 0


def test_evidence_label_shows_the_cameras_local_time(tmp_path, monkeypatch):
    from detect import pipeline as pipeline_module

    seen = []
    real = pipeline_module.write_evidence

    def spy(*args, **kwargs):
        seen.append(kwargs["wall_time"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "write_evidence", spy)
    start = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)  # an upload's start time, kept in UTC
    (inc,) = detect_with_track(tmp_path, gpx_file(tmp_path), start_time=start)
    assert inc.first_seen_wall == start  # the incident's times stay as they were
    (label_time,) = seen
    assert label_time == start + timedelta(seconds=7)  # the same instant ...
    assert label_time.utcoffset() == timedelta(hours=8)  # ... as the camera (Asia/Shanghai) reads it


def gpx_file(tmp_path: Path) -> Path:
    path = tmp_path / "patrol.gpx"
    path.write_text(TRACK_GPX)
    return path
