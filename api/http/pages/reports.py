"""The periodic report (every role; enforcement: their team's cases and cells): last week, last month
or a range of days, in the district's local time (settings.timezone_offset_h, as the dashboard); the
numbers of GET /api/reports/period as tables, links to its CSV (plain, and for Excel), and a print style
for an A4 page.

A week runs Monday to Sunday, a month from its first day to its last; "last" is the latest one that
has ended. A day range is inclusive: its report ends at the local midnight after its last day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.accounts.accounts import ROLES, Principal
from api.cases import period_report, workflow
from api.http.i18n import Translator
from api.http.pages.cases import in_session
from api.http.pages.dashboard import SHOWN_MAX, utc_offset_text
from api.http.pages.render import render, translator
from api.http.pages.session import ServicesDep, person_with

router = APIRouter(include_in_schema=False)

Anyone = Annotated[Principal, Depends(person_with(*ROLES))]
FormText = Annotated[str, Query()]  # lenient: a bad value is a notice on the page, never a 422
RANGES = ("week", "month", "custom")


@dataclass
class ReportRange:
    """The chosen period as local days (first and last included), what was wrong with the form, and
    the days as typed (`typed_since`, `typed_until`): the form shows them again, so that a refused range
    can be corrected rather than typed anew (the report shown is last week's)."""

    kind: str
    first: date
    last: date
    errors: list[str] = field(default_factory=list)
    typed_since: str | None = None
    typed_until: str | None = None

    @property
    def form_since(self) -> str:
        return self.first.isoformat() if self.typed_since is None else self.typed_since

    @property
    def form_until(self) -> str:
        return self.last.isoformat() if self.typed_until is None else self.typed_until


def last_week(today: date) -> tuple[date, date]:
    """The latest Monday-to-Sunday week that has ended before `today`."""
    monday = today - timedelta(days=today.weekday() + 7)
    return monday, monday + timedelta(days=6)


def last_month(today: date) -> tuple[date, date]:
    """The latest calendar month that has ended before `today`."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def css_string(text: str) -> str:
    """`text` as a CSS string literal: a quote, a backslash, < and > (no text can end the <style>
    block) and anything unprintable written as an escape."""
    kept = (c if c.isprintable() and c not in '"\\<>' else f"\\{ord(c):x} " for c in text)
    return '"' + "".join(kept) + '"'


PAGE_MARK, PAGES_MARK = "\x00page\x00", "\x00pages\x00"


def page_margins_css(t: Translator, printed: str) -> str:
    """The printed report's page margins (Chromium's @page margin boxes): the time it was printed at
    the bottom left (`printed`, already in words), "page N of M" at the bottom right, in the page's
    language. reports.js writes the time again when the page is printed."""
    words = t("reports.print.page", page=PAGE_MARK, pages=PAGES_MARK)
    parts = []
    for piece in re.split(f"({PAGE_MARK}|{PAGES_MARK})", words):
        if piece == PAGE_MARK:
            parts.append("counter(page)")
        elif piece == PAGES_MARK:
            parts.append("counter(pages)")
        elif piece:
            parts.append(css_string(piece))
    box = "font-size: 7.5pt; color: #444; vertical-align: top; padding-top: 3mm;"
    return (
        f"@page {{ @bottom-left {{ content: {css_string(printed)}; {box} }}"
        f" @bottom-right {{ content: {' '.join(parts)}; {box} }} }}"
    )


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "…"


def _day(text: str, label: str, errors: list[str], t: Translator) -> date | None:
    """A local day of the form, 1970-2199 as every date the service takes; else named in `errors`."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors.append(t("reports.error.date", field=label, value=_shown(text)))
        return None
    first, last = period_report.FIRST_YEAR, period_report.LAST_YEAR
    if not first <= day.year <= last:
        errors.append(t("reports.error.year", field=label, value=_shown(text), first=first, last=last))
        return None
    return day


def read_range(kind: str, since: str, until: str, today: date, t: Translator) -> ReportRange:
    """The form's period; a bad custom range, or a range other than RANGES, is named in `errors` and last
    week shown instead (days sent with an unknown range are read as a custom range)."""
    week = last_week(today)
    if kind == "month":
        return ReportRange("month", *last_month(today))
    if kind != "custom" and not (since or until):
        # a range the form does not offer (a link typed or kept from elsewhere) is named
        unknown = [] if kind == "week" else [t("reports.error.range", value=_shown(kind))]
        return ReportRange("week", *week, errors=unknown)
    errors: list[str] = []
    first = _day(since, t("reports.form.since"), errors, t)
    last = _day(until, t("reports.form.until"), errors, t)
    if first is not None and last is not None:
        if last < first:
            errors.append(t("reports.error.order", since=first.isoformat(), until=last.isoformat()))
        elif (last - first).days >= period_report.MAX_PERIOD_DAYS:  # days included: one more
            errors.append(t("reports.error.long", days=period_report.MAX_PERIOD_DAYS))
        else:
            return ReportRange("custom", first, last)
    return ReportRange(
        "week", *week, errors=errors, typed_since=_typed(first, since), typed_until=_typed(last, until)
    )


def _typed(day: date | None, text: str) -> str:
    """A day of the form as it comes back after an error: the day read, or the text as typed."""
    return _shown(text.strip()) if day is None else day.isoformat()


def unended_notice(
    since: datetime, until: datetime, now: datetime, t: Translator, shown_at: str
) -> str | None:
    """What the page says of a period that has not ended at `now` (since, until and now naive UTC):
    its figures are those of `shown_at` (the district's local time, in words) and will change, or, a
    period not begun, that it holds nothing yet. Its "open at the end" are the cases open now either
    way. None for a period that has ended."""
    if now >= until:
        return None
    if now < since:
        return t("reports.unended.future")
    return t("reports.unended.running", when=shown_at)


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(
    request: Request,
    principal: Anyone,
    services: ServicesDep,
    range: FormText = "week",  # noqa: A002  (the form's field name)
    since: FormText = "",
    until: FormText = "",
) -> Response:
    t = translator(request)
    offset_h = services.settings.timezone_offset_h
    now_utc = datetime.now(UTC).replace(tzinfo=None)
    now = now_utc + timedelta(hours=offset_h)  # the district's local time
    chosen = read_range(range, since, until, now.date(), t)
    first, last = period_report.local_days(chosen.first, chosen.last, offset_h)

    def work(session: Session) -> period_report.PeriodReport:
        return period_report.period_report(session, since=first, until=last, principal=principal)

    report = await in_session(services, work)
    printed_at = now.strftime("%Y-%m-%d %H:%M")
    printed = t("reports.print.printed", when=printed_at, offset=utc_offset_text(offset_h))
    shown_at = t("reports.unended.when", when=printed_at, offset=utc_offset_text(offset_h))
    api_query = urlencode({"since": f"{first.isoformat()}Z", "until": f"{last.isoformat()}Z"})
    return render(
        request,
        "reports/page.html",
        principal=principal,
        chosen=chosen,
        unended=unended_notice(first, last, now_utc, t, shown_at),
        ranges=RANGES,
        report=report,
        offset=utc_offset_text(offset_h),
        csv_url="/api/reports/period.csv?" + api_query,
        # the Excel file for a person: its headings and categories in the page's language
        # the dashboard of the same local days, which counts them otherwise (the summary's note)
        dashboard_url="/dashboard?"
        + urlencode({"since": chosen.first.isoformat(), "until": chosen.last.isoformat()}),
        excel_csv_url="/api/reports/period.csv?"
        + api_query
        + "&"
        + urlencode({"flavour": "excel", "lang": t.lang}),
        reasons=workflow.REJECT_REASONS,
        unspecified=period_report.UNSPECIFIED,
        percent=period_report.whole_percent,
        printed_at=printed_at,
        offset_minutes=round(offset_h * 60),
        page_margins=page_margins_css(t, printed),
        category_name=lambda c: t(f"category.{c}") if t.has(f"category.{c}") else c,
    )
