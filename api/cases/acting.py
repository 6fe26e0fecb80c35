"""Acting on cases: a move along the workflow, with history, custody and webhook deliveries."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.accounts.accounts import Principal
from api.cases import custody, webhooks, workflow
from api.cases.ingest import link_evidence
from api.cases.reading import case_summary, get_case
from api.storage.db import utcnow
from api.storage.evidence_store import StoredFile
from api.storage.models import Case, CaseEvent


class ForbiddenMove(PermissionError):
    pass


def transition(
    session: Session,
    principal: Principal,
    case_id: int,
    move: workflow.Move,
    *,
    photo: StoredFile | None = None,
) -> Case:
    """Move a case along the workflow, recording history, custody and webhook deliveries."""
    case = get_case(session, principal, case_id, lock=True)
    if move.target in workflow.STATUSES and not workflow.may_move(principal.role, move.target):
        raise ForbiddenMove(f"role {principal.role} may not move a case to {move.target}")
    workflow.check_move(case.status, move)
    now = utcnow()
    previous = case.status
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
            note=move.note,
        )
    )
    detail: dict[str, Any] = {"from": previous, "to": move.target, "reason": move.reason, "note": move.note}
    if photo is not None:
        link_evidence(session, case.id, None, [("after_photo", photo)])
        detail["after_photo"] = photo.sha256
    session.flush()
    custody.append(session, case_id=case.id, actor=principal.label, action="transition", detail=detail)
    if move.target in workflow.NOTIFY:
        webhooks.enqueue(session, event=f"case.{move.target}", case_id=case.id, payload=case_summary(case))
    return case
