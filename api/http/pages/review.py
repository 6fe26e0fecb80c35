"""The review queue page and its fragments (operators and admins).

GET /review renders the page with the first case the operator now holds; GET /review/next returns the
next card (an HTML fragment) for review.js to load ahead, or to check again while the queue is empty;
decisions, undo, category changes, skips and the renewal of the claims the page holds (POST
/review/claims, every third of the lease while the page is in sight) are POSTs with the session's CSRF
token. Every action is the case domain's (api.cases.review), so the history, custody chain and webhooks
are the same as through the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.accounts.accounts import Principal
from api.cases import review, review_labels, workflow
from api.cases.reading import get_case
from api.http.pages.cases import offset_label, site_offset
from api.http.pages.render import environment, render, script_json, translator
from api.http.pages.session import ServicesDep, person_with
from api.http.pages.views import card_view
from api.services import Services
from api.storage.models import CATEGORY_MAX, MAX_ID, Case

router = APIRouter(include_in_schema=False)

Reviewer = Annotated[Principal, Depends(person_with("admin", "operator"))]
# the case a review action names (the page's script sends it): an id out of range is a 422 naming it
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]


MAX_RENEW = 8  # ids in one renewal: the page sends two (the case on screen and the one loaded ahead)


def _claimed_ids(text: str) -> list[int]:
    """The case ids of a renewal, comma-separated; anything else is a 422 naming `cases`."""
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) <= MAX_ID:
            raise review.ReviewInputError("cases", f"case ids from 1 to {MAX_ID}, comma-separated: {part!r}")
        ids.append(int(part))
    if len(ids) > MAX_RENEW:
        raise review.ReviewInputError("cases", f"at most {MAX_RENEW} case ids, got {len(ids)}")
    return ids


def _skip_list(text: str) -> list[int]:
    ids = []
    for part in text.split(",")[-200:]:  # the newest entries are last
        part = part.strip()
        if part.isdigit() and 0 < int(part) <= MAX_ID:
            ids.append(int(part))
    return ids


def _card_html(
    request: Request,
    session: Session,
    case: Case | None,
    *,
    principal: Principal,
    site: timezone,
    skip: Sequence[int] = (),
) -> str:
    """The card of `case` (None: the queue is empty), its latest frame with the boxes operators
    corrected on it, if they did, its times at the site's offset (`site`) as the case list and the case
    page show them, with the camera's local time after them where its offset is another; it carries
    the number of cases awaiting review now (data-pending) for review.js to show in the page's
    heading. The empty card says why cases that await review are
    not handed out: those among `skip` still pending (data-waiting: review.js says which of them the
    operator skipped, and offers them again) and those held by another operator's claim."""
    t = translator(request)
    view = None
    waiting: list[int] = []
    held = 0
    if case is not None:
        corrected = review_labels.corrected_frames(session, sightings=case.sightings[-1:])
        view = card_view(case, t, corrected, site=site)
    else:
        waiting, held = review.waiting_elsewhere(session, principal=principal, skip=skip)
    return (
        environment()
        .get_template("review/card.html")
        .render(
            t=t,
            case=view.case if view else None,
            frame=view.frame if view else None,
            crop=view.crop if view else None,
            strip=view.strip if view else [],
            facts=view.facts if view else {},
            pending=review.pending_count(session),
            offset_label=offset_label(site),
            waiting=waiting,
            held=held,
        )
    )


def _in_session(services: Services, work):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        with services.factory() as session:
            try:
                result = work(session)
                session.commit()
                return result
            except BaseException:
                session.rollback()
                raise

    return run_in_threadpool(run)


@router.get("/review", response_class=HTMLResponse)
async def review_page(request: Request, principal: Reviewer, services: ServicesDep) -> Response:
    def work(session: Session) -> tuple[str, int, tuple[str, ...]]:
        case = review.claim_next(session, principal=principal, lease_s=services.settings.review_lease_s)
        return (
            _card_html(request, session, case, principal=principal, site=site_offset(services)),
            review.pending_count(session),
            review.known_categories(session),
        )

    card, pending, categories = await _in_session(services, work)
    t = translator(request)
    i18n = {
        **t.subset("review."),
        **t.subset("reason."),
        **t.subset("category."),
        **t.subset("error."),
        **t.subset("status."),
    }
    return render(
        request,
        "review/page.html",
        principal=principal,
        card=card,
        pending=pending,
        reasons=workflow.REJECT_REASONS,
        categories=categories,
        lease_s=services.settings.review_lease_s,
        idle_s=services.settings.review_idle_s,
        i18n_json=script_json(i18n),
    )


@router.get("/review/next", response_class=HTMLResponse)
async def next_card(request: Request, principal: Reviewer, services: ServicesDep, skip: str = "") -> Response:
    skipped = _skip_list(skip)
    html = await _in_session(
        services,
        lambda session: _card_html(
            request,
            session,
            review.claim_next(
                session, principal=principal, skip=skipped, lease_s=services.settings.review_lease_s
            ),
            principal=principal,
            site=site_offset(services),
            skip=skipped,
        ),
    )
    return HTMLResponse(html)


@router.post("/review/{case_id}/decision")
async def decision(
    case_id: CaseId,
    principal: Reviewer,
    services: ServicesDep,
    decision: Annotated[str, Form(max_length=16)],
    reason: Annotated[str | None, Form(max_length=32)] = None,
) -> Response:
    def work(session: Session) -> dict[str, object]:
        case = review.decide(session, principal=principal, case_id=case_id, decision=decision, reason=reason)
        # the cases awaiting review once this decision is made, for the page's heading
        return {
            "case_id": case.id,
            "number": case.number,
            "status": case.status,
            "pending": review.pending_count(session),
        }

    return JSONResponse(await _in_session(services, work))


@router.post("/review/{case_id}/undo", response_class=HTMLResponse)
async def undo(request: Request, case_id: CaseId, principal: Reviewer, services: ServicesDep) -> Response:
    def work(session: Session) -> str:
        review.undo_last(
            session, principal=principal, case_id=case_id, lease_s=services.settings.review_lease_s
        )
        return _card_html(
            request,
            session,
            get_case(session, principal=principal, case_id=case_id),
            principal=principal,
            site=site_offset(services),
        )

    return HTMLResponse(await _in_session(services, work))


@router.post("/review/{case_id}/category", response_class=HTMLResponse)
async def category(
    request: Request,
    case_id: CaseId,
    principal: Reviewer,
    services: ServicesDep,
    category: Annotated[str, Form(max_length=CATEGORY_MAX)],
) -> Response:
    def work(session: Session) -> str:
        review.change_category(session, principal=principal, case_id=case_id, category=category)
        return _card_html(
            request,
            session,
            get_case(session, principal=principal, case_id=case_id),
            principal=principal,
            site=site_offset(services),
        )

    return HTMLResponse(await _in_session(services, work))


@router.post("/review/{case_id}/release")
async def release(case_id: CaseId, principal: Reviewer, services: ServicesDep) -> Response:
    await _in_session(services, lambda session: review.release(session, principal=principal, case_id=case_id))
    return Response(status_code=204)


@router.post("/review/claims")
async def renew_claims(
    principal: Reviewer,
    services: ServicesDep,
    cases: Annotated[str, Form(max_length=200)] = "",
    retake: Annotated[bool, Form()] = False,
) -> Response:
    """Renew the page's claims (`cases`: the ids on screen and loaded ahead): `held`, those renewed;
    `lost`, the others (another operator took the case once the claim lapsed, or it left the queue).
    `retake`: the page is back from an idle pause that released them; those nobody took are held again."""
    ids = _claimed_ids(cases)

    def work(session: Session) -> dict[str, list[int]]:
        lease_s = services.settings.review_lease_s
        held = review.renew(session, principal=principal, case_ids=ids, lease_s=lease_s, retake=retake)
        return {"held": held, "lost": sorted(set(ids) - set(held))}

    return JSONResponse(await _in_session(services, work))
