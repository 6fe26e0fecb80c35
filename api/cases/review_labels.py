"""Review labels: every operator decision kept with the frame it was made on (issue 13's review loop).

The frame is a sighting's "raw" evidence: the whole best frame, privacy-blurred (never the sealed
original). A decision on a case (confirm, reject, recategorise, undo; made wherever the workflow or
the review queue makes it: `record_decision` is called from api.cases.acting.transition and
api.cases.review) is kept against the case's latest sighting, the one the review card shows. Only a
user's decision is one: the worker's rejection of a case a corrected resend superseded
(api.jobs.superseding) says nothing of the detection and is kept as no label. A box
correction (`label_boxes`, POST /api/cases/{id}/boxes) names its sighting (default: the latest one
with a raw frame) and is also a custody entry (BOXES_LABELLED) that api.cases.audit checks;
`labelled_frames` is what a frame's labels add up to now (the case page's box editor shows it).

Boxes are x1, y1, x2, y2 in pixels of the raw frame (0 <= x1 < x2 <= width, same for y), with a
model class name from the site config's `kinds` (the HTTP layer passes that map in: this room does
not read the site config). Ops: "add" a box the detector missed; "correct" the detection's box (it
replaces the detection, at most one per request); "remove" the labelled box it overlaps most
(IoU >= REMOVE_MIN_IOU: the detection, or a box added or corrected before).

`reviewed_frames` replays a frame's labels, in order, into what the training-set export writes
(`gridpatrol dataset from-reviews`, detect.model.from_reviews):

- confirm, or a reject for a reason other than false_positive (a duplicate, not a violation, exempt:
  the object is what the detector said) -> the detection is a positive, labelled with the model class
  of the incident's object kind; reject as false_positive -> the detection is a hard negative (its
  box is not labelled, and is listed as rejected); undo -> no verdict again; recategorise -> kept, but
  changes no box (the object is what it is; a wrong class is corrected with a box);
- the operator's boxes are labels as given: a corrected box replaces the detection, a removed one is
  dropped;
- a frame with neither a verdict nor a correction or removal of its detection is left out (undecided:
  an unlabelled true detection would teach the model it is background).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal, Role
from api.cases import custody
from api.cases.reading import get_case
from api.errors import DamagedRecord, InputError, NotFound
from api.storage.db import utcnow
from api.storage.evidence_store import EvidenceFiles
from api.storage.models import Case, ReviewLabel, Sighting

RAW = "raw"  # the evidence role of the frame labels are kept with
WHATS = ("confirm", "reject_false", "reject_other", "recategorise", "box", "undo")
BOX_OPS = ("correct", "add", "remove")
BOXES_LABELLED = "boxes_labelled"  # the custody action of a box correction (api.cases.audit checks it)
FALSE_POSITIVE = "false_positive"  # the reject reason that makes a detection a hard negative
REMOVE_MIN_IOU = 0.5
MAX_BOXES = 64
LABELLERS = (Role.ADMIN, Role.OPERATOR)  # the roles that may label boxes (the API and the case page)

log = logging.getLogger(__name__)


class BoxInputError(InputError):
    """A box correction that cannot be kept as sent (422); names the box (boxes[i].field)."""


class DamagedLabel(DamagedRecord):
    """A stored review label whose detail is not what `_record` writes (the database was edited
    outside the service): its frame's labels cannot be replayed. Names the row; a 503 where it must
    be read (a box correction on that frame), a frame left out where it need not (the case page's
    editor, the training-set export)."""

    def __init__(self, label: ReviewLabel, why: str) -> None:
        super().__init__(
            f"review label {label.id} (case {label.case_id}, sighting {label.sighting_id}) cannot be "
            f"read: {why}; the database was edited outside the service"
        )
        self.label_id = label.id
        self.sighting_id = label.sighting_id


@dataclass(frozen=True, slots=True)
class LabelBox:
    """A box on a raw frame: x1, y1, x2, y2 in its pixels, and a model class name."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_name: str

    def as_json(self) -> dict[str, Any]:
        return {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2, "class_name": self.class_name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabelBox:
        x1, y1, x2, y2 = (float(data[k]) for k in ("x1", "y1", "x2", "y2"))
        return cls(x1, y1, x2, y2, str(data["class_name"]))


@dataclass(frozen=True, slots=True)
class BoxEdit:
    op: str  # one of BOX_OPS
    box: LabelBox


def iou(a: LabelBox, b: LabelBox) -> float:
    """Intersection over union of two boxes (pixels)."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


# --- recording --------------------------------------------------------------------------------------


def _raw_frame(sighting: Sighting) -> str | None:
    """The SHA-256 of the sighting's raw frame (the latest link in that role), None when it has none."""
    raws = [link.sha256 for link in sighting.evidence if link.role == RAW]
    return raws[-1] if raws else None


def incident_of(sighting: Sighting) -> dict[str, Any]:
    """The incident a sighting stored (its JSON object); {} for one that is no JSON object (logged: a
    damaged row), so that a page or a picture shows what it can."""
    try:
        data = json.loads(sighting.incident_json or "{}")
    except json.JSONDecodeError:
        log.warning("sighting %s: stored incident is not JSON", sighting.id)
        return {}
    return data if isinstance(data, dict) else {}


def _detection(incident: Mapping[str, Any]) -> dict[str, Any] | None:
    """The incident's detection: its box (full-frame pixels) and object kind; None when it has none."""
    box = incident.get("box")
    if not isinstance(box, list | tuple) or len(box) != 4:
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return None
    return {"box": [x1, y1, x2, y2], "kind": str(incident.get("object_kind") or "")}


def _record(
    session: Session, *, case: Case, sighting: Sighting | None, actor: str, what: str, detail: dict[str, Any]
) -> ReviewLabel:
    assert what in WHATS
    incident = incident_of(sighting) if sighting is not None else {}
    detection = _detection(incident)
    frame_index = incident.get("frame_index")
    best_ts = incident.get("best_ts")
    label = ReviewLabel(
        case_id=case.id,
        sighting_id=sighting.id if sighting is not None else None,
        camera_id=(sighting.camera_id if sighting is not None else None) or case.camera_id,
        frame_sha256=_raw_frame(sighting) if sighting is not None else None,
        frame_index=int(frame_index) if isinstance(frame_index, int) else None,
        frame_ts=float(best_ts) if isinstance(best_ts, int | float) else None,
        lat=sighting.lat if sighting is not None else case.lat,
        lon=sighting.lon if sighting is not None else case.lon,
        actor=actor,
        at=utcnow(),
        what=what,
        detail=json.dumps({"detection": detection, **detail}, sort_keys=True, separators=(",", ":")),
    )
    session.add(label)
    return label


def record_decision(
    session: Session,
    *,
    case: Case,
    actor: str,
    what: str,
    reason: str | None = None,
    category_from: str | None = None,
    category_to: str | None = None,
) -> ReviewLabel:
    """Keep a decision on a case (confirm / reject_* / recategorise / undo) with its latest
    sighting's frame. `case` has its sightings loaded (api.cases.reading.get_case)."""
    sighting = case.sightings[-1] if case.sightings else None
    detail: dict[str, Any] = {"category": category_to or case.category}
    if reason is not None:
        detail["reason"] = reason
    if category_from is not None:
        detail["category_from"] = category_from
    return _record(session, case=case, sighting=sighting, actor=actor, what=what, detail=detail)


def rejection(reason: str | None) -> str:
    """The label of a reject with this reason: only a false positive says the detection was wrong."""
    return "reject_false" if reason == FALSE_POSITIVE else "reject_other"


# --- box corrections ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameBox:
    """A box labelled on a frame now: the detection (source "detection") or an operator's box."""

    box: LabelBox
    source: str  # detection | operator


@dataclass(frozen=True, slots=True)
class FrameLabels:
    """A sighting's raw frame with the boxes labelled on it after a correction."""

    case_id: int
    sighting_id: int
    frame_sha256: str
    width: int
    height: int
    boxes: list[FrameBox]


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an encoded image from its header; None when it is not one Pillow knows."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.width), int(image.height)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None


def _read_blob(store: EvidenceFiles, sha256: str) -> bytes | None:
    content = store.open_content(sha256)
    if content is None:
        return None
    if content.path is not None:
        return content.path.read_bytes()
    assert content.chunks is not None
    return b"".join(content.chunks)


def _check_boxes(edits: Sequence[BoxEdit], *, classes: Mapping[str, str], width: int, height: int) -> None:
    if not edits:
        raise BoxInputError("boxes", "no boxes sent")
    if len(edits) > MAX_BOXES:
        raise BoxInputError("boxes", f"at most {MAX_BOXES} boxes per request, got {len(edits)}")
    corrections = 0
    for i, edit in enumerate(edits):
        where = f"boxes[{i}]"
        box = edit.box
        if edit.op not in BOX_OPS:
            raise BoxInputError(f"{where}.op", f"one of {', '.join(BOX_OPS)}")
        if box.class_name not in classes:
            raise BoxInputError(
                f"{where}.class_name",
                f"'{box.class_name}' is not a model class of the site config (known: {', '.join(classes)})",
            )
        # at least a pixel each way: a smaller box is no object, and the export drops it (from_reviews)
        if not (box.x1 >= 0 and box.x1 + 1 <= box.x2 <= width):
            raise BoxInputError(
                f"{where}.x1",
                f"x1 {box.x1:g}, x2 {box.x2:g}: need 0 <= x1, x1 + 1 <= x2 <= {width} (the frame's width)",
            )
        if not (box.y1 >= 0 and box.y1 + 1 <= box.y2 <= height):
            raise BoxInputError(
                f"{where}.y1",
                f"y1 {box.y1:g}, y2 {box.y2:g}: need 0 <= y1, y1 + 1 <= y2 <= {height} (the frame's height)",
            )
        corrections += edit.op == "correct"
    if corrections > 1:
        raise BoxInputError("boxes", "at most one box corrects the detection per request")


def _sighting_of(case: Case, sighting_id: int | None) -> Sighting:
    if sighting_id is None:
        framed = [s for s in case.sightings if _raw_frame(s) is not None]
        if not framed:
            raise BoxInputError("sighting_id", f"case {case.number or case.id} has no raw frame to label")
        return framed[-1]
    found = next((s for s in case.sightings if s.id == sighting_id), None)
    if found is None:
        raise NotFound("sighting_id", f"case {case.number or case.id} has no sighting {sighting_id}")
    if _raw_frame(found) is None:
        raise BoxInputError("sighting_id", f"sighting {sighting_id} has no raw frame to label")
    return found


def label_boxes(
    session: Session,
    *,
    principal: Principal,
    case_id: int,
    sighting_id: int | None,
    edits: Sequence[BoxEdit],
    classes: Mapping[str, str],
    store: EvidenceFiles,
) -> FrameLabels:
    """Keep boxes corrected, added or removed on a sighting's raw frame (see the module's docstring),
    checked against the frame's size (read from the stored image) and `classes` (the site config's
    model class name -> object kind); recorded as a review label and a custody entry. NotFound for a
    case the caller may not see or a sighting of another case; BoxInputError naming the box
    otherwise. Commits nothing itself."""
    case = get_case(session, principal=principal, case_id=case_id, lock=True)
    sighting = _sighting_of(case, sighting_id)
    frame = _raw_frame(sighting)
    assert frame is not None
    data = _read_blob(store, frame)
    size = image_size(data) if data is not None else None
    if size is None:
        raise NotFound(
            "sighting_id", f"the raw frame {frame} of sighting {sighting.id} cannot be read from the store"
        )
    width, height = size
    _check_boxes(edits, classes=classes, width=width, height=height)
    state = _frame_state(sighting, _labels_of(session, sighting.id), kind_to_class=_inverse(classes))
    for i, edit in enumerate(edits):
        if edit.op == "remove" and state.match(edit.box) is None:
            raise BoxInputError(
                f"boxes[{i}]", f"removes a box that overlaps no labelled box by IoU >= {REMOVE_MIN_IOU}"
            )
        state.apply(edit)
    sent = [{"op": e.op, **e.box.as_json()} for e in edits]
    label = _record(
        session,
        case=case,
        sighting=sighting,
        actor=principal.label,
        what="box",
        detail={"boxes": sent, "size": [width, height]},
    )
    session.flush()
    custody.append(
        session,
        case_id=case.id,
        actor=principal.label,
        action=BOXES_LABELLED,
        detail={"sighting_id": sighting.id, "frame": frame, "label_id": label.id, "boxes": sent},
    )
    return FrameLabels(
        case_id=case.id,
        sighting_id=sighting.id,
        frame_sha256=frame,
        width=width,
        height=height,
        boxes=state.frame_boxes(),
    )


# --- replaying a frame's labels ----------------------------------------------------------------------


def _inverse(classes: Mapping[str, str]) -> dict[str, str]:
    """object kind -> model class name (the first class of a kind, in the map's order)."""
    out: dict[str, str] = {}
    for name, kind in classes.items():
        out.setdefault(kind, name)
    return out


@dataclass(slots=True)
class _FrameState:
    detection: LabelBox | None  # the detector's box, with the model class of its kind (None: unknown)
    detection_kind: str = ""
    verdict: str | None = None  # positive | negative | None
    corrected: LabelBox | None = None
    detection_removed: bool = False
    added: list[LabelBox] = field(default_factory=list)

    def _live(self) -> list[tuple[str, LabelBox]]:
        live: list[tuple[str, LabelBox]] = []
        if self.corrected is not None:
            live.append(("corrected", self.corrected))
        elif self.detection is not None and not self.detection_removed:
            live.append(("detection", self.detection))
        live += [("added", b) for b in self.added]
        return live

    def match(self, box: LabelBox) -> tuple[str, LabelBox] | None:
        scored = [(iou(box, b), which, b) for which, b in self._live()]
        scored = [s for s in scored if s[0] >= REMOVE_MIN_IOU]
        if not scored:
            return None
        _, which, best = max(scored, key=lambda s: s[0])
        return which, best

    def apply(self, edit: BoxEdit) -> None:
        if edit.op == "add":
            self.added.append(edit.box)
        elif edit.op == "correct":
            self.corrected = edit.box
        elif edit.op == "remove":
            found = self.match(edit.box)
            if found is None:
                return
            which, box = found
            if which == "corrected":
                self.corrected = None
                self.detection_removed = True
            elif which == "detection":
                self.detection_removed = True
            else:
                self.added.remove(box)

    @property
    def settled(self) -> bool:
        """The detection's fate is known: a verdict, or the operator corrected or removed it."""
        return self.verdict is not None or self.corrected is not None or self.detection_removed

    def labels(self) -> list[LabelBox]:
        out: list[LabelBox] = []
        if self.corrected is not None:
            out.append(self.corrected)
        elif self.verdict == "positive" and self.detection is not None and not self.detection_removed:
            out.append(self.detection)
        return out + self.added

    def rejected(self) -> list[LabelBox]:
        """The detector's box when the operators said it is wrong: rejected as false, or removed (not
        corrected): a hard negative, and no pseudo-label may put it back (detect.model.training)."""
        if self.detection is None or self.corrected is not None:
            return []
        return [self.detection] if self.verdict == "negative" or self.detection_removed else []

    def frame_boxes(self) -> list[FrameBox]:
        return [FrameBox(b, "detection" if which == "detection" else "operator") for which, b in self._live()]


def _labels_of(session: Session, sighting_id: int) -> list[ReviewLabel]:
    return list(
        session.scalars(
            select(ReviewLabel).where(ReviewLabel.sighting_id == sighting_id).order_by(ReviewLabel.id)
        )
    )


def _frame_state(
    sighting: Sighting, labels: Sequence[ReviewLabel], *, kind_to_class: Mapping[str, str]
) -> _FrameState:
    """A frame's labels replayed; before its first label, its detection as the sighting has it (a
    label keeps the detection it was made on, so the two agree)."""
    if labels:
        return _replay_frame(labels, kind_to_class=kind_to_class)
    state = _FrameState(detection=None)
    detection = _detection(incident_of(sighting))
    if detection is not None:
        state.detection_kind = detection["kind"]
        name = kind_to_class.get(state.detection_kind)
        if name is not None:
            x1, y1, x2, y2 = detection["box"]
            state.detection = LabelBox(x1, y1, x2, y2, name)
    return state


@dataclass(frozen=True, slots=True)
class _Detail:
    """A label's detail as `_record` wrote it, read: the detection it was made on (box, object kind),
    the boxes a "box" label sent, the category a decision left."""

    detection: tuple[tuple[float, float, float, float], str] | None
    edits: list[BoxEdit]
    category: str | None


def _read_detail(label: ReviewLabel) -> _Detail:
    """DamagedLabel naming the row when its detail is not JSON or lacks what a label holds."""
    try:
        detail = json.loads(label.detail)
        if not isinstance(detail, dict):
            raise DamagedLabel(label, "its detail is not a JSON object")
        found = detail.get("detection")
        detection = None
        if found:
            x1, y1, x2, y2 = (float(v) for v in found["box"])
            detection = ((x1, y1, x2, y2), str(found.get("kind", "")))
        edits = []
        if label.what == "box":
            for sent in detail["boxes"]:
                if sent["op"] not in BOX_OPS:
                    raise DamagedLabel(label, f"its detail has a box op {sent['op']!r:.40}")
                edits.append(BoxEdit(sent["op"], LabelBox.from_json(sent)))
        category = detail.get("category")
    except json.JSONDecodeError:
        raise DamagedLabel(label, "its detail is not JSON") from None
    except KeyError as exc:
        raise DamagedLabel(label, f"its detail lacks the key {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DamagedLabel(label, f"its detail holds a value of the wrong shape ({exc})") from None
    return _Detail(detection, edits, category if isinstance(category, str) else None)


def _replay_frame(labels: Iterable[ReviewLabel], *, kind_to_class: Mapping[str, str]) -> _FrameState:
    """DamagedLabel when one of them cannot be read."""
    state = _FrameState(detection=None)
    first = True
    for label in labels:
        detail = _read_detail(label)
        if first:
            if detail.detection is not None:
                box, state.detection_kind = detail.detection
                name = kind_to_class.get(state.detection_kind)
                if name is not None:
                    state.detection = LabelBox(*box, name)
            first = False
        what = label.what
        if what in ("confirm", "reject_other"):
            state.verdict = "positive"
        elif what == "reject_false":
            state.verdict = "negative"
        elif what == "undo":
            state.verdict = None
        elif what == "box":
            for edit in detail.edits:
                state.apply(edit)
    return state


@dataclass(frozen=True, slots=True)
class LabelledFrame:
    """A sighting's raw frame and the boxes labelled on it now; `damaged_label`: the id of a label of
    it that cannot be read (DamagedLabel), when one cannot (then no boxes: they are not known)."""

    sighting_id: int
    frame_sha256: str
    boxes: list[FrameBox]
    damaged_label: int | None = None


def labelled_frames(
    session: Session, *, sightings: Sequence[Sighting], classes: Mapping[str, str]
) -> dict[int, LabelledFrame]:
    """sighting id -> its raw frame with the boxes labelled on it now (as `label_boxes` answers after
    a correction), for the sightings that have a raw frame: their labels replayed in order; before any
    label, the detection alone (with the model class of its object kind; none when it has no class).
    A frame with a damaged label is kept, with `damaged_label` set (logged as a warning naming it).
    `classes`: the site config's model class name -> object kind."""
    kind_to_class = _inverse(classes)
    frames = {s.id: frame for s in sightings if (frame := _raw_frame(s)) is not None}
    labels: dict[int, list[ReviewLabel]] = {sighting_id: [] for sighting_id in frames}
    if frames:
        for label in session.scalars(
            select(ReviewLabel).where(ReviewLabel.sighting_id.in_(list(frames))).order_by(ReviewLabel.id)
        ):
            assert label.sighting_id is not None
            labels[label.sighting_id].append(label)
    out: dict[int, LabelledFrame] = {}
    for s in sightings:
        if s.id not in frames:
            continue
        try:
            state = _frame_state(s, labels[s.id], kind_to_class=kind_to_class)
        except DamagedLabel as exc:
            log.warning("the boxes of sighting %s are not shown: %s", s.id, exc.reason)
            out[s.id] = LabelledFrame(s.id, frames[s.id], [], damaged_label=exc.label_id)
            continue
        out[s.id] = LabelledFrame(s.id, frames[s.id], state.frame_boxes())
    return out


class _EveryKind(Mapping[str, str]):
    """Every object kind as its own class name: where a frame's boxes are only drawn, a detection
    whose kind has no model class is still a box on it (its class name says nothing there)."""

    def __getitem__(self, kind: str) -> str:
        return kind

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class CorrectedFrame:
    """A sighting's raw frame that operators labelled boxes on: the boxes on it now (none when they
    removed the detection and added nothing), in its pixels; `version`: the id of its latest "box"
    label (a picture drawn from it changes when that does)."""

    sighting_id: int
    frame_sha256: str
    boxes: list[LabelBox]
    version: int


def corrected_frames(session: Session, *, sightings: Sequence[Sighting]) -> dict[int, CorrectedFrame]:
    """sighting id -> its raw frame with the boxes on it now, for the sightings whose frame has a box
    correction (a "box" label): what the pages draw in place of the detection's box, which stays as
    it was in the sealed incident and its evidence files. A frame with a label that cannot be read is
    left out (its pictures show the detection, as before any correction; logged as a warning)."""
    frames = {s.id: frame for s in sightings if (frame := _raw_frame(s)) is not None}
    labels: dict[int, list[ReviewLabel]] = {}
    if frames:
        for label in session.scalars(
            select(ReviewLabel).where(ReviewLabel.sighting_id.in_(list(frames))).order_by(ReviewLabel.id)
        ):
            assert label.sighting_id is not None
            labels.setdefault(label.sighting_id, []).append(label)
    out: dict[int, CorrectedFrame] = {}
    for sighting_id, found in labels.items():
        boxed = [label.id for label in found if label.what == "box"]
        if not boxed:
            continue
        try:
            state = _replay_frame(found, kind_to_class=_EveryKind())
        except DamagedLabel as exc:
            log.warning("sighting %s is drawn with its detection's box: %s", sighting_id, exc.reason)
            continue
        boxes = [frame_box.box for frame_box in state.frame_boxes()]
        out[sighting_id] = CorrectedFrame(sighting_id, frames[sighting_id], boxes, boxed[-1])
    return out


# --- what the export reads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewedFrame:
    """A reviewed frame as the training-set export takes it: boxes in pixels of the raw frame."""

    case_id: int
    sighting_id: int
    camera_id: str | None
    frame_sha256: str
    lat: float | None
    lon: float | None
    frame_index: int | None
    decided_at: datetime  # the last decision on it (naive UTC)
    decisions: tuple[str, ...]  # the `what` of each label, in order
    category: str
    labels: list[LabelBox]
    rejected: list[LabelBox]  # hard negatives: detections rejected as false, not labelled
    unmapped_kind: str | None  # a detection kept out: its object kind has no model class in the map


@dataclass(slots=True)
class ReviewExport:
    frames: list[ReviewedFrame] = field(default_factory=list)
    undecided: int = 0  # frames with labels but no verdict and no settled detection: left out
    without_frame: int = 0  # decisions on sightings with no raw frame: nothing to export
    damaged: list[str] = field(default_factory=list)  # frames left out, a label unreadable: why


def reviewed_frames(
    session: Session, *, since: datetime, until: datetime, classes: Mapping[str, str]
) -> ReviewExport:
    """The frames with a decision at or after `since` and before `until` (naive UTC), each replayed
    from all its labels before `until`. `classes`: the site config's model class name -> object kind."""
    kind_to_class = _inverse(classes)
    ids = list(
        session.scalars(
            select(ReviewLabel.sighting_id)
            .where(ReviewLabel.at >= since, ReviewLabel.at < until, ReviewLabel.sighting_id.is_not(None))
            .distinct()
        )
    )
    out = ReviewExport()
    for start in range(0, len(ids), 500):
        chunk = sorted(i for i in ids[start : start + 500] if i is not None)
        by_sighting: dict[int, list[ReviewLabel]] = {}
        for label in session.scalars(
            select(ReviewLabel)
            .where(ReviewLabel.sighting_id.in_(chunk), ReviewLabel.at < until)
            .order_by(ReviewLabel.id)
        ):
            assert label.sighting_id is not None
            by_sighting.setdefault(label.sighting_id, []).append(label)
        for sighting_id in chunk:
            labels = by_sighting.get(sighting_id, [])
            frame = next((lb.frame_sha256 for lb in reversed(labels) if lb.frame_sha256), None)
            if not labels:
                continue
            if frame is None:
                out.without_frame += 1
                continue
            try:
                state = _replay_frame(labels, kind_to_class=kind_to_class)
            except DamagedLabel as exc:
                log.warning("frame %s of sighting %s is left out: %s", frame, sighting_id, exc.reason)
                out.damaged.append(f"frame {frame} of sighting {sighting_id}: {exc.reason}")
                continue
            if not state.settled:
                out.undecided += 1
                continue
            last = labels[-1]
            category = next((_read_detail(lb).category for lb in reversed(labels) if lb.what != "box"), None)
            unmapped = (
                state.detection_kind
                if state.detection is None and state.detection_kind and state.verdict is not None
                else None
            )
            out.frames.append(
                ReviewedFrame(
                    case_id=last.case_id,
                    sighting_id=sighting_id,
                    camera_id=last.camera_id,
                    frame_sha256=frame,
                    lat=last.lat,
                    lon=last.lon,
                    frame_index=last.frame_index,
                    decided_at=last.at,
                    decisions=tuple(lb.what for lb in labels),
                    category=category or "",
                    labels=state.labels(),
                    rejected=state.rejected(),
                    unmapped_kind=unmapped,
                )
            )
    return out


def read_frame(store: EvidenceFiles, sha256: str) -> bytes | None:
    """A raw frame's bytes from the evidence store; None when it is missing."""
    return _read_blob(store, sha256)
