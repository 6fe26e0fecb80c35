"""The pipeline with a scripted detector over listed frames (no model): wiring, evidence, ids."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from detect.pipeline import Pipeline
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
    assert {e.role for e in inc.evidence} == {"annotated", "crop", "raw"}
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
