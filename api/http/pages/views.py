"""What the pages show of a case, read from the stored case, its sightings and their evidence.

Times: the pipeline's wall times carry the camera's UTC offset (`2026-11-20T09:00:00+08:00`). The
case and task pages and the review card show a case's times at the site's offset, as the case list
does, with the camera's local time after a sighting's time where the camera's offset is another
(site_time); the upload and chalk pages show them at the camera's offset when one is known, else in UTC,
labelled (show_time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from api.cases.box_pictures import StripPicture, box_list, strip_boxes, strip_etag, strip_picture
from api.cases.review_labels import CorrectedFrame, incident_of
from api.http.i18n import Translator
from api.storage.models import Case

STRIP_ROLES = (("dwell_first", "first"), ("dwell_middle", "middle"), ("dwell_last", "last"))


def evidence_url(sha256: str) -> str:
    return f"/api/evidence/{sha256}"


def corrected_url(case_id: int, frame: CorrectedFrame, view: str) -> str:
    """The picture of a corrected frame drawn with its boxes now (GET /api/cases/{id}/sightings/
    {sighting_id}/corrected): view "frame" or "crop"; `v` changes with each correction, so a browser
    never shows one it kept from before."""
    return f"/api/cases/{case_id}/sightings/{frame.sighting_id}/corrected?view={view}&v={frame.version}"


def strip_url(case_id: int, picture: StripPicture) -> str:
    """A dwell-strip picture opened by itself (its tab's own, full size), drawn with the box its small
    picture shows (GET /api/cases/{id}/sightings/{sighting_id}/strip/{role}); `v` changes with those
    boxes, so a browser never shows one it kept from before."""
    version = strip_etag(picture).strip('"')[:16]
    return f"/api/cases/{case_id}/sightings/{picture.sighting_id}/strip/{picture.role}?v={version}"


def frame_boxes(incident: dict[str, Any], corrected: CorrectedFrame | None) -> list[list[float]]:
    """The boxes a page draws over a sighting's raw frame: the ones operators left on it when they
    corrected it (none when they removed the detection), else the detection's."""
    if corrected is not None:
        return [[b.x1, b.y1, b.x2, b.y2] for b in corrected.boxes]
    return box_list(incident.get("box"))


def camera_offset(incident: dict[str, Any]) -> timezone | None:
    for key in ("last_seen_wall", "first_seen_wall"):
        text = incident.get(key)
        if isinstance(text, str):
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                continue
            if when.utcoffset() is not None:
                return timezone(when.utcoffset() or timedelta(0))
    return None


def show_time(naive_utc: datetime | None, offset: timezone | None) -> str:
    """A stored (naive UTC) time as the camera's local time, or UTC when its offset is unknown."""
    if naive_utc is None:
        return ""
    when = naive_utc.replace(tzinfo=UTC)
    if offset is None:
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    local = when.astimezone(offset)
    return local.strftime("%Y-%m-%d %H:%M:%S") + f" ({local.strftime('%z')[:3]}:{local.strftime('%z')[3:]})"


def site_time(naive_utc: datetime | None, site: timezone, camera: timezone | None, t: Translator) -> str:
    """A stored (naive UTC) time at the site's offset, as the case list shows it, with the camera's local
    time after it where the camera's offset is known and another: "2026-11-20 14:05:00 (camera
    13:05:00)", the camera's date too when its day is another."""
    if naive_utc is None:
        return ""
    when = naive_utc.replace(tzinfo=UTC)
    here = when.astimezone(site)
    shown = here.strftime("%Y-%m-%d %H:%M:%S")
    if camera is None or camera.utcoffset(None) == site.utcoffset(None):
        return shown
    there = when.astimezone(camera)
    camera_shown = there.strftime("%H:%M:%S" if there.date() == here.date() else "%Y-%m-%d %H:%M:%S")
    return t("case.time_with_camera", time=shown, camera=camera_shown)


def show_duration(seconds: float, t: Translator) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return t("case.duration.hours", hours=seconds // 3600, minutes=f"{seconds % 3600 // 60:02d}")
    return t("case.duration.value", minutes=seconds // 60, seconds=seconds % 60)


@dataclass
class CardView:
    """The review card of a case: its latest sighting's frame, crop, dwell strip and facts. Each
    strip picture carries its boxes and whose they are (`boxes_by`, see strip_boxes)."""

    case: Case
    frame: dict[str, Any] | None = None
    crop: str | None = None
    strip: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def card_view(
    case: Case, t: Translator, corrected: Mapping[int, CorrectedFrame], *, site: timezone
) -> CardView:
    """`corrected`: the case's sightings whose frame operators corrected boxes on
    (review_labels.corrected_frames); the latest one's frame and crop then show those boxes. `site`:
    the site's offset, at which the times are shown, the camera's local time after them where its
    offset is another (site_time), on the review card as on the case and task pages."""
    view = CardView(case=case)
    if not case.sightings:
        return view
    sighting = case.sightings[-1]
    incident = incident_of(sighting)
    offset = camera_offset(incident)

    def shown(naive_utc: datetime) -> str:
        return site_time(naive_utc, site, offset, t)

    links = {link.role: link.sha256 for link in sighting.evidence}
    entries = {e.get("sha256"): e for e in incident.get("evidence", []) if isinstance(e, dict)}
    fixed = corrected.get(sighting.id)
    frame_sha = links.get("raw") or links.get("annotated")
    if frame_sha:
        # the raw frame with the boxes drawn over it; the annotated one already has its box burnt in
        boxes = frame_boxes(incident, fixed) if links.get("raw") else []
        # opened by itself (the task page's tap to zoom), a picture with the boxes in it: the operators'
        # drawn in, else the annotated frame's detection
        if fixed is not None:
            zoom = corrected_url(case.id, fixed, "frame")
        else:
            zoom = evidence_url(links.get("annotated") or frame_sha)
        view.frame = {"url": evidence_url(frame_sha), "boxes": boxes, "zoom": zoom}
    if fixed is not None:  # the pipeline's crop is cut around the detection's box: cut one around theirs
        view.crop = corrected_url(case.id, fixed, "crop") if fixed.boxes else None
    elif "crop" in links:
        view.crop = evidence_url(links["crop"])
    for role, label in STRIP_ROLES:
        sha = links.get(role)
        if not sha:
            continue
        entry = entries.get(sha, {})
        wall = entry.get("wall_time")
        when = ""
        if isinstance(wall, str):
            try:
                when = shown(datetime.fromisoformat(wall).astimezone(UTC).replace(tzinfo=None))
            except ValueError:
                when = wall
        if not when and isinstance(entry.get("ts"), int | float):
            when = f"t = {float(entry['ts']):.1f} s"
        boxes, boxes_by = strip_boxes(incident, entry, fixed)
        picture = strip_picture(sighting, role, fixed, incident)
        view.strip.append(
            {
                "url": evidence_url(sha),
                # opened by itself: the picture with its boxes drawn in
                "zoom": strip_url(case.id, picture) if picture is not None else evidence_url(sha),
                "label": label,
                "when": when,
                "boxes": boxes,
                "boxes_by": boxes_by,
                "window": entry.get("window") or [],
            }
        )
    median = incident.get("confidence_median")
    peak = incident.get("confidence_max")
    first = case.first_seen
    last = case.last_seen
    kind = str(incident.get("object_kind") or "")
    view.facts = {
        # a kind of the site's own model, without a text of its own, is shown by its name
        "object_kind": t("object." + kind) if kind else "",
        "confidence": (
            t("case.confidence_value", median=f"{float(median):.2f}", peak=f"{float(peak):.2f}")
            if isinstance(median, int | float) and isinstance(peak, int | float) and peak
            else ""
        ),
        "place": (
            f"{case.lat:.6f}, {case.lon:.6f}"
            if case.lat is not None and case.lon is not None
            else t("case.no_position")
        ),
        "first_seen": shown(first),
        "last_seen": shown(last),
        "duration": show_duration((last - first).total_seconds(), t),
    }
    return view
