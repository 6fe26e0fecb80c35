"""Enforcement on a phone: the team's dispatched cases, nearest first, and marking one handled.

GET /tasks lists the cases dispatched to the person's team (api.cases.reading visibility: only their
team's), those sent back first (verification found the problem still there), then oldest dispatch
first, a page at a time (page, per_page as /cases takes them): the database picks each page in that
order, so no case that comes before those shown is left out. With near=LAT,LON (the phone's position,
which tasks.js adds when the browser gives it) each group is nearest first instead, all the team's
cases ordered in the database before paging, the cases without a position last; the pager's links
keep the same near, so the pages go on from one place. Each case on the list carries the way there
(the task page's map links), so that a tap made while the phone cannot reach the service shows it on
the list (tasks.js) instead of the browser's error page. GET /tasks/{id} shows a case's photos and
place with the "mark handled" form (a note and an after-photo from the phone's camera), which posts to
POST /cases/{id}/move like every move, so the photo goes into the evidence store and the custody chain
exactly as through the API.
Another team's case is a 404; one the team had before (sent to another team since) says it is no longer
the team's, and a form sent for it while the page was open says so too and that nothing was saved
(api.http.pages.cases.left_team_page).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal, Role
from api.cases.reading import Position, dispatched_tasks, get_case
from api.errors import NotFound
from api.http.i18n import Translator
from api.http.pages.cases import (
    MAX_TEXT,
    PAGE_TEMPLATES,
    CaseIdPath,
    case_id_of,
    case_map_links,
    grid_cells,
    in_session,
    left_team_page,
    local_time,
    page_case_id,
    page_numbers,
    page_strings,
    render_case,
    site_offset,
    thumbnails,
)
from api.http.pages.render import render, translator
from api.http.pages.session import ServicesDep, person_with
from api.storage.db import utcnow

router = APIRouter(include_in_schema=False)

Officer = Annotated[Principal, Depends(person_with(Role.ENFORCEMENT))]
PER_PAGE = 50  # cases a page of the list shows, unless per_page says otherwise
MAX_PER_PAGE = 100  # as /cases offers at most


def near_position(request: Request) -> tuple[Position | None, str]:
    """The query's `near` (LAT,LON in WGS84 degrees, as tasks.js sends the phone's position) and,
    when it was given but is no position, the text given (the page names it and keeps the dispatch
    order)."""
    text = request.query_params.get("near", "").strip()
    if not text:
        return None, ""
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:  # not two numbers
        return None, text[:MAX_TEXT]
    if -90 <= lat <= 90 and -180 <= lon <= 180:  # NaN and infinities fail both
        return Position(lat, lon), ""
    return None, text[:MAX_TEXT]


def ago(since: datetime | None, now: datetime, t: Translator) -> str:
    """How long ago, roughly, as people say it."""
    if since is None:
        return ""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 1:
        return t("tasks.ago.now")
    if minutes < 60:
        return t("tasks.ago.minutes", count=minutes)
    if minutes < 48 * 60:
        return t("tasks.ago.hours", count=minutes // 60)
    return t("tasks.ago.days", count=minutes // (24 * 60))


@router.get("/tasks", response_class=HTMLResponse)
async def task_list(request: Request, principal: Officer, services: ServicesDep, done: str = "") -> Response:
    t = translator(request)
    offset = site_offset(services)
    done_id = case_id_of(done)
    numbers, problems = page_numbers(request, max_per_page=MAX_PER_PAGE)
    page, per_page = numbers.get("page", 1), numbers.get("per_page", PER_PAGE)
    near, bad_near = near_position(request)

    def work(session: Session) -> dict[str, Any]:
        cases, total = dispatched_tasks(session, principal=principal, page=page, per_page=per_page, near=near)
        ids = [c.id for c in cases]
        done_number = ""
        if done_id is not None:
            try:
                done_number = get_case(session, principal=principal, case_id=done_id).number or ""
            except NotFound:
                done_number = ""
        return {
            "cases": cases,
            "total": total,
            "thumbs": thumbnails(session, ids),
            "cells": grid_cells(session),
            "done_number": done_number,
        }

    data = await in_session(services, work)
    now = utcnow()
    tasks = []
    for case in data["cases"]:
        cell = data["cells"].get(case.grid_cell_id)
        tasks.append(
            {
                "case": case,
                "thumb": data["thumbs"].get(case.id),
                "cell": cell,
                # kept on the list for a tap made without network (tasks.js shows the way there)
                "map_links": case_map_links(case, cell, t),
                # when it was last dispatched to the team (a send-back is one), as the task page says
                "dispatched": local_time(case.last_dispatched_at, offset),
                "ago": ago(case.last_dispatched_at, now, t),
                "sent_back": ago(case.sent_back_at, now, t) if case.sent_back_at is not None else "",
            }
        )
    total = data["total"]
    pages = max(1, -(-total // per_page))

    def href(to_page: int) -> str:
        query: dict[str, str | int] = {"page": to_page}
        if per_page != PER_PAGE:
            query["per_page"] = per_page
        if near is not None:
            query["near"] = f"{near.lat},{near.lon}"
        return f"/tasks?{urlencode(query)}"

    return render(
        request,
        "tasks/list.html",
        principal=principal,
        tasks=tasks,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * per_page + 1,
        last=(page - 1) * per_page + len(tasks),
        prev_href=href(page - 1) if page > 1 else "",
        next_href=href(page + 1) if page < pages else "",
        first_href=href(1) if page > 1 else "",
        near=near,
        problems=[t("cases.filter.bad_number", field=t(f"cases.filter.{name}")) for name in problems]
        + ([t("tasks.bad_near", value=bad_near)] if bad_near else []),
        done=t("tasks.done", number=data["done_number"]) if data["done_number"] else "",
        i18n_json=page_strings(t),
    )


@router.get("/tasks/{case_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, case_id: CaseIdPath, principal: Officer, services: ServicesDep
) -> Response:
    cid = await page_case_id(services, case_id)
    page = await render_case(
        request, case_id=cid, principal=principal, services=services, template=PAGE_TEMPLATES["task"]
    )
    if page.status_code == 404 and cid is not None:
        # a case the team had (sent to another team since, say from a link kept on the phone): say so
        left = await left_team_page(request, principal=principal, services=services, case_id=cid)
        return left or page
    return page
