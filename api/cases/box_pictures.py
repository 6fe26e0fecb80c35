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
"""

from __future__ import annotations

import hashlib
import io
import json

from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import review_labels
from api.cases.reading import get_case
from api.errors import NotFound
from api.storage.evidence_store import EvidenceFiles

VIEWS = ("frame", "crop")
CROP_MARGIN_RATIO = 0.15  # the pipeline's default crop margin (detect.evidence.write_evidence)
BOX_RGB = (255, 0, 0)  # the annotated frame's red (detect.evidence.BOX_COLOUR)
JPEG_QUALITY = 90
DRAWING = 1  # how pictures are drawn: bump it when draw_picture changes, so that no old one is kept


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
    return '"' + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:40] + '"'


def draw_picture(frame: review_labels.CorrectedFrame, *, view: str, store: EvidenceFiles) -> bytes:
    """A JPEG of the frame's raw picture (view "frame") or of its boxes' crop (view "crop") with the
    boxes labelled on it now outlined. NotFound when the store has lost the raw frame (or it cannot be
    read), or for a crop of a frame with no box."""
    from PIL import Image, ImageDraw, UnidentifiedImageError

    assert view in VIEWS
    data = review_labels.read_frame(store, frame.frame_sha256)
    try:
        image = Image.open(io.BytesIO(data or b"")).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        raise NotFound(
            "sighting_id",
            f"the raw frame {frame.frame_sha256} of sighting {frame.sighting_id} cannot be read",
        ) from None
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
