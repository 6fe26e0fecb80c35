"""The suspected-parking page: chalk marks (api.cases.chalking), one pass of a parked vehicle each, for
the roles that read them over the API (GET /api/chalk-marks: admin, operator, viewer).

GET /chalk-marks is a plain GET form over the API's filters (api.cases.chalking.MarkFilter), latest
seen first, a page at a time. Each mark shows a thumbnail of its close-up (served by
GET /api/chalk-marks/{id}/evidence/{sha256}), when and where it was seen (its times at its camera's
UTC offset, api.http.pages.views, else at the site's; the grid cell its position lies in), its plate,
camera and device, and its status: open, confirmed (a link to the case it was filed in, and that
case's status), rejected (confirmed, its case rejected since: the link, and why it was rejected),
expired or superseded (an upload's earlier run's, which a corrected resend superseded).
The sealed original is never listed, not even to an admin: the page asks for marks without it.

Bad filter values are named on the page and ignored, as on the case list, never a 500.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal, Role
from api.cases.chalking import MARK_STATUSES, ChalkPolicy, MarkFilter, MarkPage, MarkView, mark_page
from api.cases.reading import SEALED_ROLES
from api.http.i18n import Translator
from api.http.pages.cases import (
    MAX_TEXT,
    PER_PAGE_CHOICES,
    _local_datetime,
    in_session,
    offset_label,
    site_offset,
)
from api.http.pages.render import render, translator
from api.http.pages.session import ServicesDep, person_with
from api.http.pages.views import camera_offset, show_time
from api.storage.models import UNASSIGNED, ChalkMark, Device, GridCell

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# the roles GET /api/chalk-marks lets read marks (api.http.routes.chalk_marks.MarkReader)
MarkReader = Annotated[Principal, Depends(person_with(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]

MAX_PLATE = 32  # the API's limit on the plate filter
THUMBNAIL_ROLES = ("crop", "annotated", "raw")  # what the list shows of a mark, best first
EVIDENCE_ORDER = ("crop", "annotated", "raw", "dwell_first", "dwell_middle", "dwell_last")


def mark_evidence_url(mark_id: int, sha256: str) -> str:
    return f"/api/chalk-marks/{mark_id}/evidence/{sha256}"


@dataclass
class MarkQuery:
    """The page's query parameters as typed (shown back in the form) and the filter they make."""

    status: str = ""
    plate: str = ""
    since: str = ""
    until: str = ""
    page: int = 1
    per_page: int = 50
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (field, catalogue key, value)
    since_at: datetime | None = None
    until_at: datetime | None = None

    def filters(self) -> MarkFilter:
        return MarkFilter(
            since=self.since_at, until=self.until_at, status=self.status or None, plate=self.plate or None
        )

    def params(self, **changes: Any) -> str:
        """The query string of this page with some parameters changed (for the pager)."""
        values: dict[str, Any] = {
            "status": self.status,
            "plate": self.plate,
            "since": self.since,
            "until": self.until,
            "page": self.page,
            "per_page": self.per_page,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def parse_mark_query(request: Request, offset: timezone) -> MarkQuery:
    """The page's parameters, leniently: a value that cannot be used is named in `problems` (with
    what was typed) and ignored, so a hand-edited link still shows a page."""
    params = request.query_params
    query = MarkQuery()
    status = params.get("status", "").strip()
    if status and status not in MARK_STATUSES:
        query.problems.append(("status", "chalk.filter.bad_status", status))
    elif status:
        query.status = status
    for name, limit in (("plate", MAX_PLATE), ("since", MAX_TEXT), ("until", MAX_TEXT)):
        value = params.get(name, "").strip()
        if len(value) > limit:
            query.problems.append((name, "chalk.filter.too_long", value[:limit] + "…"))
            value = ""
        setattr(query, name, value)
    for name, low, high in (("page", 1, 100_000), ("per_page", 1, 500)):
        text = params.get(name, "").strip()
        if not text:
            continue
        if text.isdigit() and low <= int(text) <= high:
            setattr(query, name, int(text))
        else:
            query.problems.append((name, "chalk.filter.bad_number", text))
    for name in ("since", "until"):
        text = getattr(query, name)
        if text:
            when = _local_datetime(text, offset, end_of_day=name == "until")
            if when is None:
                query.problems.append((name, "chalk.filter.bad_time", text))
            setattr(query, f"{name}_at", when)
    return query


def _offsets(session: Session, mark_ids: list[int]) -> dict[int, timezone]:
    """mark id -> its camera's UTC offset, read from the wall times of its stored incident."""
    if not mark_ids:
        return {}
    found = {}
    for mark_id, text in session.execute(
        select(ChalkMark.id, ChalkMark.incident_json).where(ChalkMark.id.in_(mark_ids))
    ):
        try:
            incident = json.loads(text or "{}")
        except json.JSONDecodeError:
            log.warning("chalk mark %s: stored incident is not JSON", mark_id)
            continue
        offset = camera_offset(incident) if isinstance(incident, dict) else None
        if offset is not None:
            found[mark_id] = offset
    return found


def _device_names(session: Session, device_ids: set[int]) -> dict[int, str]:
    if not device_ids:
        return {}
    return dict(session.execute(select(Device.id, Device.name).where(Device.id.in_(device_ids))).all())


def _cell_names(session: Session) -> dict[str, str]:
    return dict(session.execute(select(GridCell.id, GridCell.name)).all())


def mark_row(
    mark: MarkView,
    *,
    t: Translator,
    offset: timezone,
    cell: tuple[str, str] | None,
    device: str,
) -> dict[str, Any]:
    """What the page shows of one mark; never its sealed evidence."""
    files = sorted(
        (e for e in mark.evidence if e.role not in SEALED_ROLES),
        key=lambda e: EVIDENCE_ORDER.index(e.role) if e.role in EVIDENCE_ORDER else 99,
    )
    thumb = next(
        (mark_evidence_url(mark.id, e.sha256) for role in THUMBNAIL_ROLES for e in files if e.role == role),
        None,
    )
    evidence = []
    for e in files:
        label_key = f"cases.evidence.{e.role}"
        evidence.append(
            {
                "url": mark_evidence_url(mark.id, e.sha256),
                "label": t(label_key) if t.has(label_key) else e.role,
            }
        )
    category_key = f"category.{mark.category}"
    case_status = ""
    if mark.case_status is not None:
        case_status = _label(t, f"status.{mark.case_status}", mark.case_status)
        if mark.case_reject_reason is not None:
            reason = _label(t, f"reason.{mark.case_reject_reason}", mark.case_reject_reason)
            case_status = t("chalk.case_status_reason", status=case_status, reason=reason)
    return {
        "mark": mark,
        "thumb": thumb,
        "evidence": evidence,
        "category": t(category_key) if t.has(category_key) else mark.category,
        "first_seen": show_time(mark.first_seen, offset),
        "last_seen": show_time(mark.seen_at, offset),
        "place": f"{mark.position.lat:.6f}, {mark.position.lon:.6f}",
        "cell": cell,
        "plate_confidence": f"{mark.plate_confidence:.2f}" if mark.plate_confidence is not None else "",
        "device": device,
        "case_status": case_status,
    }


def _label(t: Translator, key: str, value: str) -> str:
    """The catalogue's label for a stored value, else the value itself."""
    return t(key) if t.has(key) else value


@router.get("/chalk-marks", response_class=HTMLResponse)
async def chalk_marks(request: Request, principal: MarkReader, services: ServicesDep) -> Response:
    offset = site_offset(services)
    query = parse_mark_query(request, offset)
    t = translator(request)
    chalk_policy = ChalkPolicy.of(services.settings)

    def work(session: Session) -> dict[str, Any]:
        found: MarkPage = mark_page(
            session,
            filters=query.filters(),
            chalk_policy=chalk_policy,
            page=query.page,
            per_page=query.per_page,
            sealed_too=False,  # the page never shows the sealed original, not even to an admin
        )
        ids = [m.id for m in found.items]
        grid = services.grid_cache.get(session)
        cells = {m.id: grid.lookup(m.position.lat, m.position.lon).cell_id for m in found.items}
        return {
            "found": found,
            "offsets": _offsets(session, ids),
            "cells": cells,
            "cell_names": _cell_names(session) if ids else {},
            "devices": _device_names(session, {m.device_id for m in found.items if m.device_id is not None}),
        }

    data = await in_session(services, work)
    found = data["found"]
    pages = max(1, -(-found.total // query.per_page))
    rows = []
    for mark in found.items:
        cell_id = data["cells"][mark.id]
        rows.append(
            mark_row(
                mark,
                t=t,
                offset=data["offsets"].get(mark.id, offset),
                cell=None if cell_id == UNASSIGNED else (cell_id, data["cell_names"].get(cell_id, "")),
                device=data["devices"].get(mark.device_id, "") if mark.device_id is not None else "",
            )
        )
    return render(
        request,
        "chalk/list.html",
        principal=principal,
        query=query,
        rows=rows,
        total=found.total,
        pages=pages,
        prev_href=f"/chalk-marks?{query.params(page=query.page - 1)}" if query.page > 1 else "",
        next_href=f"/chalk-marks?{query.params(page=query.page + 1)}" if query.page < pages else "",
        problems=[
            t(key, field=t(f"chalk.filter.{name}"), value=value) for name, key, value in query.problems
        ],
        statuses=MARK_STATUSES,
        per_page_choices=PER_PAGE_CHOICES,
        max_plate=MAX_PLATE,
        max_hours=f"{chalk_policy.max_hours:g}",
        min_minutes=f"{chalk_policy.min_minutes:g}",
        offset_label=offset_label(offset),
    )
