"""The rules: tracked detections over frame time become violations, and violations incidents.

State is kept per camera/source in a `RuleEngine`; everything it measures comes from the frames
(`Frame.ts`, seconds from the footage's start), never from the wall clock, so the same footage gives
the same incidents at any speed. Geometry is in pixels of the frame image unless a name says
`_norm` (fractions of width/height).

A violation fires once per object, when the object has stayed stationary in an active zone of its
category for at least `min_dwell_s`, has been seen in at least `min_observations` analysed frames,
and the median of its scores over that time is at least `min_median_conf`. Categories with
`min_cues > 1` (street stalls) fire once per cluster of ready, stationary cue objects standing close
together; an object of one of the category's `whole_kinds` (a model's `stall` class) is a stall by
itself, so the rule uses that class when the model has it and the cue cluster when it has not. A
lost object that reappears at the same place (box IoU >= RELINK_IOU) within `grace_s` continues its
violation; one that stays lost longer closes it.

A moving camera (a patrol vehicle's: the camera has a `mounting`, the site has geofences, and the
frame has the vehicle's position and heading from its GPS track) finds its objects on the ground
instead (detect.ground): each detection's ground position decides its category by the geofence it
falls in, and an object is stationary when its ground positions stay put while the vehicle drives
past (GroundTrack.stationary), which no dwell time can show from a car passing in seconds. Such a
violation fires when stationary with `min_observations` and `min_median_conf` met, and is withdrawn
if, once it has left the view, its whole track says it moved. With the category's `chalk` set (parking)
it is a *suspected* sighting: one pass cannot tell a parked car from one stopped for a minute, and the
case service confirms it when a later pass finds the car still there (digital chalking). Frames
without a position or heading (no track, a standing vehicle) are judged by the camera's image zones as
before.
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from detect.config import Camera, CategoryRule, SiteConfig, Zone
from detect.geofences import Geofences
from detect.ground import GroundTrack, Mounting, distance_m, ground_position
from detect.values import Box, Detection
from detect.zones import ZoneMap
from streams.frame import Frame, GeoPoint

log = logging.getLogger(__name__)

RELINK_IOU = 0.5  # a new track this close to a live or recently lost one is the same object
DUPLICATE_IOU = 0.8  # two boxes this close in one frame are one object seen twice (e.g. car + truck)
RELINK_GROUND_M = 6.0  # a moving camera's relink by IoU also needs the ground positions this close


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for empty boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_gap(a: Box, b: Box) -> float:
    """Shortest distance in pixels between two boxes; 0 when they touch or overlap."""
    dx = max(0.0, max(a[0] - b[2], b[0] - a[2]))
    dy = max(0.0, max(a[1] - b[3], b[1] - a[3]))
    return math.hypot(dx, dy)


def union_box(boxes: Iterable[Box]) -> Box:
    boxes = list(boxes)
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def bottom_centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, box[3])


def incident_id(source_id: str, category: str, first_seen_ts: float, first_box: Box, salt: str = "") -> str:
    """Deterministic id from the source, the category and the object's first sighting. salt: what
    tells apart sessions whose clocks start again at 0 (a live stream opened again: when it was
    opened); empty for footage, whose ids must be the same at every run."""
    box = ",".join(str(int(round(v))) for v in first_box)
    text = f"{source_id}|{category}|{first_seen_ts:.3f}|{box}" + (f"|{salt}" if salt else "")
    return f"inc-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


@dataclass(eq=False)
class Violation:
    """One object's (or one stall cluster's) standing against one category.

    A candidate until it fires; from then on a violation that lives until it is lost for longer than
    the grace window (closed) or the footage ends. `best_*` is the frame the evidence will show.
    """

    category: str
    rule: CategoryRule
    source_id: str
    kind: str
    zone: Zone | None
    first_seen_ts: float
    first_seen_wall: datetime | None
    first_box: Box
    last_ts: float
    last_wall: datetime | None
    last_box: Box
    dwell_start_ts: float
    anchor: tuple[float, float]
    track_ids: list[int] = field(default_factory=list)
    dwell_scores: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    best_score: float = -1.0
    best_frame: Frame | None = None
    best_box: Box | None = None
    fired_ts: float | None = None
    closed: bool = False
    members: list[Violation] = field(default_factory=list)  # a stall: its cues, the first seen first
    id_salt: str = ""  # see incident_id
    cluster: Violation | None = None  # a cue object: the cluster it belongs to
    ground: GroundTrack | None = None  # a moving camera's object: where it stood, frame by frame
    fence_id: str | None = None  # a moving camera's object: the geofence it was found in
    fence_kind: str | None = None
    best_scene: tuple[Detection, ...] = ()  # every detection of the best frame (privacy blurring)

    @property
    def fired(self) -> bool:
        return self.fired_ts is not None

    @property
    def suspected(self) -> bool:
        """A moving camera's single pass of a category confirmed by chalking (see the module docstring)."""
        return self.rule.chalk and (
            self.ground is not None or any(m.ground is not None for m in self.members)
        )

    def ground_centre(self) -> GeoPoint | None:
        """Where a moving camera's object stood (its ground positions' median; a stall's first cue's)."""
        for v in (self, *self.members):
            if v.ground is not None and v.ground.ground:
                return v.ground.centre()
        return None

    @property
    def id(self) -> str:
        return incident_id(self.source_id, self.category, self.first_seen_ts, self.first_box, self.id_salt)

    def restart_dwell(self, ts: float, box: Box) -> None:
        self.dwell_start_ts = ts
        self.anchor = bottom_centre(box)
        self.dwell_scores.clear()

    def observe(self, frame: Frame, det: Detection, scene: Sequence[Detection] = ()) -> None:
        self.last_ts = frame.ts
        self.last_wall = frame.wall_time
        self.last_box = det.box
        self.scores.append(det.score)
        self.dwell_scores.append(det.score)
        if det.track_id is not None and det.track_id not in self.track_ids:
            self.track_ids.append(det.track_id)
        if det.score > self.best_score:
            self.best_score = det.score
            self.best_frame = frame
            self.best_box = det.box
            self.best_scene = tuple(scene)

    def ready(self, now: float) -> bool:
        """Dwell (a moving camera's object: stationary on the ground), observations and steady score
        all met (firing condition)."""
        rule = self.rule
        if len(self.dwell_scores) < rule.min_observations:
            return False
        if statistics.median(self.dwell_scores) < rule.min_median_conf:
            return False
        if self.ground is not None:
            return self.ground.stationary() is True
        return now - self.dwell_start_ts >= rule.min_dwell_s

    def withdrawn(self) -> bool:
        """A moving camera's fired object whose whole track, now that it is over, says it moved."""
        return self.ground is not None and self.ground.stationary() is not True


@dataclass
class StepResult:
    fired: list[Violation] = field(default_factory=list)
    closed: list[Violation] = field(default_factory=list)


class RuleEngine:
    """The rules of one camera over one source's frames, fed tracked detections in time order."""

    def __init__(
        self,
        config: SiteConfig,
        camera: Camera,
        source_id: str,
        *,
        id_salt: str = "",
        geofences: Geofences | None = None,
    ) -> None:
        self.config = config
        self.camera = camera
        self.source_id = source_id
        self.id_salt = id_salt
        self.zones = ZoneMap(camera.zones, camera.timezone)
        self.geofences = geofences if geofences else None
        m = camera.mounting
        self.mounting = (
            Mounting(m.height_m, m.pitch_deg, m.hfov_deg, m.yaw_deg, m.max_range_m) if m is not None else None
        )
        if self.mounting is not None and self.geofences is None:
            log.warning(
                "camera %s has a mounting but the site has no geofences: its objects are judged by its "
                "image zones only",
                camera.id,
            )
        self.categories = config.categories
        self._alive: dict[str, list[Violation]] = {name: [] for name in self.categories}
        self._clusters: dict[str, list[Violation]] = {name: [] for name in self.categories}
        self._by_track: dict[tuple[str, int], Violation] = {}
        self._now = -math.inf

    @property
    def needs_camera_motion(self) -> bool:
        """Whether any step can read `camera_static`: a category that requires a still camera and
        can apply on this camera (it fires anywhere, or the camera has a zone of its kind)."""
        kinds = {z.kind for z in self.camera.zones}
        return any(
            rule.require_static_camera and (rule.anywhere or rule.zone_kind in kinds)
            for rule in self.categories.values()
        )

    def step(
        self, frame: Frame, detections: Sequence[Detection], *, camera_static: bool = True
    ) -> StepResult:
        """Advance to `frame` with its tracked detections; returns what fired and what closed."""
        if frame.ts < self._now:
            raise ValueError(f"frames out of order: ts {frame.ts} after {self._now}")
        self._now = now = frame.ts
        result = StepResult()
        for name in self.categories:  # first, so that a long-lost object cannot be relinked
            result.closed.extend(self._expire(name, now))
        size = (frame.width, frame.height)
        updated: set[int] = set()
        on_ground = (
            self.mounting is not None
            and self.geofences is not None
            and frame.position is not None
            and frame.heading is not None
        )
        local = self.zones.local_time(frame.wall_time)
        for det in detections:
            if det.kind is None:
                continue
            ground: GeoPoint | None = None
            if on_ground:
                assert self.mounting is not None and frame.position is not None and frame.heading is not None
                ground = ground_position(det.box, size, self.mounting, frame.position, frame.heading)
                if ground is None:  # above the horizon or out of range: nowhere to place it
                    continue
            for name, rule in self.categories.items():
                if det.kind not in rule.kinds:
                    continue
                zone: Zone | None = None
                fence_id = fence_kind = None
                if ground is not None:
                    assert self.geofences is not None
                    fence = self.geofences.fence_for(ground, local, rule.zone_kind)
                    if fence is None and not rule.anywhere:
                        continue
                    fence_id, fence_kind = (fence.id, fence.kind) if fence else (None, None)
                else:
                    zones = self.zones.zones_at(
                        bottom_centre(det.box), size, wall_time=frame.wall_time, kind=rule.zone_kind
                    )
                    if not zones and not rule.anywhere:
                        continue
                    zone = zones[0] if zones else None
                violation = self._match(name, det, now, ground)
                if violation is None:
                    violation = self._open(name, rule, det, frame, zone)
                    if ground is not None:
                        violation.ground = GroundTrack()
                        violation.fence_id, violation.fence_kind = fence_id, fence_kind
                elif id(violation) in updated:  # a duplicate box of an object already seen
                    if det.track_id is not None and det.track_id not in violation.track_ids:
                        violation.track_ids.append(det.track_id)
                    continue
                updated.add(id(violation))
                self._update(violation, det, frame, camera_static, ground, detections)
        for name, rule in self.categories.items():
            if rule.min_cues > 1:
                result.fired.extend(self._fire_clusters(name, rule, frame))
            else:
                for v in self._alive[name]:
                    if not v.fired and v.last_ts == now and v.ready(now):
                        v.fired_ts = now
                        result.fired.append(v)
        for v in result.fired:
            log.info(
                "%s fired%s: %s %s in zone %s at %.1f s",
                v.category,
                " (suspected)" if v.suspected else "",
                v.id,
                v.kind,
                v.zone.id if v.zone else v.fence_id or "-",
                now,
            )
        result.closed = [v for v in result.closed if not _withdraw(v)]
        return result

    def finish(self) -> list[Violation]:
        """The footage ended: every fired violation still open, in firing order."""
        out = []
        for name in self.categories:
            if self.categories[name].min_cues > 1:
                out.extend(self._clusters[name])
            else:
                out.extend(v for v in self._alive[name] if v.fired and not _withdraw(v))
            self._alive[name] = []
            self._clusters[name] = []
        self._by_track.clear()
        return sorted(out, key=lambda v: (v.fired_ts or 0.0, v.first_seen_ts))

    def sightings(self) -> list[Violation]:
        """What the rules are timing now, one entry per object or stall: each object in an active zone
        of its category (a candidate, or fired and not yet closed) that is no cue of a stall, and each
        stall still open."""
        out: list[Violation] = []
        for name in self.categories:
            out.extend(v for v in self._alive[name] if v.cluster is None)
            out.extend(self._clusters[name])
        return out

    # -- internals -------------------------------------------------------------------------------

    def _match(
        self, category: str, det: Detection, now: float, ground: GeoPoint | None = None
    ) -> Violation | None:
        if det.track_id is not None:
            known = self._by_track.get((category, det.track_id))
            if known is not None and known in self._alive[category]:
                return known
        best, best_iou = None, RELINK_IOU
        for v in self._alive[category]:
            overlap = iou(v.last_box, det.box)
            # seen already in this frame: only a near-identical box is the same object again
            if v.last_ts == now and overlap < DUPLICATE_IOU:
                continue
            # from a moving car, the next parked car along the kerb appears where the last one was
            if (
                ground is not None
                and v.ground is not None
                and v.ground.ground
                and distance_m(v.ground.ground[-1], ground) > RELINK_GROUND_M
            ):
                continue
            if overlap >= best_iou:
                best, best_iou = v, overlap
        if best is not None and det.track_id is not None:
            self._by_track[(category, det.track_id)] = best
        return best

    def _open(
        self, name: str, rule: CategoryRule, det: Detection, frame: Frame, zone: Zone | None
    ) -> Violation:
        v = Violation(
            category=name,
            rule=rule,
            source_id=self.source_id,
            kind=det.kind or det.class_name,
            zone=zone,
            first_seen_ts=frame.ts,
            first_seen_wall=frame.wall_time,
            first_box=det.box,
            last_ts=frame.ts,
            last_wall=frame.wall_time,
            last_box=det.box,
            dwell_start_ts=frame.ts,
            anchor=bottom_centre(det.box),
            id_salt=self.id_salt,
        )
        self._alive[name].append(v)
        if det.track_id is not None:
            self._by_track[(name, det.track_id)] = v
        return v

    def _update(
        self,
        v: Violation,
        det: Detection,
        frame: Frame,
        camera_static: bool,
        ground: GeoPoint | None = None,
        scene: Sequence[Detection] = (),
    ) -> None:
        rule = v.rule
        if v.ground is not None:  # judged on the ground; a frame that could not place it only counts
            if ground is not None and frame.position is not None:
                v.ground.add(frame.ts, frame.position, ground)
        elif not v.fired:
            moving_camera = rule.require_static_camera and not camera_static
            height = max(1.0, det.box[3] - det.box[1])
            drift = math.dist(bottom_centre(det.box), v.anchor) / height
            drifted = rule.max_drift_ratio is not None and drift > rule.max_drift_ratio
            if moving_camera or drifted:
                v.restart_dwell(frame.ts, det.box)
        v.observe(frame, det, scene)

    def _expire(self, name: str, now: float) -> list[Violation]:
        grace = self.config.grace_s
        keep, closed = [], []
        for v in self._alive[name]:
            if now - v.last_ts > grace:
                v.closed = True
                if v.fired and v.cluster is None and not v.members:
                    closed.append(v)
            else:
                keep.append(v)
        if len(keep) != len(self._alive[name]):
            gone = {id(v) for v in self._alive[name]} - {id(v) for v in keep}
            self._by_track = {k: v for k, v in self._by_track.items() if id(v) not in gone}
            self._alive[name] = keep
        clusters_left = []
        for cluster in self._clusters[name]:
            if all(m.closed for m in cluster.members):
                cluster.closed = True
                closed.append(cluster)
            else:
                clusters_left.append(cluster)
        self._clusters[name] = clusters_left
        return closed

    def _fire_clusters(self, name: str, rule: CategoryRule, frame: Frame) -> list[Violation]:
        """Group ready cue objects seen in this frame into stalls; join cues to existing stalls."""
        now = frame.ts
        max_gap = rule.cue_gap_norm * frame.width
        ready = [v for v in self._alive[name] if v.cluster is None and v.last_ts == now and v.ready(now)]
        for cue in list(ready):
            for cluster in self._clusters[name]:
                if box_gap(cue.last_box, cluster.last_box) <= max_gap:
                    self._join(cluster, cue)
                    ready.remove(cue)
                    break
        fired = []
        for group in _groups(ready, max_gap):
            whole = any(v.kind in rule.whole_kinds for v in group)  # a stall the model saw as one
            if len({id(v) for v in group}) < rule.min_cues and not whole:
                continue
            first = min(group, key=lambda v: (v.first_seen_ts, v.first_box))
            cluster = Violation(
                category=name,
                rule=rule,
                source_id=self.source_id,
                kind="stall",
                zone=first.zone,
                first_seen_ts=first.first_seen_ts,
                first_seen_wall=first.first_seen_wall,
                first_box=first.first_box,
                last_ts=now,
                last_wall=frame.wall_time,
                last_box=union_box(v.last_box for v in group),
                dwell_start_ts=min(v.dwell_start_ts for v in group),
                anchor=first.anchor,
                fired_ts=now,
                id_salt=self.id_salt,
                fence_id=first.fence_id,
                fence_kind=first.fence_kind,
                best_scene=first.best_scene,
            )
            for cue in [first, *(v for v in group if v is not first)]:
                self._join(cluster, cue)
            self._clusters[name].append(cluster)
            fired.append(cluster)
        for cluster in self._clusters[name]:
            seen = [m for m in cluster.members if m.last_ts == now]
            if seen:
                cluster.last_ts = now
                cluster.last_wall = frame.wall_time
                cluster.last_box = union_box(m.last_box for m in seen)
                score = sum(m.scores[-1] for m in seen)  # more cues seen, and surer, is better evidence
                if score > cluster.best_score:
                    cluster.best_score = score
                    cluster.best_frame = frame
                    cluster.best_box = cluster.last_box
        return fired

    @staticmethod
    def _join(cluster: Violation, cue: Violation) -> None:
        cue.cluster = cluster
        cue.fired_ts = cue.fired_ts or cluster.fired_ts
        cluster.members.append(cue)
        cluster.track_ids.extend(t for t in cue.track_ids if t not in cluster.track_ids)
        cluster.scores = [s for m in cluster.members for s in m.scores]


def _withdraw(v: Violation) -> bool:
    """Whether a closing violation is dropped: a moving camera's object that turned out to move."""
    if v.withdrawn():
        log.info("%s withdrawn: %s %s moved on the ground after it fired", v.category, v.id, v.kind)
        return True
    return False


def _groups(cues: list[Violation], max_gap: float) -> list[list[Violation]]:
    """Connected groups of cue objects whose boxes lie within max_gap pixels of each other."""
    parent = list(range(len(cues)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(cues)):
        for j in range(i + 1, len(cues)):
            if box_gap(cues[i].last_box, cues[j].last_box) <= max_gap:
                parent[root(i)] = root(j)
    groups: dict[int, list[Violation]] = {}
    for i, cue in enumerate(cues):
        groups.setdefault(root(i), []).append(cue)
    return list(groups.values())
