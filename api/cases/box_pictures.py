"""Pictures of a sighting drawn with the boxes operators corrected (GET /api/cases/{id}/sightings/
{sighting_id}/corrected): what the pages show in place of the evidence files that carry the detector's
box (the annotated frame has it burnt in, the crop is cut around it) once that box was corrected.

They are drawn from the sighting's raw frame (privacy-blurred, never the sealed original) when asked
for and never stored: the evidence files, their hashes and the custody chain stay as they were
(`gridpatrol evidence verify` finds no new file). Each has an entity tag (`picture_etag`) computed
from what it is drawn from (the raw frame's SHA-256, the boxes on it now, the view, how it is drawn),
so a client that holds the picture is told so without it being drawn again, and a changed correction
gives a new tag. Views: "frame", the whole frame with every box on it now outlined; "crop", the boxes'
union grown by CROP_MARGIN_RATIO of its size each side (as the pipeline cuts a crop,
detect.evidence.crop), clipped to the frame, with the boxes outlined.

A dwell-strip picture opened by itself (GET /api/cases/{id}/sightings/{sighting_id}/strip/{role}) is
drawn the same way, from its own evidence file, with the box the page draws over its small picture
(strip_boxes: the tracker's, or the operators' on the best frame's picture), so that the picture shown
full size still says which object the strip follows; its entity tag is computed from the file's
SHA-256, those boxes, the strip's window and how it is drawn (strip_etag).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import review_labels
from api.cases.reading import get_case
from api.errors import NotFound
from api.storage.evidence_store import EvidenceFiles
from api.storage.models import Sighting

log = logging.getLogger(__name__)

VIEWS = ("frame", "crop")
CROP_MARGIN_RATIO = 0.15  # the pipeline's default crop margin (detect.evidence.write_evidence)
BOX_RGB = (255, 0, 0)  # the annotated frame's red (detect.evidence.BOX_COLOUR)
JPEG_QUALITY = 90
DRAWING = 1  # how pictures are drawn: bump it when draw_picture changes, so that no old one is kept
STRIP_ROLES = ("dwell_first", "dwell_middle", "dwell_last")
SAME_FRAME_S = 0.001  # a strip picture's time (kept to the millisecond) within this of best_ts: that frame
DETECTOR_RGB = (255, 176, 0)  # the pages' amber, dashed, for the detector's boxes (app.css .boxes-detector)
DASH_PX = (6, 4)  # dash and gap of a detector's box, in pixels of the picture drawn


def crop_window(
    boxes: list[review_labels.LabelBox], width: int, height: int
) -> tuple[int, int, int, int] | None:
    """The crop of `boxes` (x1, y1, x2, y2 in pixels of a width x height frame): their union grown by
    CROP_MARGIN_RATIO each side and clipped to the frame; None when there is no box."""
    if not boxes:
        return None
    x1, y1 = min(b.x1 for b in boxes), min(b.y1 for b in boxes)
    x2, y2 = max(b.x2 for b in boxes), max(b.y2 for b in boxes)
    mx, my = (x2 - x1) * CROP_MARGIN_RATIO, (y2 - y1) * CROP_MARGIN_RATIO
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, round(x2 + mx)), min(height, round(y2 + my))
    return (left, top, right, bottom) if right > left and bottom > top else None


def picture_frame(
    session: Session, *, principal: Principal, case_id: int, sighting_id: int, view: str
) -> review_labels.CorrectedFrame:
    """The corrected frame a picture of the sighting (view "frame" or "crop") is drawn from. NotFound
    naming what is missing: a case the caller may not see, a sighting of another case, a frame with no
    box correction (its evidence files are the pictures), a crop of a frame whose boxes were all removed."""
    assert view in VIEWS
    case = get_case(session, principal=principal, case_id=case_id)
    sighting = next((s for s in case.sightings if s.id == sighting_id), None)
    if sighting is None:
        raise NotFound("sighting_id", f"case {case.number or case.id} has no sighting {sighting_id}")
    frame = review_labels.corrected_frames(session, sightings=[sighting]).get(sighting.id)
    if frame is None:
        raise NotFound("sighting_id", f"sighting {sighting_id} has no corrected boxes")
    if view == "crop" and not frame.boxes:
        raise NotFound("sighting_id", f"sighting {sighting_id} has no box left to crop")
    return frame


def _tag_of(what: dict[str, Any]) -> str:
    """A quoted strong entity tag: a digest of what a picture is drawn from (JSON, keys sorted)."""
    return '"' + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:40] + '"'


def _opened(store: EvidenceFiles, sha256: str, field: str, what: str) -> Any:
    """The stored picture `sha256` as an RGB PIL image; NotFound naming `field` and `what` (the
    picture, in words) when the store has lost it or it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    data = review_labels.read_frame(store, sha256)
    try:
        return Image.open(io.BytesIO(data or b"")).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        raise NotFound(field, f"{what} cannot be read") from None


def picture_etag(frame: review_labels.CorrectedFrame, view: str) -> str:
    """The entity tag (quoted, strong) of the picture `draw_picture` draws of `frame` in `view`: a
    digest of the raw frame's SHA-256, the boxes on it now (classes included), the view and how it is
    drawn. The same boxes on the same frame give the same tag, after a restart too; any other gives a
    new one."""
    what = {
        "frame": frame.frame_sha256,
        "boxes": [box.as_json() for box in frame.boxes],
        "view": view,
        "drawing": [DRAWING, BOX_RGB, JPEG_QUALITY, CROP_MARGIN_RATIO],
    }
    return _tag_of(what)


def draw_picture(frame: review_labels.CorrectedFrame, *, view: str, store: EvidenceFiles) -> bytes:
    """A JPEG of the frame's raw picture (view "frame") or of its boxes' crop (view "crop") with the
    boxes labelled on it now outlined. NotFound when the store has lost the raw frame (or it cannot be
    read), or for a crop of a frame with no box."""
    from PIL import ImageDraw

    assert view in VIEWS
    image = _opened(
        store,
        frame.frame_sha256,
        "sighting_id",
        f"the raw frame {frame.frame_sha256} of sighting {frame.sighting_id}",
    )
    thickness = max(2, round(min(image.size) / 300))
    draw = ImageDraw.Draw(image)
    for box in frame.boxes:
        draw.rectangle((box.x1, box.y1, box.x2, box.y2), outline=BOX_RGB, width=thickness)
    if view == "crop":
        window = crop_window(frame.boxes, *image.size)
        if window is None:
            raise NotFound("sighting_id", f"sighting {frame.sighting_id} has no box left to crop")
        image = image.crop(window)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


# --- the dwell strip's pictures, opened by themselves ---------------------------------------------


def box_list(value: Any) -> list[list[float]]:
    """A stored box (x1, y1, x2, y2 in pixels) as the one box a page draws; none when it is not one."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return []
    try:
        return [[float(v) for v in value]]
    except (TypeError, ValueError):
        return []


def strip_boxes(
    incident: dict[str, Any], entry: dict[str, Any], corrected: review_labels.CorrectedFrame | None
) -> tuple[list[list[float]], str]:
    """The boxes drawn over a dwell-strip picture (full-frame pixels; `entry`, its evidence entry) and
    whose they are, so that the strip never contradicts an operator's correction: "tracked", the
    tracker's box at that time (nobody corrected the sighting's frame); "corrected", the boxes
    operators left on the best frame, on the picture of that very frame (its time is the incident's
    best_ts); "detector", the tracker's box on a picture of another time once the best frame was
    corrected (a correction says where the object is in that frame only: the pages mark these as the
    detector's, not the operator's)."""
    boxes = box_list(entry.get("box"))
    if corrected is None:
        return boxes, "tracked"
    ts, best = entry.get("ts"), incident.get("best_ts")
    if isinstance(ts, int | float) and isinstance(best, int | float) and abs(ts - best) <= SAME_FRAME_S:
        return [[b.x1, b.y1, b.x2, b.y2] for b in corrected.boxes], "corrected"
    return boxes, "detector"


@dataclass(frozen=True, slots=True)
class StripPicture:
    """A dwell-strip picture of a sighting (`role`, one of STRIP_ROLES) and what is drawn on it:
    `boxes` in full-frame pixels, whose they are (`boxes_by`, see strip_boxes) and `window`, the part
    of the frame the picture shows (x1, y1, x2, y2 in the same pixels; none: the whole frame)."""

    sighting_id: int
    role: str
    sha256: str
    boxes: list[list[float]]
    boxes_by: str
    window: list[float] | None


def strip_picture(
    sighting: Sighting,
    role: str,
    corrected: review_labels.CorrectedFrame | None,
    incident: dict[str, Any] | None = None,
) -> StripPicture | None:
    """The sighting's strip picture in `role` with the boxes the pages draw over it; None when the
    sighting has no picture in that role. `corrected`: its frame's box correction, if any
    (review_labels.corrected_frames); `incident`, its stored incident where the caller has read it."""
    assert role in STRIP_ROLES
    shas = [link.sha256 for link in sighting.evidence if link.role == role]
    if not shas:
        return None
    incident = review_labels.incident_of(sighting) if incident is None else incident
    entry = next(
        (e for e in incident.get("evidence", []) if isinstance(e, dict) and e.get("sha256") == shas[-1]), {}
    )
    boxes, boxes_by = strip_boxes(incident, entry, corrected)
    window = box_list(entry.get("window"))
    return StripPicture(sighting.id, role, shas[-1], boxes, boxes_by, window[0] if window else None)


def strip_frame(
    session: Session, *, principal: Principal, case_id: int, sighting_id: int, role: str
) -> StripPicture:
    """The strip picture GET .../strip/{role} draws. NotFound naming what is missing: a case the caller
    may not see, a sighting of another case, a sighting with no strip picture in that role."""
    case = get_case(session, principal=principal, case_id=case_id)
    sighting = next((s for s in case.sightings if s.id == sighting_id), None)
    if sighting is None:
        raise NotFound("sighting_id", f"case {case.number or case.id} has no sighting {sighting_id}")
    corrected = review_labels.corrected_frames(session, sightings=[sighting]).get(sighting.id)
    picture = strip_picture(sighting, role, corrected)
    if picture is None:
        raise NotFound("role", f"sighting {sighting_id} has no dwell-strip picture {role}")
    return picture


def strip_etag(picture: StripPicture) -> str:
    """The entity tag (quoted, strong) of the strip picture `draw_strip` draws: a digest of its file's
    SHA-256, the boxes on it and whose they are, its window and how it is drawn. The same boxes on the
    same file give the same tag, after a restart too; a correction that changes them a new one."""
    what = {
        "picture": picture.sha256,
        "boxes": picture.boxes,
        "by": picture.boxes_by,
        "window": picture.window,
        "drawing": [DRAWING, BOX_RGB, DETECTOR_RGB, DASH_PX, JPEG_QUALITY],
    }
    return _tag_of(what)


def _dashed(
    draw: Any, corners: tuple[float, float, float, float], colour: tuple[int, ...], width: int
) -> None:
    x1, y1, x2, y2 = corners
    dash, gap = (v * width / 2 for v in DASH_PX)
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = max(abs(bx - ax), abs(by - ay))
        at = 0.0
        while at < length:
            end = min(length, at + dash)
            draw.line(
                (
                    ax + (bx - ax) * at / length,
                    ay + (by - ay) * at / length,
                    ax + (bx - ax) * end / length,
                    ay + (by - ay) * end / length,
                ),
                fill=colour,
                width=width,
            )
            at = end + gap


def draw_strip(picture: StripPicture, *, store: EvidenceFiles) -> bytes:
    """A JPEG of the strip picture's file with its boxes outlined as the pages draw them over the small
    picture: red, or amber and dashed for the detector's (boxes_by "detector"); boxes given in
    full-frame pixels are moved and scaled from the window to the picture. NotFound when the store has
    lost the file (or it cannot be read)."""
    from PIL import ImageDraw

    image = _opened(
        store,
        picture.sha256,
        "role",
        f"the {picture.role} picture {picture.sha256} of sighting {picture.sighting_id}",
    )
    width, height = image.size
    wx1, wy1, wx2, wy2 = picture.window or [0.0, 0.0, float(width), float(height)]
    sx, sy = width / max(wx2 - wx1, 1e-6), height / max(wy2 - wy1, 1e-6)
    thickness = max(3, round(min(image.size) / 120))  # a small picture: a line that survives JPEG
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2 in picture.boxes:
        corners = (
            max(0.0, (x1 - wx1) * sx),
            max(0.0, (y1 - wy1) * sy),
            min(width - 1.0, (x2 - wx1) * sx),
            min(height - 1.0, (y2 - wy1) * sy),
        )
        if corners[2] <= corners[0] or corners[3] <= corners[1]:
            continue  # outside the window: nothing of it is in the picture
        if picture.boxes_by == "detector":
            _dashed(draw, corners, DETECTOR_RGB, thickness)
        else:
            draw.rectangle(corners, outline=BOX_RGB, width=thickness)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
