"""Footage to incidents: frames -> detector -> tracker -> camera motion -> rules -> evidence.

A generator end to end: frames are pulled one at a time (decoded ahead in a bounded background
queue; a live stream's newest, skipping those the analysis has no time for: streams.prefetch),
nothing holds a whole video, and each incident is yielded as soon as its violation ends
(the object left for longer than the grace window) or the footage ends. Each sighting the rules time
keeps a few small JPEGs for its dwell strip (detect.evidence.DwellStrip), never whole frames.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from detect import SetupError
from detect.camera_motion import CameraMotion
from detect.config import Camera, SiteConfig
from detect.evidence import DwellStrip, dwell_window, write_dwell_strip, write_evidence
from detect.geofences import Geofences, load_geofences
from detect.plate_reader import PlateReader
from detect.plates import Plate
from detect.rules import RuleEngine, Violation
from detect.values import Box, Detection, Incident
from streams.frame import Frame, GeoPoint
from streams.gps import DEFAULT_MAX_GAP_S, GpsTrack, load_track, with_track_positions

log = logging.getLogger(__name__)


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]: ...


class Tracker(Protocol):
    def update(self, detections: Sequence[Detection], image: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class Progress:
    """Where a run stands: frames analysed, footage seconds reached, share done when the length is
    known, analysed frames per second of wall time, incidents fired so far."""

    frames: int
    ts: float
    fraction: float | None
    fps: float
    incidents: int


class DwellStrips:
    """The dwell strip of each sighting the rules are timing (RuleEngine.sightings), by violation.

    A strip starts when its sighting is first seen (a stall takes over the strip of its first cue),
    takes each frame the sighting is seen in, settles in the first frame it is missed, and is dropped
    when the rules drop the sighting: memory is DWELL_SAMPLES + 2 small JPEGs per live sighting.
    """

    def __init__(self, jpeg_quality: int, *, privacy: bool = True) -> None:
        self.jpeg_quality = jpeg_quality
        self.privacy = privacy
        self._strips: dict[Violation, DwellStrip] = {}

    def __len__(self) -> int:
        return len(self._strips)

    def get(self, violation: Violation) -> DwellStrip | None:
        return self._strips.get(violation)

    def update(self, frame: Frame, sightings: Iterable[Violation], scene: Sequence[Detection] = ()) -> None:
        """After the rules' step on `frame`: feed each sighting's strip. scene: the frame's detections
        (privacy blurring: faces, other vehicles' plates)."""
        for v in sightings:
            strip = self._strips.get(v)
            if strip is None:
                lead = self._strips.pop(v.members[0], None) if v.members else None
                # a moving camera's object crosses the frame: its strip shows the whole frame
                window = (
                    (0, 0, frame.width, frame.height)
                    if v.ground is not None
                    else dwell_window(v.first_box, frame.width, frame.height)
                )
                strip = lead or DwellStrip(window, self.jpeg_quality, privacy=self.privacy)
                self._strips[v] = strip
            if v.last_ts == frame.ts:
                strip.observe(frame, v.last_box, scene)
            else:
                strip.settle()

    def retain(self, sightings: Iterable[Violation]) -> None:
        """Drop the strips of sightings the rules no longer time."""
        live = set(sightings)
        if any(v not in live for v in self._strips):
            self._strips = {v: s for v, s in self._strips.items() if v in live}

    def clear(self) -> None:
        self._strips.clear()


class Pipeline:
    """The per-source chain from frames to incidents; one instance per camera or upload."""

    def __init__(
        self,
        config: SiteConfig,
        camera: Camera,
        *,
        detector: Detector,
        out_dir: Path,
        source_id: str,
        tracker: Tracker | None = None,
        emit_open: bool = False,
        id_salt: str = "",
        geofences: Geofences | None = None,
        plate_reader: PlateReader | None = None,
    ) -> None:
        self.config = config
        self.emit_open = emit_open
        self.camera = camera
        self.detector = detector
        self.out_dir = Path(out_dir)
        self.source_id = source_id
        self.tracker = tracker
        self.rules = RuleEngine(config, camera, source_id, id_salt=id_salt, geofences=geofences)
        self.plate_reader = plate_reader
        # optical flow costs ~2 ms a frame (benchmarks/pipeline.py); measured only where a rule reads it
        self.motion = CameraMotion(config.static_camera_max_flow) if self.rules.needs_camera_motion else None
        self.strips = DwellStrips(config.evidence.jpeg_quality, privacy=config.evidence.privacy)
        self.frames = 0
        self.fired = 0
        self.last_ts = 0.0
        self.zone = ZoneInfo(camera.timezone)

    def process(self, frames: Iterable[Frame]) -> Iterator[Incident]:
        """Run over frames in time order; yields each incident when its violation ends.

        With emit_open (live cameras, where a car may stand for hours), an incident is also
        yielded the moment it fires (closed=False, evidence so far); the final one follows with the
        same id and supersedes it.

        A frame's absolute time (an upload's start time comes back from the database in UTC, a live
        camera's receive time is UTC) is read at the camera's time zone, the same instant: incidents,
        their evidence labels and dwell strips carry the camera's local time with its offset, which
        the pages show them at.
        """
        for raw in frames:
            frame = self.local(raw)
            detections = self.detector.detect(frame.image)
            tracked = self.tracker.update(detections, frame.image) if self.tracker else detections
            static = self.motion.update(frame.image, frame.ts, detections) if self.motion else True
            result = self.rules.step(frame, tracked, camera_static=static)
            sightings = self.rules.sightings()
            self.strips.update(frame, sightings, tracked)
            self.frames += 1
            self.fired += len(result.fired)
            self.last_ts = frame.ts
            if self.emit_open:
                for violation in result.fired:
                    yield self.to_incident(violation)
            for violation in result.closed:
                yield self.to_incident(violation)
            self.strips.retain(sightings)
        for violation in self.rules.finish():
            yield self.to_incident(violation)
        self.strips.clear()

    def local(self, frame: Frame) -> Frame:
        wall = frame.wall_time
        if wall is None or wall.tzinfo is None:
            return frame
        return replace(frame, wall_time=wall.astimezone(self.zone))

    def to_incident(self, v: Violation) -> Incident:
        """The incident of a fired violation, with its evidence images and dwell strip written."""
        frame = v.best_frame
        box = v.best_box or v.last_box
        strip = self.strips.get(v)
        if frame is None or strip is None:  # cannot happen for a violation that was observed; guard anyway
            raise RuntimeError(f"violation {v.id} has no frame to show")
        # a moving camera's object: where it stood; else where the camera stood
        fixed = self.camera.position
        position = v.ground_centre() or frame.position or (GeoPoint(fixed.lat, fixed.lon) if fixed else None)
        plate = self.read_plate(v, frame.image, box)
        label = (
            f"{v.category}: {v.kind} {v.best_score:.2f}"
            if not v.members
            else (f"{v.category}: {len(v.members)} cues ({', '.join(sorted({m.kind for m in v.members}))})")
        )
        evidence = write_evidence(
            self.out_dir,
            v.id,
            frame.image,
            box,
            label=label,
            ts=frame.ts,
            # the label shows the camera's local time (with its offset): what an inspector reads the scene by
            wall_time=frame.wall_time,
            camera=self.camera.name or self.camera.id if self.camera.id != "default" else self.source_id,
            jpeg_quality=self.config.evidence.jpeg_quality,
            crop_margin_ratio=self.config.evidence.crop_margin_ratio,
            frame_index=frame.index,
            zone_norm=v.zone.points_norm if v.zone else None,
            scene=v.best_scene,
            privacy=self.config.evidence.privacy,
        ) + write_dwell_strip(self.out_dir, v.id, strip)
        scores = v.scores or [v.best_score]
        return Incident(
            id=v.id,
            category=v.category,
            object_kind=v.kind,
            source_id=self.source_id,
            zone_id=v.zone.id if v.zone else v.fence_id,
            zone_kind=v.zone.kind if v.zone else v.fence_kind,
            first_seen_ts=round(v.first_seen_ts, 3),
            last_seen_ts=round(v.last_ts, 3),
            best_ts=round(frame.ts, 3),
            box=(round(box[0], 1), round(box[1], 1), round(box[2], 1), round(box[3], 1)),
            confidence_median=round(statistics.median(scores), 4),
            confidence_max=round(max(scores), 4),
            observations=len(scores),
            first_seen_wall=v.first_seen_wall,
            last_seen_wall=v.last_wall,
            position=(position.lat, position.lon) if position else None,
            frame_index=frame.index,
            track_ids=tuple(v.track_ids),
            evidence=evidence,
            closed=v.closed,
            plate=plate.text if plate else None,
            plate_confidence=round(plate.confidence, 4) if plate else None,
            suspected=v.suspected,
        )

    def read_plate(self, v: Violation, image: np.ndarray, box: Box) -> Plate | None:
        """The plate of a vehicle whose category reads plates (`read_plate`), on its evidence frame;
        None without a reader, for a stall, or when no reading fits the national format."""
        if self.plate_reader is None or not v.rule.read_plate or v.members:
            return None
        try:
            return self.plate_reader.read(image, box)
        except SetupError as exc:  # rapidocr missing (Python 3.13+): say so once, go on without plates
            log.warning("plates are not read: %s", exc)
            self.plate_reader = None
            return None


def build_detector(config: SiteConfig) -> Detector:
    """The YOLO detector the config names (imports ultralytics: call only from workers/CLI)."""
    from detect.yolo import YoloDetector

    m = config.model
    return YoloDetector(
        m.weights,
        kinds=config.kinds,
        imgsz=m.imgsz,
        device=m.device,
        conf=m.conf,
        iou=m.iou,
        backend=m.backend,
    )


class ReusingPipeline:
    """detect_footage with the detector kept across jobs: loading (and on a CPU compiling) a model
    costs seconds, and a worker or a runner's upload loop runs many jobs with the same one. One
    detector, for the config's current model settings; `warm` loads it before the first job."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._detector: Detector | None = None

    def detector(self, config: SiteConfig) -> Detector:
        key = config.model.model_dump_json()
        if self._detector is None or key != self._key:
            self._detector, self._key = build_detector(config), key
        return self._detector

    def warm(self, config: SiteConfig) -> None:
        self.detector(config)

    def __call__(self, input: str | Path, config: SiteConfig, **kwargs: Any) -> FootageRun:
        detector = self.detector(config)
        return FootageRun(
            lambda notes: detect_footage(input, config, detector=detector, notes=notes, **kwargs)
        )


class FootageRun(Iterator[Incident]):
    """detect_footage's incidents as they are decided and, once they are all out, its `notes` on the
    footage (detect_footage's `notes`: a file analysed only in part), which the worker and the
    runners show on the done job."""

    def __init__(self, start: Callable[[list[str]], Iterator[Incident]]) -> None:
        self.notes: list[str] = []
        self._incidents = start(self.notes)

    def __next__(self) -> Incident:
        return next(self._incidents)


def footage_notes(
    incidents: object, footage: Path, name: str, *, track: Path | None = None, track_name: str | None = None
) -> str | None:
    """A pipeline run's notes on the footage once its incidents are all out (FootageRun.notes: a file
    analysed only in part, incidents its GPS track did not place), with the path of the job's copy of
    the footage replaced by the name it was uploaded as, and the path of its copy of the track by the
    track's (`track_name`); None for none, or for a pipeline that keeps no notes (the in-process
    worker's and the runners' done job shows it)."""
    notes = getattr(incidents, "notes", None) or []
    shown = [str(note).replace(str(footage), name) for note in notes]
    if track is not None and track_name is not None:
        shown = [note.replace(str(track), track_name) for note in shown]
    return "; ".join(shown) or None


_plate_reader: PlateReader | None = None
_plate_reader_lock = threading.Lock()


def shared_plate_reader() -> PlateReader:
    """One plate reader per process (its OCR model loads on first use and is thread-safe)."""
    global _plate_reader
    with _plate_reader_lock:
        if _plate_reader is None:
            _plate_reader = PlateReader()
        return _plate_reader


def build_tracker(config: SiteConfig, native_fps: float | None) -> Tracker:
    from detect.yolo import ObjectTracker

    rate = config.analysis_fps or native_fps or 10.0
    if native_fps:
        rate = min(rate, native_fps)
    return ObjectTracker(config.tracker.type, buffer_frames=round(config.tracker.track_buffer_s * rate))


def detect_footage(
    input: str | Path,
    config: SiteConfig,
    *,
    out_dir: Path,
    camera_id: str | None = None,
    start_time: datetime | None = None,
    source_id: str | None = None,
    image_fps: float | None = None,
    progress: Callable[[float], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    detector: Detector | None = None,
    tracker: Tracker | None = None,
    emit_open: bool = False,
    track: str | Path | GpsTrack | None = None,
    stop: threading.Event | None = None,
    id_salt: str = "",
    notes: list[str] | None = None,
) -> Iterator[Incident]:
    """Incidents in footage (a video file, an image folder, or a camera or stream URL), as they end.

    Evidence files go under out_dir. `progress` receives the share done (0..1) when the footage's
    length is known; `on_progress` the full Progress after every analysed frame. Bad footage
    raises streams.SourceError, a bad track file streams.gps.TrackError, before any frame is analysed.
    detector / tracker: the config's model and tracker unless given (tests pass fakes).

    start_time: the footage's first frame; a time without an offset is the camera's local time
    (its `timezone`), as zone hours read it.
    track: a GPS track (GPX, NMEA or CSV file, or a loaded GpsTrack) of the vehicle carrying the
    camera. Each frame gets the track's position at its time (start_time + ts; with no start time
    the first frame is aligned with the track's first fix, see streams.gps.with_track_positions),
    and each incident the position of the frame its evidence shows. CSV times written without an
    offset are read in the camera's time zone. Where the track says nothing
    (before or after it, in a gap over 30 s) a frame keeps the camera's configured position when
    the camera has one, as without a track, else none.
    stop: when set, the source is closed within half a second and the incidents end, also while a
    live stream is down and its source waits to reconnect (a runner letting a camera go).
    id_salt: mixed into the incident ids of a file's footage (detect.rules.incident_id), so that the
    same footage analysed again with corrected inputs gets ids of its own; "" keeps the plain ids. A
    live stream's ids are salted with the session's start instead.
    notes: where the caveats a user should see go, once the incidents are all out: a video file whose
    decoding stopped before the end its container states (cut short, damaged), so that its later part
    was never analysed; incidents with no position because the GPS track, which placed other frames,
    does not reach their evidence frames; and incidents of a file that nothing dated (no start time, no
    GPS track, no image times), which a service dates when it files them (FootageRun keeps them for the
    worker and runners).
    """
    from streams import open_source, prefetch

    camera = config.camera(camera_id)
    gps: GpsTrack | None = None
    if isinstance(track, GpsTrack):
        gps = track
    elif track is not None:
        gps = load_track(track, tz=ZoneInfo(camera.timezone))  # CSV times without an offset: camera time
    if gps is not None:
        # a GPS jump (a receiver's stale or 0, 0 fix, multipath between tall buildings) would place the
        # frames around it on the line to it, the incidents there kilometres off, a camera with a mounting
        # or without; the grid map and the coverage leave them out too
        gps = gps.without_jumps()
    fences = load_geofences(config.geofences) if config.geofences is not None else None
    reads_plates = any(rule.read_plate for rule in config.categories.values())
    position = GeoPoint(camera.position.lat, camera.position.lon) if camera.position else None
    source = open_source(
        input,
        source_id=source_id or (camera.id if camera.id != "default" else None),
        analysis_fps=config.analysis_fps,
        start_time=start_time or camera.start_time,
        position=position,
        image_fps=image_fps,
    )
    sid = source.source_id
    pipeline = Pipeline(
        config,
        camera,
        detector=detector or build_detector(config),
        tracker=tracker or build_tracker(config, source.info.fps),
        out_dir=out_dir,
        source_id=sid,
        emit_open=emit_open,
        # a live stream's clock starts at 0 each time it is opened: the session's start tells its
        # incidents from an earlier session's (a restarted runner must not repeat an id)
        id_salt=datetime.now(UTC).isoformat() if source.info.kind == "live" else id_salt,
        geofences=fences,
        plate_reader=shared_plate_reader() if reads_plates else None,
    )
    duration = source.info.duration_s
    started = time.perf_counter()

    decoded: Iterator[Frame] = prefetch(source)
    if gps is not None:
        decoded = with_track_positions(decoded, gps, local_tz=ZoneInfo(camera.timezone))

    placed = False  # a frame had a position (the track's, where the camera has none)

    def frames() -> Iterator[Frame]:
        nonlocal placed
        for frame in decoded:
            placed = placed or frame.position is not None
            yield frame
            # called after the pipeline has taken the previous frame
            elapsed = max(1e-9, time.perf_counter() - started)
            fraction = min(1.0, frame.ts / duration) if duration else None
            if progress and fraction is not None:
                progress(fraction)
            if on_progress:
                on_progress(
                    Progress(pipeline.frames, frame.ts, fraction, pipeline.frames / elapsed, pipeline.fired)
                )

    ended = threading.Event()
    if stop is not None:  # a live source may wait out an outage: close it from here when asked

        def watch() -> None:
            while not ended.wait(0.5):
                if stop.is_set():
                    source.close()
                    return

        threading.Thread(target=watch, name="gridpatrol-source-stop", daemon=True).start()
    undated: set[str] = set()  # ids of incidents with no wall-clock time: nothing dated their frames
    unplaced: set[str] = set()  # ids of incidents with no position though a track came: it missed them
    try:
        for incident in pipeline.process(frames()):
            if incident.first_seen_wall is None:
                undated.add(incident.id)
            if gps is not None and incident.position is None:
                unplaced.add(incident.id)
            yield incident
        if source.stopped_early is not None and source.info.kind != "live":
            note = (
                f"the footage was analysed only in part ({source.info.name}: {source.stopped_early}); "
                "nothing after that point was looked at"
            )
            log.warning("%s", note)
            if notes is not None:
                notes.append(note)
        # (a track that placed no frame at all: the service's track fit says so, naming both spans)
        if unplaced and gps is not None and placed:
            zone = ZoneInfo(camera.timezone)
            span = " .. ".join(t.astimezone(zone).isoformat(timespec="seconds") for t in (gps.start, gps.end))
            note = (
                f"{len(unplaced)} incident(s) have no position: GPS track '{gps.name}' ({span}) does not "
                "cover their evidence frames (before its first fix, after its last, or in a gap over "
                f"{DEFAULT_MAX_GAP_S:.0f} s)"
            )
            log.warning("%s: %s", source.info.name, note)
            if notes is not None:
                notes.append(note)
        if undated and source.info.kind != "live":
            note = (
                "the footage came without a start time and nothing dates its frames (no GPS track): "
                f"its {len(undated)} incident(s) have no time of their own and are dated when they are "
                "filed; send the footage again with its start time"
            )
            log.warning("%s: %s", source.info.name, note)
            if notes is not None:
                notes.append(note)
    finally:
        ended.set()
        source.close()
    if progress:
        progress(1.0)
