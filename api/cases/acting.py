"""Acting on cases: a move along the workflow, with history, custody and webhook deliveries."""

from __future__ import annotations

from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import custody, webhooks, workflow
from api.cases.ingest import link_evidence
from api.cases.reading import case_summary, get_case
from api.errors import InputError
from api.storage.db import utcnow
from api.storage.evidence_store import EvidenceError, EvidenceStore, StoredFile
from api.storage.models import Case, CaseEvent, GridCell

# the first line of a dispatch's history note when it names the team: "dispatched to team-x"
DISPATCHED_TO = "dispatched to "


class ForbiddenMove(InputError):
    """The caller's role may not move a case to that status (403)."""

    status = 403

    def __init__(self, role: str, target: str) -> None:
        super().__init__("to", f"role {role} may not move a case to {target}")


def store_after_photo(
    session: Session,
    *,
    principal: Principal,
    case_id: int,
    photo: BinaryIO,
    store: EvidenceStore,
    max_bytes: int,
) -> StoredFile:
    """Store the after-photo of a move, once the case is known to be visible to the caller (NotFound
    before anything is stored otherwise); a bad photo is a TransitionInputError naming "photo"."""
    get_case(session, principal=principal, case_id=case_id)
    try:
        return store.put_stream(photo, max_bytes=max_bytes)
    except EvidenceError as exc:
        raise workflow.TransitionInputError("photo", exc.reason) from None


def transition(
    session: Session,
    *,
    principal: Principal,
    case_id: int,
    move: workflow.Move,
    photo: StoredFile | None = None,
) -> Case:
    """Move a case along the workflow, recording history, custody and webhook deliveries."""
    case = get_case(session, principal=principal, case_id=case_id, lock=True)
    if move.target in workflow.STATUSES and not workflow.may_move(principal.role, move.target):
        raise ForbiddenMove(principal.role, move.target)
    workflow.check_move(case.status, move)
    now = utcnow()
    previous = case.status
    previous_team = case.team
    note = move.note
    if move.team is not None:  # check_move allows a team only when dispatching
        _check_team(session, move.team)
        case.team = move.team
        note = DISPATCHED_TO + move.team + (f"\n{move.note}" if move.note else "")
    case.status = move.target
    case.updated_at = now
    if move.target == workflow.REJECTED:
        case.reject_reason = move.reason
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor=principal.label,
            action=move.target,
            from_status=previous,
            to_status=move.target,
            reason=move.reason,
            note=note,
        )
    )
    detail: dict[str, Any] = {"from": previous, "to": move.target, "reason": move.reason, "note": move.note}
    if move.team is not None:
        detail["team"] = move.team
        detail["team_before"] = previous_team
    if photo is not None:
        link_evidence(session, case.id, None, [("after_photo", photo)])
        detail["after_photo"] = photo.sha256
    session.flush()
    custody.append(session, case_id=case.id, actor=principal.label, action="transition", detail=detail)
    if move.target in workflow.NOTIFY:
        webhooks.enqueue(
            session, event=f"case.{move.target}", case_id=case.id, payload=case_summary(case).to_json()
        )
    return case


def dispatch_teams(session: Session) -> list[str]:
    """The teams a case may be dispatched to: those of the grid cells, sorted."""
    return list(session.scalars(select(GridCell.team).distinct().order_by(GridCell.team)))


def _check_team(session: Session, team: str) -> None:
    """A case is dispatched only to a team that holds some grid cell."""
    if session.scalar(select(GridCell.id).where(GridCell.team == team).limit(1)) is None:
        raise workflow.TransitionInputError("team", f"no grid cell belongs to team '{team}'")


def dispatched_team(note: str | None) -> tuple[str | None, str | None]:
    """(team, the user's note) of a dispatch's history note written by transition()."""
    if not note or not note.startswith(DISPATCHED_TO):
        return None, note
    first, _, rest = note.partition("\n")
    return first[len(DISPATCHED_TO) :], rest or None
