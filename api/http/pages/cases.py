"""The case pages: the list (every role, only what it may see), one case in full, and the moves along
the workflow that the person's role allows from the case's status.

GET /cases is a plain GET form over the API's filters (api.cases.reading.CaseFilter), so it works
without script; GET /cases/{id} shows every sighting's evidence, the history, the custody check and
the case's place on the grid; POST /cases/{id}/move makes a move exactly as the API's
POST /api/cases/{id}/transitions does (api.cases.acting: the same role check, after-photo storage,
history, custody and webhooks), then redirects back with a message. A user's mistake or a race
(someone moved the case meanwhile) is shown on the page with the domain's status, never as a 500.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, load_only
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import ROLES, Principal, Role
from api.cases import custody, review_labels, workflow
from api.cases.acting import ForbiddenMove, dispatch_teams, dispatched_team, store_after_photo, transition
from api.cases.box_pictures import strip_picture
from api.cases.history_notes import note_parts
from api.cases.reading import (
    SEALED_ROLES,
    SORTS,
    CaseFilter,
    case_id_for_number,
    case_page,
    get_case,
    left_team,
    number_query,
)
from api.cases.review import known_categories
from api.cases.wall_time import held_in_range, in_range
from api.errors import InputError, NotFound, ServiceFault
from api.http.deps import model_classes
from api.http.i18n import Translator
from api.http.pages.map_apps import MapLinks, map_links
from api.http.pages.render import render, script_json, see_other, translator
from api.http.pages.session import ServicesDep, person_with
from api.http.pages.views import (
    camera_offset,
    card_view,
    corrected_url,
    evidence_url,
    frame_boxes,
    incident_of,
    site_time,
    strip_boxes,
    strip_url,
)
from api.services import Services
from api.storage.models import (
    MAX_ID,
    UNASSIGNED,
    Case,
    CaseEvent,
    CustodyEntry,
    EvidenceLink,
    GridCell,
    ReviewLabel,
    Sighting,
)

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(person_with(*ROLES))]
# the roles the API lets move cases (api.http.deps.Staff); the domain then checks each target
Mover = Annotated[Principal, Depends(person_with(Role.ADMIN, Role.OPERATOR, Role.ENFORCEMENT))]
# a case id in a page's path is read by the page: one that is no id is that page's 404, not a 422
CaseIdPath = Annotated[str, Path(max_length=64)]

PER_PAGE_CHOICES = (25, 50, 100)
MAX_TEXT = 64  # the API's limit on a filter's text
MAX_NOTE = 4000  # the API's limit on a note
EVIDENCE_ORDER = ("raw", "annotated", "crop", "dwell_first", "dwell_middle", "dwell_last", "after_photo")
# where a move's form came from (the answer goes back there) and the page template of each
PAGE_TEMPLATES = {"case": "cases/detail.html", "task": "tasks/detail.html"}
# the sightings a case page shows unless asked for all (?sightings=all): the latest. A camera watching a
# pile that stays merges hundreds into one case; each has six pictures and a box editor
SIGHTINGS_SHOWN = 20

T = TypeVar("T")


def site_offset(services: Services) -> timezone:
    """The site's UTC offset (settings.timezone_offset_h): how the pages show server times."""
    return timezone(timedelta(hours=services.settings.timezone_offset_h))


def local_time(naive_utc: datetime | None, offset: timezone, *, seconds: bool = False) -> str:
    if naive_utc is None:
        return ""
    local = naive_utc.replace(tzinfo=UTC).astimezone(offset)
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def offset_label(offset: timezone) -> str:
    minutes = int((offset.utcoffset(None) or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


async def in_session(services: Services, work: Callable[[Session], T], *, write: bool = False) -> T:
    """Run blocking database work in the thread pool; a write commits, or rolls back on any error."""

    def run() -> T:
        factory = services.factory if write else services.read_factory
        with factory() as session:
            try:
                result = work(session)
                if write:
                    session.commit()
                return result
            except BaseException:
                session.rollback()
                raise

    return await run_in_threadpool(run)


def message_page(
    request: Request, principal: Principal | None, heading: str, message: str, status_code: int
) -> HTMLResponse:
    return render(
        request,
        "message.html",
        principal=principal,
        heading=heading,
        message=message,
        status_code=status_code,
    )


def not_found_page(request: Request, principal: Principal) -> HTMLResponse:
    t = translator(request)
    return message_page(request, principal, t("error.notfound.title"), t("error.notfound.body"), 404)


async def left_team_page(
    request: Request,
    *,
    principal: Principal,
    services: Services,
    case_id: int,
    sent: dict[str, Any] | None = None,
) -> HTMLResponse | None:
    """For a team member, the page saying the case is no longer the team's (api.cases.reading.left_team),
    naming no other team nor anything of the case now; None for a case the team never had, which stays
    as unknown as one that does not exist. `sent`: the form that came for it (its note, shown back to
    copy, and whether it had a photo): nothing of it was saved (409); without it, the task page was
    opened (404: the case is not there for them)."""
    if principal.role != Role.ENFORCEMENT or not await in_session(
        services, lambda session: left_team(session, case_id=case_id, team=principal.team)
    ):
        return None
    return render(
        request,
        "tasks/moved_away.html",
        principal=principal,
        status_code=404 if sent is None else 409,
        sent=sent is not None,
        note=(sent or {}).get("note", ""),
        photo=bool((sent or {}).get("photo")),
    )


# --- the list ------------------------------------------------------------------------------------


@dataclass
class ListQuery:
    """The list's query parameters as typed (shown back in the form) and as the filter they make."""

    status: list[str] = field(default_factory=list)
    category: str = ""
    grid_cell: str = ""
    team: str = ""
    camera: str = ""
    number: str = ""
    plate: str = ""
    since: str = ""
    until: str = ""
    first_seen_since: str = ""
    first_seen_until: str = ""
    superseded: str = ""  # "false": left out (as the dashboard counts), "true": only those
    upload: str = ""  # an upload's id: the cases its jobs filed (the /upload page's links)
    sort: str = "last_seen"
    order: str = "desc"
    page: int = 1
    per_page: int = 50
    problems: list[tuple[str, str]] = field(default_factory=list)  # (field, catalogue key)
    since_at: datetime | None = None
    until_at: datetime | None = None
    first_seen_since_at: datetime | None = None
    first_seen_until_at: datetime | None = None
    # what the number box looks for (api.cases.reading.number_query): the whole number, or a case's id
    number_sought: str | None = None
    case_id: int | None = None
    upload_id: int | None = None

    def filters(self) -> CaseFilter:
        return CaseFilter(
            status=self.status or None,
            category=self.category or None,
            grid_cell=self.grid_cell or None,
            team=self.team or None,
            since=self.since_at,
            until=self.until_at,
            camera=self.camera or None,
            number=self.number_sought,
            plate=self.plate or None,
            case_id=self.case_id,
            first_seen_since=self.first_seen_since_at,
            first_seen_until=self.first_seen_until_at,
            superseded=SUPERSEDED_CHOICES.get(self.superseded),
            upload_id=self.upload_id,
        )

    def params(self, **changes: Any) -> str:
        """The query string of this list with some parameters changed (for the pager)."""
        values: dict[str, Any] = {
            "status": self.status,
            "category": self.category,
            "grid_cell": self.grid_cell,
            "team": self.team,
            "camera": self.camera,
            "number": self.number,
            "plate": self.plate,
            "since": self.since,
            "until": self.until,
            "first_seen_since": self.first_seen_since,
            "first_seen_until": self.first_seen_until,
            "superseded": self.superseded,
            "upload": self.upload,
            "sort": self.sort,
            "order": self.order,
            "page": self.page,
            "per_page": self.per_page,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, [])}, doseq=True)


# the list's `superseded` as the API's (GET /api/cases?superseded=): cases the service rejected as
# superseded by a corrected resend, which /api/stats and the dashboard count nowhere
SUPERSEDED_CHOICES: dict[str, bool] = {"false": False, "true": True}
TIME_FILTERS = ("since", "until", "first_seen_since", "first_seen_until")


def _local_datetime(text: str, offset: timezone, *, end_of_day: bool) -> datetime | None:
    """A time typed in the form (a date, a datetime-local value, or ISO 8601 with an offset), taken
    in the site's offset when it has none; naive UTC. None when it cannot be read or is out of the
    accepted range (api.cases.wall_time)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=offset)
            if in_range(datetime.combine(day, time(12), tzinfo=UTC)):  # a day of the range: its bound held
                return held_in_range(when.astimezone(UTC).replace(tzinfo=None))  # in it, as the dashboard's
        else:
            when = datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=offset)
    except ValueError:
        return None
    if not in_range(when):
        return None
    return when.astimezone(UTC).replace(tzinfo=None)


def page_numbers(request: Request, *, max_per_page: int) -> tuple[dict[str, int], list[str]]:
    """A list page's `page` and `per_page` as given (1-100000, 1-max_per_page): name -> number for
    those given well, and the names of those given badly (the caller names them and keeps its
    defaults), so that a hand-edited link still shows a page."""
    numbers: dict[str, int] = {}
    bad: list[str] = []
    for name, high in (("page", 100_000), ("per_page", max_per_page)):
        text = request.query_params.get(name, "").strip()
        if not text:
            continue
        if text.isdigit() and 1 <= int(text) <= high:
            numbers[name] = int(text)
        else:
            bad.append(name)
    return numbers, bad


def parse_list_query(request: Request, offset: timezone) -> ListQuery:
    """The list's parameters, leniently: an unknown status or sort is dropped, a bad number or time
    is named in `problems` and ignored, so a hand-edited link still shows a page."""
    params = request.query_params
    query = ListQuery()
    query.status = [s for s in params.getlist("status") if s in workflow.STATUSES]
    for name in ("category", "grid_cell", "team", "camera", "number", "plate", *TIME_FILTERS):
        value = params.get(name, "").strip()
        if len(value) > MAX_TEXT:
            query.problems.append((name, "cases.filter.too_long"))
            value = ""
        setattr(query, name, value)
    if params.get("superseded") in SUPERSEDED_CHOICES:
        query.superseded = params["superseded"]
    upload = params.get("upload", "").strip()
    if upload:
        if upload.isdigit() and 0 < int(upload) <= MAX_ID:
            query.upload, query.upload_id = upload, int(upload)
        else:
            query.problems.append(("upload", "cases.filter.bad_number"))
    try:
        query.number_sought, query.case_id = number_query(query.number)
    except InputError:
        query.problems.append(("number", "cases.filter.bad_case_number"))
        query.number_sought = query.number  # looked for as typed: no case's number has its form
    if params.get("sort") in SORTS:
        query.sort = params["sort"]
    if params.get("order") in ("asc", "desc"):
        query.order = params["order"]
    numbers, bad = page_numbers(request, max_per_page=500)
    query.page, query.per_page = numbers.get("page", query.page), numbers.get("per_page", query.per_page)
    query.problems += [(name, "cases.filter.bad_number") for name in bad]
    for name in TIME_FILTERS:
        text = getattr(query, name)
        if text:
            when = _local_datetime(text, offset, end_of_day=name.endswith("until"))
            if when is None:
                query.problems.append((name, "cases.filter.bad_time"))
            setattr(query, f"{name}_at", when)
    if query.since_at is not None and query.until_at is not None and query.until_at < query.since_at:
        query.problems.append(("until", "cases.filter.before_since"))  # it would match no case: as the API,
        query.until_at = None  # which refuses it; here it is dropped and named
    first, last = query.first_seen_since_at, query.first_seen_until_at
    if first is not None and last is not None and last < first:
        query.problems.append(("first_seen_until", "cases.filter.before_since"))
        query.first_seen_until_at = None
    return query


THUMBNAIL_ROLES = ("crop", "annotated", "raw")  # what a list shows of a case, best first
# the pictures the pipeline drew with the detector's box -> the view drawn with the corrected boxes
CORRECTED_VIEWS = {"annotated": "frame", "crop": "crop"}


def thumbnails(session: Session, case_ids: Iterable[int]) -> dict[int, str]:
    """case id -> the URL of a small picture of it: its latest sighting's crop, else its frame. Of a
    sighting whose frame operators corrected boxes on, a crop drawn around their boxes (the raw frame
    when they left none)."""
    ids = list(case_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(EvidenceLink.case_id, EvidenceLink.sighting_id, EvidenceLink.role, EvidenceLink.sha256)
        .where(EvidenceLink.case_id.in_(ids), EvidenceLink.role.in_(THUMBNAIL_ROLES))
        .order_by(EvidenceLink.id)
    )
    best: dict[int, tuple[int, int | None, str]] = {}
    for case_id, sighting_id, role, sha in rows:  # later sightings come later: among equals the last wins
        rank = THUMBNAIL_ROLES.index(role)
        if case_id not in best or rank <= best[case_id][0]:
            best[case_id] = (rank, sighting_id, sha)
    out = {case_id: evidence_url(sha) for case_id, (_, _, sha) in best.items()}
    shown = {sighting_id: case_id for case_id, (_, sighting_id, _) in best.items() if sighting_id is not None}
    boxed = list(
        session.scalars(
            select(ReviewLabel.sighting_id)
            .where(ReviewLabel.sighting_id.in_(list(shown)), ReviewLabel.what == "box")
            .distinct()
        )
    )
    if boxed:  # rare: only these sightings are read whole
        sightings = list(session.scalars(select(Sighting).where(Sighting.id.in_(boxed))))
        for sighting_id, fixed in review_labels.corrected_frames(session, sightings=sightings).items():
            case_id = shown[sighting_id]
            boxes = bool(fixed.boxes)
            out[case_id] = (
                corrected_url(case_id, fixed, "crop") if boxes else evidence_url(fixed.frame_sha256)
            )
    return out


def case_id_of(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) <= MAX_ID else None


CASE_NUMBER = re.compile(r"^GP-[0-9]{4}-[0-9]{6,10}$")


async def page_case_id(services: Services, text: str) -> int | None:
    """The id of the case a page's path names by its id or by its number (GP-2026-000123), as the API
    takes it; None when it names none. Whether the person may see it is checked where it is read: a
    case they may not see is "not found", whichever way it was named."""
    if CASE_NUMBER.match(text):
        return await in_session(services, lambda session: case_id_for_number(session, text))
    return case_id_of(text)


def grid_cells(session: Session, *, geometry: bool = False) -> dict[str, GridCell]:
    """The grid's cells by id (their names for lists; their polygons only when asked)."""
    stmt = select(GridCell).order_by(GridCell.id)
    if not geometry:
        stmt = stmt.options(
            load_only(GridCell.id, GridCell.name, GridCell.street, GridCell.community, GridCell.team)
        )
    return {cell.id: cell for cell in session.scalars(stmt)}


def cells_offered(session: Session, principal: Principal, cells: dict[str, GridCell]) -> list[GridCell]:
    """The cells the list's grid cell filter offers: every cell; to an enforcement user, its team's
    and those another team's where the team's cases lie (a case dispatched to it there, or kept when a
    grid import gave its cell to another team), not the district's other cells, which list none of
    its cases."""
    if principal.role != Role.ENFORCEMENT:
        return list(cells.values())
    of_cases = set(session.scalars(select(Case.grid_cell_id).where(Case.team == principal.team).distinct()))
    return [cell for cell in cells.values() if cell.team == principal.team or cell.id in of_cases]


@router.get("/cases", response_class=HTMLResponse)
async def case_list(request: Request, principal: Reader, services: ServicesDep) -> Response:
    offset = site_offset(services)
    query = parse_list_query(request, offset)
    t = translator(request)

    def work(session: Session) -> dict[str, Any]:
        found = case_page(
            session,
            principal=principal,
            filters=query.filters(),
            page=query.page,
            per_page=query.per_page,
            sort=query.sort,
            descending=query.order == "desc",
        )
        cells = grid_cells(session)
        return {
            "found": found,
            "thumbs": thumbnails(session, (c.id for c in found.items)),
            "cells": cells,
            "offered": cells_offered(session, principal, cells),
            "teams": dispatch_teams(session),
            "categories": known_categories(session),
        }

    data = await in_session(services, work)
    found = data["found"]
    pages = max(1, -(-found.total // query.per_page))
    rows = [
        {
            "case": item,
            "thumb": data["thumbs"].get(item.id),
            "first_seen": local_time(item.first_seen, offset),
            "last_seen": local_time(item.last_seen, offset),
            "cell_name": data["cells"][item.grid_cell].name if item.grid_cell in data["cells"] else "",
        }
        for item in found.items
    ]
    return render(
        request,
        "cases/list.html",
        principal=principal,
        query=query,
        rows=rows,
        total=found.total,
        pages=pages,
        prev_href=f"/cases?{query.params(page=query.page - 1)}" if query.page > 1 else "",
        next_href=f"/cases?{query.params(page=query.page + 1)}" if query.page < pages else "",
        problems=[t(key, field=t(f"cases.filter.{name}")) for name, key in query.problems],
        statuses=workflow.STATUSES,
        categories=data["categories"],
        cells=data["offered"],
        cell_ids={cell.id for cell in data["offered"]},
        unassigned=UNASSIGNED,
        teams=data["teams"],
        sorts=list(SORTS),
        per_page_choices=PER_PAGE_CHOICES,
        show_team=principal.role != Role.ENFORCEMENT,
        offset_label=offset_label(offset),
    )


# --- one case ------------------------------------------------------------------------------------


def actor_name(actor: str, t: Translator) -> str:
    """Who did it, as people read it: a user's name, a device's, or the system (pipeline, CLI)."""
    kind, _, name = actor.partition(":")
    if kind == "user":
        return name
    if kind == "device":
        return t("cases.actor.device", name=name)
    return t("cases.actor.system")


def history_note(action: str, note: str | None, t: Translator) -> str | None:
    """A history note the service wrote (an incident's id, the category before and after, ...) in
    the page's language, from its parts; any other note as it is stored."""
    parts = note_parts(action, note)
    if parts is None:
        return note
    if action == "undo":
        key = f"cases.action.{parts['action']}"
        parts["action"] = t(key) if t.has(key) else parts["action"]
    if action == "recategorized":
        parts = {k: t(f"category.{v}") for k, v in parts.items()}
    return t(f"cases.note.{action}", **parts)


def timeline(events: list[CaseEvent], t: Translator, offset: timezone) -> list[dict[str, Any]]:
    items = []
    for event in events:
        team, note = (None, event.note)
        if event.to_status == workflow.DISPATCHED:
            team, note = dispatched_team(event.note)
        else:
            note = history_note(event.action, event.note, t)
        reason = event.reason
        if reason and t.has(f"reason.{reason}"):
            reason = t(f"reason.{reason}")
        elif reason and t.has(f"cases.reason.{reason}"):
            reason = t(f"cases.reason.{reason}")
        action_key = f"cases.action.{event.action}"
        if event.from_status == workflow.HANDLED and event.to_status == workflow.DISPATCHED:
            action_key = "cases.action.sent_back"
        items.append(
            {
                "action": event.action,
                "what": t(action_key) if t.has(action_key) else event.action,
                "who": actor_name(event.actor, t),
                "when": local_time(event.at, offset, seconds=True),
                "from_status": event.from_status or "",
                "to_status": event.to_status or "",
                "from": t(f"status.{event.from_status}") if event.from_status else "",
                "to": t(f"status.{event.to_status}") if event.to_status else "",
                "moved": event.from_status != event.to_status,
                "reason": reason or "",
                "team": team or "",
                "note": note or "",
            }
        )
    return items


def custody_check(session: Session, case_id: int, t: Translator) -> dict[str, Any]:
    """The case's custody chain checked now (custody.verify_chain): intact with N entries, or the
    first entry that does not match."""
    entries = custody.read_entries(session, CustodyEntry.case_id == case_id)
    problems = custody.verify_chain(entries, case_id)
    if not entries:
        return {"ok": False, "text": t("cases.custody.empty"), "problems": []}
    if not problems:
        return {"ok": True, "text": t("cases.custody.intact", count=len(entries)), "problems": []}
    return {
        "ok": False,
        "text": t("cases.custody.broken", count=len(entries)),
        "problems": [f"#{p.seq}: {p.reason}" for p in problems],
    }


def sighting_views(
    case: Case,
    t: Translator,
    offset: timezone,
    corrected: Mapping[int, review_labels.CorrectedFrame],
    sightings: list[Sighting],
) -> list[dict[str, Any]]:
    """The sightings given (the case's, or its latest), numbered among all of the case's, with their
    evidence thumbnails; the raw frame and the dwell frames carry the stored box (and a crop's window)
    for frames.js to draw (a dwell frame's, and whose it is: views.strip_boxes). A sighting whose frame
    operators corrected boxes on (`corrected`: review_labels.corrected_frames) shows their boxes: over its raw
    frame, and in pictures drawn with them in place of its annotated frame and crop (which carry the
    detector's box; a crop of a frame with no box left is not shown). A dwell frame opened by itself
    (its link, `zoom`) is the picture drawn with those boxes in it (views.strip_url)."""
    views = []
    numbers = {sighting.id: number for number, sighting in enumerate(case.sightings, start=1)}
    for sighting in sightings:
        number = numbers[sighting.id]
        incident = incident_of(sighting)
        entries = {e.get("sha256"): e for e in incident.get("evidence", []) if isinstance(e, dict)}
        fixed = corrected.get(sighting.id)
        links = sorted(
            (link for link in sighting.evidence if link.role not in SEALED_ROLES),  # the original: sealed
            key=lambda link: EVIDENCE_ORDER.index(link.role) if link.role in EVIDENCE_ORDER else 99,
        )
        items = []
        for link in links:
            entry = entries.get(link.sha256, {})
            url = evidence_url(link.sha256)
            zoom = url  # opened by itself (its link)
            boxes: list[list[float]] = []
            window: list[Any] = []
            boxes_by = ""
            if link.role == "raw":
                boxes = frame_boxes(incident, fixed)
            elif link.role.startswith("dwell_"):
                boxes, boxes_by = strip_boxes(incident, entry, fixed)
                window = entry.get("window") or []
                picture = strip_picture(sighting, link.role, fixed, incident)
                if picture is not None and picture.sha256 == link.sha256:  # drawn with its boxes
                    zoom = strip_url(case.id, picture)
            elif fixed is not None and link.role in CORRECTED_VIEWS:
                if link.role == "crop" and not fixed.boxes:
                    continue
                url = zoom = corrected_url(case.id, fixed, CORRECTED_VIEWS[link.role])
            label_key = f"cases.evidence.{link.role}"
            items.append(
                {
                    "url": url,
                    "zoom": zoom,
                    "label": t(label_key) if t.has(label_key) else link.role,
                    "boxes": boxes,
                    "boxes_by": boxes_by,
                    "window": [float(v) for v in window] if len(window) == 4 else [],
                }
            )
        views.append(
            {
                "id": sighting.id,
                "number": number,
                "seen_at": site_time(sighting.seen_at, offset, camera_offset(incident), t),
                "camera": sighting.camera_id or "",
                "plate": sighting.plate or "",
                "recurrence": sighting.recurrence,
                "place": f"{sighting.lat:.6f}, {sighting.lon:.6f}" if sighting.lat is not None else "",
                "items": items,
            }
        )
    return views


def class_choices(classes: Mapping[str, str], t: Translator) -> dict[str, str]:
    """model class name -> how the page names it: its object kind in the page's language where the
    catalogue has it (object.<kind>), else the class name; names two classes share say the class."""
    labels = {
        name: t(f"object.{kind}") if t.has(f"object.{kind}") else name for name, kind in classes.items()
    }
    seen = list(labels.values())
    shared = {label for label in seen if seen.count(label) > 1}
    return {name: f"{label} ({name})" if label in shared else label for name, label in labels.items()}


def box_editors(
    session: Session, sightings: list[Sighting], classes: Mapping[str, str], t: Translator
) -> dict[int, dict[str, Any]]:
    """sighting id (of those given) -> what the box editor of its raw frame shows: the frame, the boxes
    labelled on it now (review_labels.labelled_frames: what was saved, after a reload too), in pixels of
    the frame, and the model classes a box may have (the site config's `kinds`), named in the page's
    language. A frame with a review label that cannot be read has no editor, only a line saying so
    (`unreadable`)."""
    choices = class_choices(classes, t)
    frames = review_labels.labelled_frames(session, sightings=sightings, classes=classes)
    return {
        sighting_id: {
            "unreadable": (
                t("cases.boxes.unreadable", label=frame.damaged_label)
                if frame.damaged_label is not None
                else ""
            ),
            "url": evidence_url(frame.frame_sha256),
            "classes": choices,
            "boxes": [
                {
                    "x1": b.box.x1,
                    "y1": b.box.y1,
                    "x2": b.box.x2,
                    "y2": b.box.y2,
                    "class_name": b.box.class_name,
                    "label": choices.get(b.box.class_name, b.box.class_name),
                    "source": b.source,
                }
                for b in frame.boxes
            ],
        }
        for sighting_id, frame in frames.items()
    }


def _rings(geometry: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """The outer rings of a GeoJSON Polygon / MultiPolygon, as (lon, lat) pairs."""
    coords = geometry.get("coordinates") or []
    polygons = [coords] if geometry.get("type") == "Polygon" else coords
    return [[(float(p[0]), float(p[1])) for p in polygon[0]] for polygon in polygons if polygon]


def place_map(cells: dict[str, GridCell], case: Case) -> dict[str, Any] | None:
    """An SVG map of the case's place: its cell, the cells around it and its point.

    SVG units are metres east (x) and south (y) of the view's north-west corner, from an
    equirectangular projection at the view's latitude (good to well under 1 % over a few km)."""
    shapes = []
    for cell in cells.values():
        try:
            rings = _rings(json.loads(cell.geometry))
        except (json.JSONDecodeError, TypeError, IndexError, ValueError, AttributeError):
            log.warning("grid cell %s: geometry is not readable GeoJSON", cell.id)
            continue
        shapes.append((cell, rings))
    point = (case.lon, case.lat) if case.lat is not None and case.lon is not None else None
    own = [ring for cell, rings in shapes if cell.id == case.grid_cell_id for ring in rings]
    focus = [p for ring in own for p in ring] or ([point] if point else [])
    if not focus:
        return None
    lons, lats = [p[0] for p in focus], [p[1] for p in focus]
    span = max(max(lons) - min(lons), max(lats) - min(lats), 0.004)
    west, east = min(lons) - span * 0.6, max(lons) + span * 0.6
    south, north = min(lats) - span * 0.6, max(lats) + span * 0.6
    if point is not None:
        west, east = min(west, point[0] - span * 0.2), max(east, point[0] + span * 0.2)
        south, north = min(south, point[1] - span * 0.2), max(north, point[1] + span * 0.2)
    metres_per_deg = 111_195.0
    cos_lat = math.cos(math.radians((south + north) / 2))

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (lon - west) * metres_per_deg * cos_lat, (north - lat) * metres_per_deg

    width, height = xy(east, south)
    font = max(width, height) / 30
    polygons = []
    for cell, rings in shapes:
        for ring in rings:
            if not any(west <= lon <= east and south <= lat <= north for lon, lat in ring):
                continue
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(lon, lat) for lon, lat in ring))
            xs = [lon for lon, _ in ring]
            ys = [lat for _, lat in ring]
            cx, cy = xy(sum(xs) / len(xs), sum(ys) / len(ys))
            half_label = len(cell.id) * font * 0.3  # a label is about 0.6 em per character
            polygons.append(
                {
                    "id": cell.id,
                    "points": points,
                    "own": cell.id == case.grid_cell_id,
                    "cx": cx,
                    "cy": cy,
                    "label": half_label <= cx <= width - half_label and font <= cy <= height,
                }
            )
    dot = None
    if point is not None:
        x, y = xy(*point)
        dot = {"x": round(x, 1), "y": round(y, 1)}
    return {
        "width": round(width, 1),
        "height": round(height, 1),
        "polygons": polygons,
        "point": dot,
        "radius": round(max(width, height) / 60, 1),
        "font": round(font, 1),
    }


def move_actions(case: Case, principal: Principal, teams: list[str]) -> list[dict[str, Any]]:
    """The moves this person's role may make from the case's status (workflow.TRANSITIONS filtered
    by workflow.may_move), with what each form needs."""
    actions = []
    for target in workflow.TRANSITIONS[case.status]:
        if not workflow.may_move(principal.role, target):
            continue
        kind = str(target)
        if case.status == workflow.HANDLED and target == workflow.DISPATCHED:
            kind = "send_back"
        actions.append(
            {
                "target": str(target),
                "kind": kind,
                "teams": teams if target == workflow.DISPATCHED else [],
                "team": case.team or "",
            }
        )
    return actions


def last_dispatch(events: list[CaseEvent]) -> CaseEvent | None:
    for event in reversed(events):
        if event.to_status == workflow.DISPATCHED and event.from_status != workflow.DISPATCHED:
            return event
    return None


def first_dispatch(events: list[CaseEvent], dispatch: CaseEvent | None) -> CaseEvent | None:
    """The dispatch that first sent out the work `dispatch` (the latest, last_dispatch) is part of: the
    latest dispatch from another status than handled up to it, so `dispatch` itself unless the case was
    sent back since (a closed case seen again is new work, dispatched anew)."""
    if dispatch is None:
        return None
    for event in reversed(events):
        if (
            event.id <= dispatch.id
            and event.to_status == workflow.DISPATCHED
            and event.from_status not in (workflow.DISPATCHED, workflow.HANDLED)
        ):
            return event
    return None


def handling_sent_back(events: list[CaseEvent], dispatch: CaseEvent | None) -> CaseEvent | None:
    """The handling that verification found wanting: the move to handled that `dispatch` (a send-back,
    from handled) undid; none when `dispatch` is a first dispatch."""
    if dispatch is None or dispatch.from_status != workflow.HANDLED:
        return None
    before = [e for e in events if e.id < dispatch.id and e.to_status == workflow.HANDLED]
    return before[-1] if before else None


def handled_photo(session: Session, case_id: int) -> str:
    """The URL of the after-photo sent with the case's latest move to handled (its custody entry names
    it); "" when that move had none, or its entry cannot be read."""
    entries = custody.read_entries(
        session, and_(CustodyEntry.case_id == case_id, CustodyEntry.action == "transition")
    )
    for entry in reversed(entries):
        try:
            detail = json.loads(entry.detail)
        except (TypeError, ValueError):
            continue
        if isinstance(detail, dict) and detail.get("to") == workflow.HANDLED:
            sha = detail.get("after_photo")
            return evidence_url(sha) if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else ""
    return ""


def case_map_links(case: Case, cell: GridCell | None, t: Translator) -> MapLinks | None:
    """The way to a case's place in the map apps (api.http.pages.map_apps), named by its number and
    category, its cell under it; None for a case without a position. The task page shows them, and
    the task list keeps them for a tap made without network (tasks.js)."""
    if case.lat is None or case.lon is None:
        return None
    return map_links(
        case.lat,
        case.lon,
        name=f"{case.number or ''} {t('category.' + case.category)}".strip(),
        place=" · ".join(p for p in (cell.name, cell.community) if p) if cell else "",
    )


def case_context(
    session: Session,
    *,
    principal: Principal,
    case_id: int,
    t: Translator,
    offset: timezone,
    classes: Mapping[str, str] | None = None,
    all_sightings: bool = False,
) -> dict[str, Any]:
    """What the case page (and the task page) shows of a case the person may see; NotFound else.
    Its times are shown at the site's UTC offset (`offset`), as the case list shows them; a sighting's
    time adds its camera's local time where the camera's offset is another (views.site_time). With
    `classes` (the site config's model classes; given for a person who may label boxes), each
    sighting shown has a box editor on its raw frame. The latest SIGHTINGS_SHOWN
    sightings are shown, all of them with `all_sightings`."""
    case = get_case(session, principal=principal, case_id=case_id)
    shown = list(case.sightings) if all_sightings else list(case.sightings)[-SIGHTINGS_SHOWN:]
    events = list(
        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
    )
    cells = grid_cells(session, geometry=True)
    after = session.scalars(
        select(EvidenceLink.sha256)
        .where(
            EvidenceLink.case_id == case.id,
            EvidenceLink.sighting_id.is_(None),
            EvidenceLink.role == "after_photo",
        )
        .order_by(EvidenceLink.id)
    )
    corrected = review_labels.corrected_frames(session, sightings=shown)
    view = card_view(case, t, corrected, site=offset)
    dispatch = last_dispatch(events)
    first = first_dispatch(events, dispatch)
    dispatch_note = dispatched_team(dispatch.note)[1] if dispatch is not None else None
    undone = handling_sent_back(events, dispatch)
    teams = dispatch_teams(session) if workflow.may_move(principal.role, workflow.DISPATCHED) else []
    cell = cells.get(case.grid_cell_id)
    return {
        "case": case,
        "cell": cell,
        # the way there in the map apps, each in its own coordinates (api.http.pages.map_apps)
        "map_links": case_map_links(case, cell, t),
        "frame": view.frame,
        "crop": view.crop,
        "strip": view.strip,
        "facts": view.facts,
        "sightings": sighting_views(case, t, offset, corrected, shown),
        "sightings_hidden": len(case.sightings) - len(shown),
        "box_editors": box_editors(session, shown, classes, t) if classes is not None else {},
        "after_photos": [evidence_url(sha) for sha in after],
        "timeline": timeline(events, t, offset),
        "custody": custody_check(session, case.id, t),
        "map": place_map(cells, case),
        "actions": move_actions(case, principal, teams),
        "reasons": workflow.REJECT_REASONS,
        "dispatched_at": dispatch.at if dispatch is not None else None,
        "dispatched_at_text": local_time(dispatch.at, offset) if dispatch is not None else "",
        # dispatched more than once (sent back): when the work was first sent out, too
        "first_dispatched_at_text": (
            local_time(first.at, offset) if first is not None and first is not dispatch else ""
        ),
        "dispatch_note": dispatch_note or "",
        "sent_back": dispatch is not None and dispatch.from_status == workflow.HANDLED,
        # what the team did the time verification sent the case back: its note, who and when, the
        # after-photo sent with it
        "last_handling": {
            "note": undone.note or "",
            "who": actor_name(undone.actor, t),
            "when": local_time(undone.at, offset),
            "photo": handled_photo(session, case.id),
        }
        if undone is not None
        else None,
        "offset_label": offset_label(offset),
    }


def page_strings(t: Translator) -> str:
    return script_json({**t.subset("cases.js."), **t.subset("tasks.js.")})


def done_message(t: Translator, done: str | None, number: str | None) -> str:
    if done and done in workflow.STATUSES:
        return t(f"cases.done.{done}", number=number or "")
    return ""


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page_view(
    request: Request,
    case_id: CaseIdPath,
    principal: Reader,
    services: ServicesDep,
    done: str | None = None,
    sightings: str | None = None,
) -> Response:
    return await render_case(
        request,
        case_id=await page_case_id(services, case_id),
        principal=principal,
        services=services,
        done=done,
        all_sightings=sightings == "all",
    )


async def render_case(
    request: Request,
    *,
    case_id: int | None,
    principal: Principal,
    services: Services,
    done: str | None = None,
    error: str = "",
    status_code: int = 200,
    template: str = "cases/detail.html",
    sent: dict[str, str] | None = None,
    all_sightings: bool = False,
) -> Response:
    """A case's page (or its task page); after a refused move, `sent` (to, note, reason, team) fills
    that move's form again, or the first form when that move is no longer there (the case moved on),
    so that a person's typed note is never lost to an error. `all_sightings`: every sighting shown,
    not only the latest (case_context)."""
    t = translator(request)
    offset = site_offset(services)
    if case_id is None:
        return not_found_page(request, principal)
    known_id = case_id
    classes: dict[str, str] | None = None
    labelling_error = ""
    if principal.role in review_labels.LABELLERS and template == "cases/detail.html":
        if not services.settings.site_config.is_file():  # serve logged, at its start, where it looked
            labelling_error = t("cases.boxes.no_site_config")
        else:
            try:
                classes = await run_in_threadpool(model_classes, services)
            except ServiceFault as exc:
                log.warning("the case page has no box editor: %s", exc)
                labelling_error = t("cases.boxes.no_config", detail=exc.reason)
    try:
        context = await in_session(
            services,
            lambda session: case_context(
                session,
                principal=principal,
                case_id=known_id,
                t=t,
                offset=offset,
                classes=classes,
                all_sightings=all_sightings,
            ),
        )
    except NotFound:
        return not_found_page(request, principal)
    return render(
        request,
        template,
        principal=principal,
        status_code=status_code,
        page_path=f"/tasks/{known_id}" if template == PAGE_TEMPLATES["task"] else f"/cases/{known_id}",
        done=done_message(t, done, context["case"].number),
        error=error,
        max_note=MAX_NOTE,
        max_photo_bytes=services.settings.max_evidence_bytes,  # the after-photo's limit, checked on the phone
        i18n_json=page_strings(t),
        labelling_error=labelling_error,
        sent=_refill(sent, [_target(a) for a in context.get("actions", [])]),
        **context,
    )


def _target(action: Any) -> str:
    return str(action["target"] if isinstance(action, dict) else action.target)


def _refill(sent: dict[str, str] | None, targets: list[str]) -> dict[str, str]:
    """What a refused form sent, for the form of the same move, else the first one."""
    if not sent or not targets:
        return {}
    to = sent.get("to", "")
    return {**sent, "to": to if to in targets else targets[0]}


def error_text(exc: InputError, t: Translator, *, theirs: bool = False) -> str:
    """A move's error as the person reads it: the catalogue's text for the field it names. `theirs`:
    the case is where the move would take it because this person moved it there (moved_by)."""
    if isinstance(exc, workflow.TransitionError):
        if exc.current == exc.target:
            key = "cases.error.already_yours" if theirs else "cases.error.already"
            return t(key, current=t(f"status.{exc.current}"))
        return t("cases.error.conflict", current=t(f"status.{exc.current}"), target=t(f"status.{exc.target}"))
    if exc.field == "photo":  # the evidence store's reasons (api.storage.evidence_store), in the page's words
        if match := re.fullmatch(r"larger than the limit of (\d+) bytes", exc.reason):
            return t("cases.error.photo_too_large", mb=f"{int(match.group(1)) / 2**20:.0f}")
        if exc.reason.startswith("not a JPEG"):
            return t("cases.error.photo_type")
        if exc.reason == "empty file":
            return t("cases.error.photo_empty")
    if exc.field == "note_length":
        return t("cases.error.note_length", max=MAX_NOTE)
    key = f"cases.error.{exc.field}"
    if t.has(key):
        return t(key, detail=exc.reason)
    return t("cases.error.input", detail=str(exc))


def moved_by(session: Session, case_id: int, principal: Principal, status: str) -> bool:
    """Whether the case's latest move, to `status`, was this person's: a move sent twice (a second
    tap on a slow connection, a resend after the answer was lost) finds the case moved by the first."""
    latest = session.scalar(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id.desc()).limit(1)
    )
    return latest is not None and latest.to_status == status and latest.actor == principal.label


@router.post("/cases/{case_id}/move", response_class=HTMLResponse)
async def move_case(
    request: Request,
    case_id: CaseIdPath,
    principal: Mover,
    services: ServicesDep,
    to: Annotated[str, Form()] = "",
    from_status: Annotated[str, Form(alias="from")] = "",
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    team: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "case",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Make one move, as POST /api/cases/{id}/transitions does, and go back to the page it came from
    (303) with a message; an error shows that page again with the message and the error's status."""
    t = translator(request)
    back = back if back in PAGE_TEMPLATES else "case"
    parsed = await page_case_id(services, case_id)
    if parsed is None:
        return not_found_page(request, principal)
    cid: int = parsed
    upload = photo if photo is not None and photo.filename else None  # an empty file input sends ""

    def work(session: Session) -> str | None:
        if len(note) > MAX_NOTE:
            raise workflow.TransitionInputError("note_length", f"at most {MAX_NOTE} characters")
        if reason and reason not in workflow.REJECT_REASONS:
            raise workflow.TransitionInputError("reason", f"one of {', '.join(workflow.REJECT_REASONS)}")
        case = get_case(session, principal=principal, case_id=cid, lock=True)
        if to in workflow.STATUSES and not workflow.may_move(principal.role, to):
            raise ForbiddenMove(principal.role, to)
        if from_status and from_status != case.status and to in workflow.STATUSES:
            # the page showed another status: someone moved the case since
            raise workflow.TransitionError(case.status, to, workflow.TRANSITIONS[case.status])
        stored = None
        if upload is not None:
            stored = store_after_photo(
                session,
                principal=principal,
                case_id=cid,
                photo=upload.file,
                store=services.store,
                max_bytes=services.settings.max_evidence_bytes,
            )
        move = workflow.Move(
            target=to,
            reason=reason or None,
            note=note.strip() or None,
            has_photo=stored is not None,
            team=team.strip() or None,
        )
        moved = transition(session, principal=principal, case_id=cid, move=move, photo=stored)
        return moved.number

    try:
        number = await in_session(services, work, write=True)
    except NotFound:
        # the form of a case the team had when the page was opened: say why nothing was kept
        sent = {"note": note, "photo": upload is not None}
        left = await left_team_page(request, principal=principal, services=services, case_id=cid, sent=sent)
        if left is not None:
            log.info("%s sent a move for case %s, no longer the team's", principal.label, cid)
            return left
        return not_found_page(request, principal)
    except ForbiddenMove as exc:
        log.info("%s tried a move the role may not make: %s", principal.label, exc)
        return message_page(
            request,
            principal,
            t("error.forbidden.title"),
            t("cases.error.forbidden_move", target=t(f"status.{to}")),
            403,
        )
    except InputError as exc:
        theirs = False
        if isinstance(exc, workflow.TransitionError) and exc.current == exc.target:
            current = exc.current
            theirs = await in_session(services, lambda session: moved_by(session, cid, principal, current))
        return await render_case(
            request,
            case_id=cid,
            principal=principal,
            services=services,
            error=error_text(exc, t, theirs=theirs),
            status_code=exc.status,
            template=PAGE_TEMPLATES[back],
            sent={"to": to, "note": note, "reason": reason, "team": team},
        )
    log.info("%s moved case %s to %s", principal.label, number, to)  # from the task page as from the case's
    if back == "task":
        return see_other(request, f"/tasks?{urlencode({'done': cid})}")
    return see_other(request, f"/cases/{cid}?{urlencode({'done': to})}")
