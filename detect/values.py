"""Our own values for what the model saw and what the rules decided.

Everything downstream of the detector adapter speaks these types, never ultralytics `Results`.
Boxes are pixel coordinates (x1, y1, x2, y2) in the frame's image, origin top-left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Detection:
    """One object in one frame.

    box: (x1, y1, x2, y2) in pixels. class_name: the model's class name; kind: the object kind the
    site config maps it to (None when the config does not use that class). track_id: set by the
    tracker, None before tracking.
    """

    box: Box
    score: float
    class_name: str
    kind: str | None = None
    track_id: int | None = None

    @property
    def bottom_centre(self) -> tuple[float, float]:
        x1, _, x2, y2 = self.box
        return ((x1 + x2) / 2.0, y2)

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)


Window = tuple[int, int, int, int]

DWELL_ROLES = ("dwell_first", "dwell_middle", "dwell_last")


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """One evidence image written for an incident. path is relative to the output folder.

    role: "annotated", "crop" or "raw" (the best frame, privacy-blurred), "original" (the best frame
    before blurring, written only when something was blurred; sealed in the case service), or one
    frame of the dwell strip,
    "dwell_first", "dwell_middle" or "dwell_last" (the sighting's first frame, the one nearest the
    middle of its time, its last so far), which alone set the strip fields:
    ts: the frame's time in seconds from the footage's start; wall_time: its absolute time, when known;
    window: (x1, y1, x2, y2) in full-frame pixels, the part of the frame the image shows, the same
        for the three frames of a strip (the image may be scaled down from it);
    box: (x1, y1, x2, y2) in full-frame pixels, the object (or stall) in that frame.
    """

    role: str
    path: str
    sha256: str
    media_type: str = "image/jpeg"
    ts: float | None = None
    wall_time: datetime | None = None
    window: Window | None = None
    box: Box | None = None

    def to_json(self) -> dict[str, Any]:
        """role, path, sha256 and media_type; a strip frame (ts set) adds ts, wall_time (ISO 8601 or
        None), window and box (lists)."""
        data: dict[str, Any] = {
            "role": self.role,
            "path": self.path,
            "sha256": self.sha256,
            "media_type": self.media_type,
        }
        if self.ts is not None:
            data["ts"] = self.ts
            data["wall_time"] = self.wall_time.isoformat() if self.wall_time else None
            data["window"] = list(self.window) if self.window else None
            data["box"] = list(self.box) if self.box else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvidenceFile:
        """The inverse of to_json."""
        window, box, wall = data.get("window"), data.get("box"), data.get("wall_time")
        return cls(
            role=data["role"],
            path=data["path"],
            sha256=data["sha256"],
            media_type=data.get("media_type", "image/jpeg"),
            ts=data.get("ts"),
            wall_time=datetime.fromisoformat(wall) if wall else None,
            window=(int(window[0]), int(window[1]), int(window[2]), int(window[3])) if window else None,
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box else None,
        )


@dataclass(frozen=True, slots=True)
class Incident:
    """One violation by one object (or one cluster of stall cues), as the rules decided it.

    id is deterministic from the source, the object's first sighting and the category, so the same
    footage gives the same ids and a retried upload never looks like a new violation.
    Times: first_seen_ts / last_seen_ts in seconds from the footage's start; *_wall when known.
    box: (x1, y1, x2, y2) pixels at best_ts, the frame the evidence shows.
    position: (lat, lon) WGS84 degrees where the camera stood, when known.
    evidence: the best frame (annotated, crop, raw), then the dwell strip (dwell_first, dwell_middle,
    dwell_last: the same window of the frame across the sighting, see EvidenceFile).
    """

    id: str
    category: str
    object_kind: str
    source_id: str
    zone_id: str | None
    zone_kind: str | None
    first_seen_ts: float
    last_seen_ts: float
    best_ts: float
    box: Box
    confidence_median: float
    confidence_max: float
    observations: int
    first_seen_wall: datetime | None = None
    last_seen_wall: datetime | None = None
    position: tuple[float, float] | None = None
    frame_index: int | None = None
    track_ids: tuple[int, ...] = ()
    evidence: tuple[EvidenceFile, ...] = field(default=())
    closed: bool = False
    plate: str | None = None
    plate_confidence: float | None = None
    suspected: bool = False

    @property
    def dwell_s(self) -> float:
        return self.last_seen_ts - self.first_seen_ts

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 strings)."""
        data = asdict(self)
        for key in ("first_seen_wall", "last_seen_wall"):
            value = data[key]
            data[key] = value.isoformat() if isinstance(value, datetime) else None
        data["box"] = [round(v, 1) for v in self.box]
        data["position"] = list(self.position) if self.position else None
        data["track_ids"] = list(self.track_ids)
        data["evidence"] = [e.to_json() for e in self.evidence]
        data["dwell_s"] = round(self.dwell_s, 3)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incident:
        """The inverse of to_json (unknown keys such as dwell_s are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("first_seen_wall", "last_seen_wall"):
            if kwargs.get(key):
                kwargs[key] = datetime.fromisoformat(kwargs[key])
        kwargs["box"] = tuple(float(v) for v in kwargs["box"])
        if kwargs.get("position"):
            kwargs["position"] = tuple(kwargs["position"])
        kwargs["track_ids"] = tuple(kwargs.get("track_ids") or ())
        kwargs["evidence"] = tuple(EvidenceFile.from_json(e) for e in kwargs.get("evidence") or ())
        return cls(**kwargs)
