"""The rules: tracked detections over frame time become violations, and violations incidents.

State is kept per camera/source in a `RuleEngine`; everything it measures comes from the frames
(`Frame.ts`, seconds from the footage's start), never from the wall clock, so the same footage gives
the same incidents at any speed. Geometry is in pixels of the frame image unless a name says
`_norm` (fractions of width/height).

A violation fires once per object, when the object has stayed stationary in an active zone of its
category for at least `min_dwell_s`, has been seen in at least `min_observations` analysed frames,
and the median of its scores over that time is at least `min_median_conf`. Categories with
`min_cues > 1` (street stalls) fire once per cluster of ready, stationary cue objects standing close
together. A lost object that reappears at the same place (box IoU >= RELINK_IOU) within `grace_s`
continues its violation; one that stays lost longer closes it.
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
from detect.values import Box, Detection
from detect.zones import ZoneMap
from streams.frame import Frame

log = logging.getLogger(__name__)

RELINK_IOU = 0.5  # a new track this close to a live or recently lost one is the same object
DUPLICATE_IOU = 0.8  # two boxes this close in one frame are one object seen twice (e.g. car + truck)


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

    @property
    def fired(self) -> bool:
        return self.fired_ts is not None

    @property
    def id(self) -> str:
        return incident_id(self.source_id, self.category, self.first_seen_ts, self.first_box, self.id_salt)

    def restart_dwell(self, ts: float, box: Box) -> None:
        self.dwell_start_ts = ts
        self.anchor = bottom_centre(box)
        self.dwell_scores.clear()

    def observe(self, frame: Frame, det: Detection) -> None:
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

    def ready(self, now: float) -> bool:
        """Dwell, observations and steady score all met (firing condition)."""
        rule = self.rule
        return (
            now - self.dwell_start_ts >= rule.min_dwell_s
            and len(self.dwell_scores) >= rule.min_observations
            and statistics.median(self.dwell_scores) >= rule.min_median_conf
        )


@dataclass
class StepResult:
    fired: list[Violation] = field(default_factory=list)
    closed: list[Violation] = field(default_factory=list)


class RuleEngine:
    """The rules of one camera over one source's frames, fed tracked detections in time order."""

    def __init__(self, config: SiteConfig, camera: Camera, source_id: str, *, id_salt: str = "") -> None:
        self.config = config
        self.camera = camera
        self.source_id = source_id
        self.id_salt = id_salt
        self.zones = ZoneMap(camera.zones, camera.timezone)
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
        for det in detections:
            if det.kind is None:
                continue
            for name, rule in self.categories.items():
                if det.kind not in rule.kinds:
                    continue
                zones = self.zones.zones_at(
                    bottom_centre(det.box), size, wall_time=frame.wall_time, kind=rule.zone_kind
                )
                if not zones and not rule.anywhere:
                    continue
                violation = self._match(name, det, now)
                if violation is None:
                    violation = self._open(name, rule, det, frame, zones[0] if zones else None)
                elif id(violation) in updated:  # a duplicate box of an object already seen
                    if det.track_id is not None and det.track_id not in violation.track_ids:
                        violation.track_ids.append(det.track_id)
                    continue
                updated.add(id(violation))
                self._update(violation, det, frame, camera_static)
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
                "%s fired: %s %s in zone %s at %.1f s",
                v.category,
                v.id,
                v.kind,
                v.zone.id if v.zone else "-",
                now,
            )
        return result

    def finish(self) -> list[Violation]:
        """The footage ended: every fired violation still open, in firing order."""
        out = []
        for name in self.categories:
            if self.categories[name].min_cues > 1:
                out.extend(self._clusters[name])
            else:
                out.extend(v for v in self._alive[name] if v.fired)
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

    def _match(self, category: str, det: Detection, now: float) -> Violation | None:
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

    def _update(self, v: Violation, det: Detection, frame: Frame, camera_static: bool) -> None:
        rule = v.rule
        if not v.fired:
            moving_camera = rule.require_static_camera and not camera_static
            height = max(1.0, det.box[3] - det.box[1])
            drift = math.dist(bottom_centre(det.box), v.anchor) / height
            drifted = rule.max_drift_ratio is not None and drift > rule.max_drift_ratio
            if moving_camera or drifted:
                v.restart_dwell(frame.ts, det.box)
        v.observe(frame, det)

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
            if len({id(v) for v in group}) < rule.min_cues:
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
