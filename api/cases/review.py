"""The review queue: operators decide pending cases one at a time.

Each operator holds the case they are looking at (and the next one, loaded ahead) by a claim with a
lease (table review_claims); the queue hands out the oldest pending case nobody else holds, so two
operators on the same queue never get the same case at once. Taking a claim is one atomic upsert
(INSERT ... ON CONFLICT DO UPDATE ... WHERE the claim is free, expired or already ours), so two
operators asking at the same instant cannot both win it, on SQLite or PostgreSQL. The page renews the
claims it holds while it is open (`renew`); only a claim still the operator's is renewed, never one
another operator took once it lapsed.

Decisions are workflow moves (confirm = pending_review -> filed; reject, with a reason), recorded like
any other in the history, the custody chain and the webhooks. An operator may undo their own last
decision on a case within UNDO_WINDOW_S, as long as nobody has moved the case since; the undo is
recorded too (nothing is erased). Changing the category of a pending case is recorded the same way.
Each decision, undo and category change is also kept with the frame it was made on
(api.cases.review_labels), the training data of the review -> retrain loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import custody, review_labels, workflow
from api.cases.acting import transition
from api.cases.history_notes import recategorized_note, undo_note
from api.cases.reading import get_case
from api.errors import InputError
from api.storage.db import table_of, utcnow
from api.storage.models import Case, CaseEvent, ReviewClaim

CATEGORIES = ("illegal_parking", "street_vending", "piled_debris")
# a claim lapses when its operator walks away (the page renews it while open); the queue then hands the
# case on. The service's is settings.review_lease_s
LEASE_S = 120.0
UNDO_WINDOW_S = 600.0
CANDIDATES = 16  # pending cases looked at per claim attempt (the oldest first)
DECISIONS = ("confirm", "reject")


class ReviewInputError(InputError):
    """A review action that cannot be done as asked; names the field."""


class UndoRefused(InputError):
    """Nothing of this operator's to undo on the case (HTTP 409)."""

    status = 409


class NotInReview(InputError):
    """The case left the review queue (someone decided it) before this action (HTTP 409); the body
    names its status now (`current`), as the workflow's 409 does."""

    status = 409


def _claims_insert(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _take(session: Session, *, case_id: int, holder: str, now: datetime, lease_s: float) -> bool:
    """Hold this case for `holder` unless someone else holds it; True when it is now ours."""
    table = table_of(ReviewClaim)
    expires = now + timedelta(seconds=lease_s)
    stmt = (
        _claims_insert(session)(table)
        .values(case_id=case_id, holder=holder, claimed_at=now, expires_at=expires)
        .on_conflict_do_update(
            index_elements=[table.c.case_id],
            set_={"holder": holder, "claimed_at": now, "expires_at": expires},
            where=or_(table.c.expires_at < now, table.c.holder == holder),
        )
        .returning(table.c.holder)
    )
    row = session.execute(stmt).first()
    return row is not None and row.holder == holder


def claim_next(
    session: Session,
    *,
    principal: Principal,
    skip: Sequence[int] = (),
    lease_s: float = LEASE_S,
) -> Case | None:
    """The oldest pending case (by last sighting) that nobody else holds, now held by this operator
    for lease_s; None when the queue is empty. `skip`: cases this operator passed over or already has
    on screen. Commits nothing itself."""
    holder = principal.label
    now = utcnow()
    stmt = (
        select(Case.id)
        .outerjoin(ReviewClaim, ReviewClaim.case_id == Case.id)
        .where(
            Case.status == workflow.PENDING_REVIEW,
            or_(ReviewClaim.case_id.is_(None), ReviewClaim.expires_at < now, ReviewClaim.holder == holder),
        )
        .order_by(Case.last_seen.asc(), Case.id.asc())
        .limit(CANDIDATES)
    )
    if skip:
        stmt = stmt.where(Case.id.not_in(list(skip)))
    for case_id in list(session.scalars(stmt)):
        if _take(session, case_id=case_id, holder=holder, now=now, lease_s=lease_s):
            return get_case(session, principal=principal, case_id=case_id)
    return None


def renew(
    session: Session,
    *,
    principal: Principal,
    case_ids: Sequence[int],
    lease_s: float = LEASE_S,
    retake: bool = False,
) -> list[int]:
    """Hold again for lease_s those of `case_ids` this operator still holds (their claim is theirs,
    lapsed or not, and the case still awaits review); the ids renewed. A claim another operator took
    once this one lapsed stays theirs, and a case released or decided is not claimed again: the page
    learns that it lost those. With `retake` (a page back from an idle pause, which released its
    cases) a released case still awaiting review that nobody else holds is claimed again too.
    Commits nothing itself."""
    if not case_ids:
        return []
    now = utcnow()
    pending = select(Case.id).where(Case.id.in_(list(case_ids)), Case.status == workflow.PENDING_REVIEW)
    if retake:
        for case_id in list(session.scalars(pending)):
            _take(session, case_id=case_id, holder=principal.label, now=now, lease_s=lease_s)
    ours = (ReviewClaim.holder == principal.label) & ReviewClaim.case_id.in_(pending)
    session.execute(
        update(ReviewClaim)
        .where(ours)
        .values(expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(select(ReviewClaim.case_id).where(ours)))


def release(session: Session, *, principal: Principal, case_id: int) -> None:
    """Give back this operator's claim on a case (skipped, or decided)."""
    session.execute(
        delete(ReviewClaim).where(ReviewClaim.case_id == case_id, ReviewClaim.holder == principal.label)
    )


def waiting_elsewhere(
    session: Session, *, principal: Principal, skip: Sequence[int]
) -> tuple[list[int], int]:
    """Why the queue hands this operator no case although cases await review: the pending cases among
    `skip` that nobody else holds (passed over by the operator, or on their screen), oldest first, and
    the number of pending cases held by another operator's live claim."""
    now = utcnow()
    others = (ReviewClaim.holder != principal.label) & (ReviewClaim.expires_at >= now)
    held = int(
        session.scalar(
            select(func.count())
            .select_from(Case)
            .join(ReviewClaim, ReviewClaim.case_id == Case.id)
            .where(Case.status == workflow.PENDING_REVIEW, others)
        )
        or 0
    )
    if not skip:
        return [], held
    free = (
        select(Case.id)
        .outerjoin(ReviewClaim, ReviewClaim.case_id == Case.id)
        .where(
            Case.status == workflow.PENDING_REVIEW,
            Case.id.in_(list(skip)),
            or_(ReviewClaim.case_id.is_(None), ~others),
        )
        .order_by(Case.last_seen.asc(), Case.id.asc())
    )
    return list(session.scalars(free)), held


def pending_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(Case.status == workflow.PENDING_REVIEW)) or 0)


def decide(
    session: Session,
    *,
    principal: Principal,
    case_id: int,
    decision: str,
    reason: str | None = None,
    note: str | None = None,
) -> Case:
    """Confirm (file) or reject a pending case; a case someone else already decided is the workflow's
    409 (TransitionError). Releases this operator's claim. Commits nothing itself."""
    if decision not in DECISIONS:
        raise ReviewInputError("decision", f"one of {', '.join(DECISIONS)}")
    target = workflow.FILED if decision == "confirm" else workflow.REJECTED
    move = workflow.Move(target=target, reason=reason, note=note)
    case = transition(session, principal=principal, case_id=case_id, move=move)
    release(session, principal=principal, case_id=case_id)
    return case


def undo_last(session: Session, *, principal: Principal, case_id: int, lease_s: float = LEASE_S) -> Case:
    """Put a case this operator confirmed or rejected back into review, when that decision is the
    case's last event and is under UNDO_WINDOW_S old. The case is held for the operator again."""
    case = get_case(session, principal=principal, case_id=case_id, lock=True)
    last = session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc()).limit(1)
    ).first()
    now = utcnow()
    if (
        last is None
        or last.actor != principal.label
        or last.to_status not in (workflow.FILED, workflow.REJECTED)
        or last.from_status != workflow.PENDING_REVIEW
        or case.status != last.to_status
        or last.at < now - timedelta(seconds=UNDO_WINDOW_S)
    ):
        raise UndoRefused(
            "case_id", f"case {case.number} has no decision of yours to undo (or it was moved on since)"
        )
    previous = case.status
    case.status = workflow.PENDING_REVIEW
    case.reject_reason = None
    case.updated_at = now
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor=principal.label,
            action="undo",
            from_status=previous,
            to_status=workflow.PENDING_REVIEW,
            reason=None,
            note=undo_note(last.action),
        )
    )
    session.flush()
    custody.append(
        session,
        case_id=case.id,
        actor=principal.label,
        action="undo",
        detail={"from": previous, "to": workflow.PENDING_REVIEW, "undid_event": last.id},
    )
    review_labels.record_decision(session, case=case, actor=principal.label, what="undo")
    _take(session, case_id=case.id, holder=principal.label, now=now, lease_s=lease_s)
    return case


def known_categories(session: Session) -> tuple[str, ...]:
    """The built-in categories, then in name order those of a site's own rules that stored cases carry
    (a site config may add a rule; the service learns its category from the incidents it sends)."""
    stored = set(session.scalars(select(Case.category).distinct())) - set(CATEGORIES)
    return CATEGORIES + tuple(sorted(stored))


def change_category(session: Session, *, principal: Principal, case_id: int, category: str) -> Case:
    """Correct the category of a case still in review (the detector named the wrong problem): to a
    built-in category or one that stored cases already carry (`known_categories`)."""
    if (
        category not in CATEGORIES
        and session.scalar(select(Case.id).where(Case.category == category).limit(1)) is None
    ):
        raise ReviewInputError("category", f"one of {', '.join(known_categories(session))}")
    case = get_case(session, principal=principal, case_id=case_id, lock=True)
    if case.status != workflow.PENDING_REVIEW:
        raise NotInReview(
            "case_id",
            f"case {case.number} is {case.status} now, no longer in review",
            extra={"current": case.status},
        )
    if case.category == category:
        return case
    previous = case.category
    now = utcnow()
    case.category = category
    case.updated_at = now
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor=principal.label,
            action="recategorized",
            from_status=case.status,
            to_status=case.status,
            reason=None,
            note=recategorized_note(previous, category),
        )
    )
    session.flush()
    custody.append(
        session,
        case_id=case.id,
        actor=principal.label,
        action="recategorized",
        detail={"from": previous, "to": category},
    )
    review_labels.record_decision(
        session,
        case=case,
        actor=principal.label,
        what="recategorise",
        category_from=previous,
        category_to=category,
    )
    return case
