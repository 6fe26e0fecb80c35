"""The dashboard (every role): case counts and trends by category, status, grid cell and day.
Each count links to the case list filtered to exactly the cases it counts (StatsFilter.cases_query).

The filter form (dates, category) is a GET form; the page turns it into the query of GET /api/stats
(dates as local days at the service's UTC offset, the same days /api/stats counts by), and
dashboard.js draws the charts and the tables of totals from that API's answer, so the page shows
exactly the API's numbers, with the same visibility (enforcement: their team's cases only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.accounts.accounts import ROLES, Principal
from api.cases import period_report, workflow
from api.cases.review import known_categories
from api.cases.wall_time import held_in_range
from api.http.i18n import Translator
from api.http.pages.cases import in_session
from api.http.pages.render import render, script_json, translator
from api.http.pages.session import ServicesDep, person_with
from api.storage.models import GridCell

router = APIRouter(include_in_schema=False)

Anyone = Annotated[Principal, Depends(person_with(*ROLES))]
FormText = Annotated[str, Query()]  # lenient: any text; a bad value is a notice on the page, never a 422
SHOWN_MAX = 64  # characters of a bad value that its notice quotes
PRESET_DAYS = (7, 30)


def utc_offset_text(offset_h: float) -> str:
    """+08:00 for 8.0, -03:30 for -3.5."""
    minutes = round(offset_h * 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass
class StatsFilter:
    """The dashboard's filter form, checked: what it asks /api/stats, what was wrong with it, and the
    days as typed (`typed_since`, `typed_until`), which the form shows again after an error."""

    since: date | None = None
    until: date | None = None
    category: str = ""
    errors: list[str] = field(default_factory=list)
    typed_since: str = ""
    typed_until: str = ""

    def stats_query(self, offset_h: float) -> str:
        """The query of /api/stats: from local midnight before `since` to the last microsecond of `until`
        (UTC), held in the range of times the service takes (1970-01-01 begins before it at UTC+8)."""
        shift = timedelta(hours=offset_h)
        params: dict[str, str] = {}
        if self.since:
            start = held_in_range(datetime.combine(self.since, time.min) - shift)
            params["since"] = f"{start.isoformat()}Z"
        if self.until:
            end = held_in_range(datetime.combine(self.until, time.max) - shift)
            params["until"] = f"{end.isoformat()}Z"
        if self.category:
            params["category"] = self.category
        return urlencode(params)

    def cases_query(self) -> str:
        """The query of the case list (/cases) that lists the cases these counts count: first seen
        on the chosen local days (the list reads a day at the same offset), of the chosen category,
        without those the service rejected as superseded (which /api/stats counts nowhere). A count's
        link adds its own filter (status, category, grid cell, day): dashboard.js."""
        params = {"superseded": "false"}
        if self.since:
            params["first_seen_since"] = self.since.isoformat()
        if self.until:
            params["first_seen_until"] = self.until.isoformat()
        if self.category:
            params["category"] = self.category
        return urlencode(params)


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "…"


def _day(text: str, label: str, errors: list[str], t: Translator) -> date | None:
    """A day of the form, of the years every date the service takes has (1970-2199); else left out
    and named in `errors`."""
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors.append(t("dashboard.error.date", field=label, value=_shown(text)))
        return None
    first, last = period_report.FIRST_YEAR, period_report.LAST_YEAR
    if not first <= day.year <= last:
        errors.append(t("dashboard.error.year", field=label, value=_shown(text), first=first, last=last))
        return None
    return day


def read_filter(
    since: str, until: str, category: str, t: Translator, categories: tuple[str, ...]
) -> StatsFilter:
    """The form's values; a bad one is left out and named in `errors` (never a 422 page).
    categories: those the service knows (review.known_categories)."""
    errors: list[str] = []
    chosen = StatsFilter(
        since=_day(since, t("dashboard.filter.since"), errors, t),
        until=_day(until, t("dashboard.filter.until"), errors, t),
        errors=errors,
    )
    if category and category not in categories:
        errors.append(t("dashboard.error.category", value=_shown(category)))
    else:
        chosen.category = category
    # the form shows the days again as read, or as typed where they were no day
    chosen.typed_since = chosen.since.isoformat() if chosen.since else _shown(since.strip())
    chosen.typed_until = chosen.until.isoformat() if chosen.until else _shown(until.strip())
    if chosen.since and chosen.until and chosen.since > chosen.until:
        errors.append(t("dashboard.error.order", since=chosen.typed_since, until=chosen.typed_until))
        chosen.since = chosen.until = None
    return chosen


def cell_names(session: Session) -> dict[str, str]:
    """Every grid cell's name by its id: the charts and tables name a cell as the map and the report
    do, not by its code alone (the grid, with its names, is every role's: GET /api/grids)."""
    return {cell_id: name for cell_id, name in session.execute(select(GridCell.id, GridCell.name))}


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(
    request: Request,
    principal: Anyone,
    services: ServicesDep,
    since: FormText = "",
    until: FormText = "",
    category: FormText = "",
) -> Response:
    t = translator(request)
    categories = await in_session(services, known_categories)
    names = await in_session(services, cell_names)
    chosen = read_filter(since, until, category, t, categories)
    offset_h = services.settings.timezone_offset_h
    offset = utc_offset_text(offset_h)
    today = (datetime.now(UTC) + timedelta(hours=offset_h)).date()
    presets = [
        {
            "label": t("dashboard.range.days", days=days),
            "query": urlencode(
                {"since": (today - timedelta(days=days - 1)).isoformat(), "until": today.isoformat()}
                | ({"category": chosen.category} if chosen.category else {})
            ),
        }
        for days in PRESET_DAYS
    ]
    i18n = {
        **t.subset("dashboard."),
        **t.subset("category."),
        **t.subset("status."),
        **t.subset("error."),
        **t.subset("common."),
    }
    return render(
        request,
        "dashboard/page.html",
        principal=principal,
        chosen=chosen,
        categories=categories,
        presets=presets,
        all_query=urlencode({"category": chosen.category} if chosen.category else {}),
        offset=offset,
        stats_url="/api/stats?" + chosen.stats_query(offset_h),
        cases_query=chosen.cases_query(),
        statuses=workflow.STATUSES,
        open_statuses=workflow.OPEN_STATUSES,
        i18n_json=script_json(i18n),
        cell_names_json=script_json(names),
    )
