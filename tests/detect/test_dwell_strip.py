"""The dwell strip: the same window of the frame when a violating object was first seen, half way
through its stay and when last seen, written and hashed with the incident's other evidence; bounded
memory per sighting, nothing kept for objects that never violate (scripted detector, no model)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect.evidence import DWELL_MAX_SIDE_PX, DWELL_SAMPLES, DwellStrip, dwell_window
from detect.pipeline import Pipeline
from detect.values import DWELL_ROLES, Detection, EvidenceFile, Incident
from streams.frame import Frame
from tests.detect.rule_fixtures import make_config
from tests.detect.test_pipeline import IdentityTracker, ScriptedDetector

T0 = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
# a small car in the left half (the zone) of a 640 x 360 frame: its strip window is 160 x 160 px
CAR = Detection(box=(100.0, 150.0, 140.0, 180.0), score=0.9, class_name="car", kind="car", track_id=3)
ELSEWHERE = replace(CAR, box=(500.0, 150.0, 540.0, 180.0), track_id=4)  # bottom-centre in the right half


def still_frames(n: int, *, wall: bool = True) -> Iterator[Frame]:
    """A still camera, one frame a second; the same textured image every frame."""
    image = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    for i in range(n):
        yield Frame(
            image=image,
            ts=float(i),
            source_id="cam",
            index=i,
            wall_time=T0 + timedelta(seconds=i) if wall else None,
        )


def make_pipeline(tmp_path: Path, script: dict[int, list[Detection]], **kwargs) -> Pipeline:
    config = make_config(**kwargs)
    return Pipeline(
        config,
        config.cameras[0],
        detector=ScriptedDetector(script),
        tracker=IdentityTracker(),
        out_dir=tmp_path,
        source_id="cam",
    )


def strip_of(incident: Incident) -> list[EvidenceFile]:
    return [e for e in incident.evidence if e.role in DWELL_ROLES]


def test_incident_has_first_middle_and_last_frames_of_the_same_window(tmp_path):
    pipeline = make_pipeline(tmp_path, {i: [CAR] for i in range(15)})
    (inc,) = pipeline.process(still_frames(15))
    first, middle, last = strip_of(inc)
    assert (first.role, middle.role, last.role) == DWELL_ROLES
    assert first.ts == inc.first_seen_ts == 0.0 and last.ts == inc.last_seen_ts == 14.0
    assert first.ts < middle.ts < last.ts and abs(middle.ts - 7.0) <= 1.0
    assert first.wall_time == inc.first_seen_wall and last.wall_time == inc.last_seen_wall
    assert middle.wall_time == T0 + timedelta(seconds=middle.ts)
    window = dwell_window(CAR.box, 640, 360)
    assert window == (40, 85, 200, 245)  # 4 x 30 px is under 160: 160 px about the box's centre
    assert first.window == middle.window == last.window == window
    assert first.box == middle.box == last.box == CAR.box
    for e in (first, middle, last):
        data = (tmp_path / e.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert e.path == f"evidence/{inc.id}/{e.role}-f{int(e.ts):06d}.jpg"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (160, 160, 3)  # the window itself: not scaled up
    # nothing moved in a still scene: the three pictures are the same picture
    assert first.sha256 == middle.sha256 == last.sha256


def test_strip_entries_in_json_and_back(tmp_path):
    pipeline = make_pipeline(tmp_path, {i: [CAR] for i in range(15)})
    (inc,) = pipeline.process(still_frames(15))
    data = json.loads(json.dumps(inc.to_json()))
    annotated, crop, raw, first, middle, last = data["evidence"]
    for entry in (annotated, crop, raw):  # the best frame's entries are as they were
        assert set(entry) == {"role", "path", "sha256", "media_type"}
    assert first == {
        "role": "dwell_first",
        "path": f"evidence/{inc.id}/dwell_first-f000000.jpg",
        "sha256": first["sha256"],
        "media_type": "image/jpeg",
        "ts": 0.0,
        "wall_time": "2026-11-20T09:00:00+08:00",  # T0 at the camera's zone
        "window": [40, 85, 200, 245],
        "box": [100.0, 150.0, 140.0, 180.0],
    }
    assert last["ts"] == 14.0 and last["wall_time"] == "2026-11-20T09:00:14+08:00"
    assert Incident.from_json(data) == inc


def test_strip_without_wall_time_says_none(tmp_path):
    pipeline = make_pipeline(tmp_path, {i: [CAR] for i in range(15)})
    (inc,) = pipeline.process(still_frames(15, wall=False))
    assert [e.wall_time for e in strip_of(inc)] == [None, None, None]
    assert [e["wall_time"] for e in inc.to_json()["evidence"][3:]] == [None, None, None]
    assert Incident.from_json(inc.to_json()) == inc


def test_emit_open_shows_the_firing_frame_last_then_the_real_last(tmp_path):
    pipeline = make_pipeline(tmp_path, {i: [CAR] for i in range(15)})
    pipeline.emit_open = True
    opened, final = pipeline.process(still_frames(15))
    # the middle of 0..10 s is 5 s; samples are at 2, 4, 6, 8, 10 s: 4 and 6 are as near, the earlier wins
    assert [e.ts for e in strip_of(opened)] == [0.0, 4.0, 10.0]
    assert strip_of(final)[0] == strip_of(opened)[0]
    assert strip_of(final)[2].ts == final.last_seen_ts == 14.0
    for record in (opened, final):  # both records' files are on disk as hashed
        for e in strip_of(record):
            assert hashlib.sha256((tmp_path / e.path).read_bytes()).hexdigest() == e.sha256


def test_an_hour_parked_keeps_a_bounded_number_of_crops(tmp_path):
    """2,000 frames of one parked car: the strip holds at most DWELL_SAMPLES + 2 JPEGs all along."""
    n = 2000
    pipeline = make_pipeline(tmp_path, {i: [CAR] for i in range(n)})
    held, samples = [], []

    def frames() -> Iterator[Frame]:
        for f in still_frames(n):
            yield f  # pulled once the pipeline has taken the frame before
            (strip,) = (pipeline.strips.get(v) for v in pipeline.rules.sightings())
            assert strip is not None
            held.append(strip.held)
            samples.append(len(strip.samples))

    (inc,) = pipeline.process(frames())
    assert len(held) == n and max(held) <= DWELL_SAMPLES + 2 and max(samples) <= DWELL_SAMPLES
    assert held[-1] >= DWELL_SAMPLES // 2  # still spread over the stay, not emptied
    first, middle, last = strip_of(inc)
    assert (first.ts, last.ts) == (0.0, n - 1.0)
    assert abs(middle.ts - (n - 1) / 2) <= n / DWELL_SAMPLES
    assert len(pipeline.strips) == 0  # the footage ended: nothing kept


def test_objects_that_never_violate_leave_nothing(tmp_path):
    """A car that stops 5 s in the zone and one that stands outside it: no incident, no files, and the
    first car's strip goes when the rules drop it (grace 10 s after it was last seen)."""
    script = {i: ([CAR] if i < 5 else []) + [ELSEWHERE] for i in range(30)}
    pipeline = make_pipeline(tmp_path, script)
    kept = []

    def frames() -> Iterator[Frame]:
        for f in still_frames(30):
            yield f
            kept.append(len(pipeline.strips))

    assert list(pipeline.process(frames())) == []
    assert kept[:15] == [1] * 15  # the candidate's strip (none for the car outside any zone)
    assert kept[15:] == [0] * 15  # lost over 10 s at t = 15: dropped with the candidate
    assert not (tmp_path / "evidence").exists()


def test_a_lost_candidate_keeps_its_last_frame_encoded_not_the_frame(tmp_path):
    script = {i: [CAR] if i < 5 else [] for i in range(8)}
    pipeline = make_pipeline(tmp_path, script)
    strips = []

    def frames() -> Iterator[Frame]:
        for f in still_frames(8):
            yield f
            strips.extend(pipeline.strips.get(v) for v in pipeline.rules.sightings())

    list(pipeline.process(frames()))
    strip = strips[-1]
    assert strip is not None and strip._pending is None  # no frame held for an object out of sight
    assert strip.choose()[2].ts == 4.0


VENDING = {
    "street_vending": {
        "kinds": ["umbrella", "table", "chair"],
        "zone_kind": "no_vending",
        "min_dwell_s": 10,
        "min_observations": 3,
        "min_cues": 2,
        "cue_gap_norm": 0.05,
    }
}
PAVEMENT = [{"id": "pave", "kind": "no_vending", "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}]


def test_a_stall_shows_its_first_cues_window_from_its_first_sighting(tmp_path):
    umbrella = Detection(
        box=(300.0, 100.0, 360.0, 160.0), score=0.7, class_name="umbrella", kind="umbrella", track_id=1
    )
    table = Detection(
        box=(310.0, 160.0, 350.0, 200.0), score=0.7, class_name="dining table", kind="table", track_id=2
    )
    # the umbrella from t = 0, the table from t = 3: the stall fires at 13 s, first seen at 0 s
    script = {i: [umbrella] + ([table] if i >= 3 else []) for i in range(20)}
    pipeline = make_pipeline(tmp_path, script, zones=PAVEMENT, categories=VENDING)
    (inc,) = pipeline.process(still_frames(20))
    assert inc.object_kind == "stall"
    first, middle, last = strip_of(inc)
    assert (first.ts, last.ts) == (inc.first_seen_ts, inc.last_seen_ts) == (0.0, 19.0)
    assert first.ts < middle.ts < last.ts
    assert first.window == last.window == dwell_window(umbrella.box, 640, 360)
    assert first.box == umbrella.box  # before the stall: its first cue
    assert last.box == (300.0, 100.0, 360.0, 200.0)  # the stall: both cues


@pytest.mark.parametrize(
    ("box", "size", "window"),
    [
        ((100.0, 150.0, 140.0, 180.0), (640, 360), (40, 85, 200, 245)),  # small: 160 px a side
        ((200.0, 100.0, 300.0, 150.0), (640, 360), (50, 25, 450, 225)),  # 1.5 x the box each side
        ((0.0, 0.0, 20.0, 20.0), (640, 360), (0, 0, 160, 160)),  # at a corner: moved inside the frame
        ((600.0, 300.0, 640.0, 360.0), (640, 360), (480, 120, 640, 360)),  # the other corner
        ((20.0, 20.0, 620.0, 340.0), (640, 360), (0, 0, 640, 360)),  # bigger than the frame: all of it
        ((10.0, 10.0, 20.0, 20.0), (100, 120), (0, 0, 100, 120)),  # a frame under 160 px: all of it
    ],
    ids=["small", "margin", "corner", "far-corner", "large", "tiny-frame"],
)
def test_dwell_window(box, size, window):
    assert dwell_window(box, *size) == window


def test_strip_images_are_scaled_down_to_the_largest_side():
    image = np.zeros((1080, 1920, 3), np.uint8)
    strip = DwellStrip(dwell_window((700.0, 400.0, 1100.0, 700.0), 1920, 1080), jpeg_quality=90)
    strip.observe(Frame(image=image, ts=0.0, source_id="cam", index=0), (700.0, 400.0, 1100.0, 700.0))
    first, middle, last = strip.choose()
    assert first is middle is last
    decoded = cv2.imdecode(np.frombuffer(first.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert max(decoded.shape[:2]) == DWELL_MAX_SIDE_PX and decoded.shape[1] == DWELL_MAX_SIDE_PX
