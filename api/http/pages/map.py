"""The grid map (every role): the imported grid cells coloured by their open cases, the cases with a
position as points, patrol uploads' GPS tracks as lines (staff only, as the API allows), and a side
panel listing the cases of the cell clicked: its open cases first, then its latest closed or rejected
ones (a busy cell's closed past must not push out what staff and teams still act on).

The page is a shell; map.js draws it with ECharts from the API the other clients use (GET /api/grids,
/api/cases, /api/uploads, /api/uploads/{id}/track), so what a person sees on it is what the API lets
them see (enforcement: their team's cases only).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.accounts.accounts import ROLES, Principal, Role
from api.cases import workflow
from api.http.pages.render import render, script_json, translator
from api.http.pages.session import ServicesDep, person_with

router = APIRouter(include_in_schema=False)

Anyone = Annotated[Principal, Depends(person_with(*ROLES))]
# who may read uploads' tracks (api.http.deps.Staff): the page asks for them only for these
TRACK_READERS = (Role.ADMIN, Role.OPERATOR, Role.ENFORCEMENT)


@router.get("/map", response_class=HTMLResponse)
async def map_page(request: Request, principal: Anyone, services: ServicesDep) -> Response:
    t = translator(request)
    i18n = {
        **t.subset("map."),
        **t.subset("category."),
        **t.subset("status."),
        **t.subset("error."),
        **t.subset("common."),
    }
    return render(
        request,
        "map/page.html",
        principal=principal,
        show_tracks=principal.role in TRACK_READERS,
        open_statuses=workflow.OPEN_STATUSES,
        # the cell panel lists open cases first, then recent ones in these (closed, rejected)
        closed_statuses=[s for s in workflow.STATUSES if s not in workflow.OPEN_STATUSES],
        # a case's time in the cell panel is shown at the site's offset, like every page's times
        offset_minutes=round(services.settings.timezone_offset_h * 60),
        i18n_json=script_json(i18n),
    )
