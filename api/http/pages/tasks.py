"""Enforcement on a phone: the team's dispatched cases, nearest first, and marking one handled.

GET /tasks lists the cases dispatched to the person's team (api.cases.reading visibility: only their
team's), oldest dispatch first; the page embeds each case's position and tasks.js re-sorts the list
by distance when the browser gives the phone's position. GET /tasks/{id} shows a case's photos and
place with the "mark handled" form (a note and an after-photo from the phone's camera), which posts to
POST /cases/{id}/move like every move, so the photo goes into the evidence store and the custody chain
exactly as through the API. Another team's case is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal, Role
from api.cases import workflow
from api.cases.reading import CaseFilter, get_case, list_cases
from api.errors import NotFound
from api.http.i18n import Translator
from api.http.pages.cases import (
    PAGE_TEMPLATES,
    CaseIdPath,
    case_id_of,
    dispatched_since,
    grid_cells,
    in_session,
    local_time,
    page_case_id,
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
MAX_TASKS = 500


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

    def work(session: Session) -> dict[str, Any]:
        cases, total = list_cases(
            session,
            principal=principal,
            filters=CaseFilter(status=[workflow.DISPATCHED]),
            per_page=MAX_TASKS,
            sort="last_seen",
            descending=False,
        )
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
            "since": dispatched_since(session, ids),
            "thumbs": thumbnails(session, ids),
            "cells": grid_cells(session),
            "done_number": done_number,
        }

    data = await in_session(services, work)
    now = utcnow()
    since: dict[int, datetime] = data["since"]
    cases = sorted(data["cases"], key=lambda c: (since.get(c.id) or c.updated_at, c.id))
    tasks = []
    for order, case in enumerate(cases):
        cell = data["cells"].get(case.grid_cell_id)
        tasks.append(
            {
                "case": case,
                "order": order,
                "thumb": data["thumbs"].get(case.id),
                "cell": cell,
                "dispatched": local_time(since.get(case.id), offset),
                "ago": ago(since.get(case.id), now, t),
            }
        )
    return render(
        request,
        "tasks/list.html",
        principal=principal,
        tasks=tasks,
        total=data["total"],
        done=t("tasks.done", number=data["done_number"]) if data["done_number"] else "",
        i18n_json=page_strings(t),
    )


@router.get("/tasks/{case_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, case_id: CaseIdPath, principal: Officer, services: ServicesDep
) -> Response:
    return await render_case(
        request,
        case_id=await page_case_id(services, case_id),
        principal=principal,
        services=services,
        template=PAGE_TEMPLATES["task"],
    )
