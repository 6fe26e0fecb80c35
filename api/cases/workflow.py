"""The case workflow, in the spirit of GB/T 30428.8 (立案, 派遣, 处置, 核查, 结案).

pending_review -> filed -> dispatched -> handled -> verified -> closed; pending_review -> rejected
(with a reason); handled -> dispatched again when verification finds the problem still there.
A new sighting of a closed case within the merge window, last seen after the case was closed,
reopens it to pending_review (a recurrence); one seen by then is evidence and leaves it closed. That
is done by case ingestion (api.cases.ingest), not by a user action. Pure data and functions: no
database here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from api.accounts.accounts import Role
from api.errors import InputError


class Status(StrEnum):
    """A case's place in the workflow (stored and sent as its value)."""

    PENDING_REVIEW = "pending_review"
    FILED = "filed"
    DISPATCHED = "dispatched"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    """Why a case under review was rejected."""

    FALSE_POSITIVE = "false_positive"
    DUPLICATE = "duplicate"
    NOT_A_VIOLATION = "not_a_violation"
    EXEMPT = "exempt"


PENDING_REVIEW = Status.PENDING_REVIEW
FILED = Status.FILED
DISPATCHED = Status.DISPATCHED
HANDLED = Status.HANDLED
VERIFIED = Status.VERIFIED
CLOSED = Status.CLOSED
REJECTED = Status.REJECTED

STATUSES: tuple[Status, ...] = tuple(Status)
OPEN_STATUSES = (PENDING_REVIEW, FILED, DISPATCHED, HANDLED, VERIFIED)

REJECT_REASONS: tuple[RejectReason, ...] = tuple(RejectReason)

# status -> statuses a user may move it to
TRANSITIONS: dict[str, tuple[Status, ...]] = {
    PENDING_REVIEW: (FILED, REJECTED),
    FILED: (DISPATCHED,),
    DISPATCHED: (HANDLED,),
    HANDLED: (VERIFIED, DISPATCHED),
    VERIFIED: (CLOSED,),
    CLOSED: (),
    REJECTED: (),
}

_OFFICE = (Role.ADMIN, Role.OPERATOR)

# target status -> roles that may move a case there
ROLES_FOR: dict[str, tuple[Role, ...]] = {
    FILED: _OFFICE,
    REJECTED: _OFFICE,
    DISPATCHED: _OFFICE,
    HANDLED: (*_OFFICE, Role.ENFORCEMENT),
    VERIFIED: _OFFICE,
    CLOSED: _OFFICE,
}

# the service's own role (api.accounts.accounts.SYSTEM, the upload worker) and the one move it makes:
# rejecting the cases of an upload's earlier run that a resend with a corrected start time or track
# superseded (api.jobs.superseding); it never files, dispatches or closes a case
SYSTEM_ROLE = "system"
SYSTEM_MOVES = (REJECTED,)

# statuses that notify webhooks when entered
NOTIFY = (FILED, DISPATCHED, CLOSED)


class TransitionError(InputError):
    """A move the workflow does not allow from the case's current status (409); the body names the
    current status and the allowed ones."""

    status = 409

    def __init__(self, current: str, target: str, allowed: tuple[str, ...]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none"
        super().__init__(
            "to",
            f"cannot move a case from {current} to {target}; allowed from {current}: {allowed_text}",
            extra={"current": current, "allowed": list(allowed)},
        )
        self.current = current
        self.target = target
        self.allowed = allowed


class TransitionInputError(InputError):
    """A move that lacks what it needs (a reason, a note, an after-photo); names the field."""


@dataclass(frozen=True, slots=True)
class Move:
    """A move a user asks for. `team`: when dispatching, the team the case goes to (a team of some
    grid cell; None keeps the case's team, the one of its grid cell)."""

    target: str
    reason: str | None = None
    note: str | None = None
    has_photo: bool = False
    team: str | None = None


def check_move(current: str, move: Move) -> None:
    """Raise TransitionError / TransitionInputError when the move is not allowed as given."""
    if move.target not in STATUSES:
        raise TransitionInputError("to", f"unknown status '{move.target}' (one of {', '.join(STATUSES)})")
    allowed = TRANSITIONS[current]
    if move.target not in allowed:
        raise TransitionError(current, move.target, allowed)
    if move.target == REJECTED and move.reason not in REJECT_REASONS:
        raise TransitionInputError("reason", f"rejecting needs a reason, one of {', '.join(REJECT_REASONS)}")
    if move.target == HANDLED:
        if not (move.note and move.note.strip()):
            raise TransitionInputError("note", "handling needs a note saying what was done")
        if not move.has_photo:
            raise TransitionInputError("photo", "handling needs an after-photo")
    if current == HANDLED and move.target == DISPATCHED and not (move.note and move.note.strip()):
        raise TransitionInputError("note", "sending a case back needs a note saying why")
    if move.team is not None and move.target != DISPATCHED:
        raise TransitionInputError("team", "a team is given only when dispatching a case")


def may_move(role: str, target: str) -> bool:
    return role in ROLES_FOR.get(target, ()) or (role == SYSTEM_ROLE and target in SYSTEM_MOVES)
