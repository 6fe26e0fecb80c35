"""Acting on cases: a move along the workflow, with history, custody and webhook deliveries."""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

from sqlalchemy import Engine, event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction

from api.accounts.accounts import Principal
from api.cases import custody, review_labels, webhooks, workflow
from api.cases.ingest import link_evidence
from api.cases.reading import case_summary, get_case
from api.errors import InputError
from api.storage.db import make_sessionmaker, utcnow
from api.storage.evidence_store import EvidenceError, EvidenceFiles, StoredFile
from api.storage.models import Case, CaseEvent, EvidenceBlob, EvidenceLink, GridCell

log = logging.getLogger(__name__)

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
    store: EvidenceFiles,
    max_bytes: int,
) -> StoredFile:
    """Store the after-photo of a move, once the case is known to be visible to the caller (NotFound
    before anything is stored otherwise); a bad photo is a TransitionInputError naming "photo".

    The photo is tied to `session`'s transaction: when the move then fails (an illegal move, a
    role that may not make it, a commit the database refuses), a photo this call put into the store
    is removed again, unless some row references it by then (the store is content-addressed: the
    same bytes may belong to another case). A photo that was already stored is never removed.

    The store keeps PDFs too (an exhibit of an incident); an after-photo must be an image, since the
    verifier judges the place by it: a PDF is refused like any other file that is not an image."""
    get_case(session, principal=principal, case_id=case_id)
    try:
        stored = store.put_stream(photo, max_bytes=max_bytes)
    except EvidenceError as exc:
        raise workflow.TransitionInputError("photo", exc.reason) from None
    if stored.created:
        _remove_unless_committed(session, store, stored.sha256)
    if not stored.media_type.startswith("image/"):
        reason = f"not a JPEG, PNG, GIF or WebP image ({stored.media_type})"
        raise workflow.TransitionInputError("photo", reason)
    return stored


def _remove_unless_committed(session: Session, store: EvidenceFiles, sha256: str) -> None:
    """When the session's transaction ends without a commit, remove the stored file `sha256` unless
    a row references it (checked in a transaction of its own; kept when that check fails)."""
    state = {"committed": False, "done": False}

    def on_commit(_: Session) -> None:
        state["committed"] = True

    def on_end(ended: Session, transaction: SessionTransaction) -> None:
        if transaction.nested or transaction.parent is not None or state["done"]:
            return
        state["done"] = True
        if state["committed"]:
            return
        try:
            bind = ended.get_bind()
            engine = bind if isinstance(bind, Engine) else bind.engine
            with make_sessionmaker(engine, readonly=True)() as check:
                referenced = check.scalar(
                    select(EvidenceBlob.sha256).where(EvidenceBlob.sha256 == sha256).limit(1)
                ) or check.scalar(select(EvidenceLink.id).where(EvidenceLink.sha256 == sha256).limit(1))
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            log.warning(
                "after-photo %s of a failed move kept: its references cannot be read (%s)", sha256, cause
            )
            return
        if referenced is None and store.remove(sha256):
            log.info("after-photo %s of a failed move removed from the evidence store", sha256[:12])

    event.listen(session, "after_commit", on_commit)
    event.listen(session, "after_transaction_end", on_end)


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
    if move.target == workflow.DISPATCHED and move.team is None and case.team is None:
        # its position is in no grid cell (or it has none): dispatched as it is, no team would see it
        teams = ", ".join(dispatch_teams(session)) or "none: import the grid first"
        raise workflow.TransitionInputError(
            "team",
            f"case {case.number or case.id} belongs to no team (grid cell {case.grid_cell_id}): "
            f"name the team to dispatch it to (one of {teams})",
        )
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
    if (
        principal.kind == "user"
        and previous == workflow.PENDING_REVIEW
        and move.target in (workflow.FILED, workflow.REJECTED)
    ):
        # a review decision: kept with the frame it was made on (the review -> retrain loop); the
        # service's own rejection of a superseded case (api.jobs.superseding) says nothing of the
        # detection and is no training label
        what = "confirm" if move.target == workflow.FILED else review_labels.rejection(move.reason)
        review_labels.record_decision(
            session, case=case, actor=principal.label, what=what, reason=move.reason
        )
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


def team_has_cells(session: Session, team: str) -> bool:
    """Whether some grid cell belongs to the team (only such a team can be sent cases)."""
    return session.scalar(select(GridCell.id).where(GridCell.team == team).limit(1)) is not None


def no_cells_notice(team: str) -> str:
    """What an admin is told on adding an enforcement user whose team no grid cell names."""
    return (
        f"no grid cell belongs to team '{team}' yet: the user sees no case until an imported grid cell "
        "names that team (check the spelling against the grid's teams)"
    )


def _check_team(session: Session, team: str) -> None:
    """A case is dispatched only to a team that holds some grid cell."""
    if not team_has_cells(session, team):
        raise workflow.TransitionInputError("team", f"no grid cell belongs to team '{team}'")


def dispatched_team(note: str | None) -> tuple[str | None, str | None]:
    """(team, the user's note) of a dispatch's history note written by transition()."""
    if not note or not note.startswith(DISPATCHED_TO):
        return None, note
    first, _, rest = note.partition("\n")
    return first[len(DISPATCHED_TO) :], rest or None
