"""The case workflow, in the spirit of GB/T 30428.8 (立案, 派遣, 处置, 核查, 结案).

pending_review -> filed -> dispatched -> handled -> verified -> closed; pending_review -> rejected
(with a reason); handled -> dispatched again when verification finds the problem still there.
A new sighting of a closed case within the merge window reopens it to pending_review (a recurrence);
that is done by case ingestion, not by a user action. Pure data and functions: no database here.
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING_REVIEW = "pending_review"
FILED = "filed"
DISPATCHED = "dispatched"
HANDLED = "handled"
VERIFIED = "verified"
CLOSED = "closed"
REJECTED = "rejected"

STATUSES = (PENDING_REVIEW, FILED, DISPATCHED, HANDLED, VERIFIED, CLOSED, REJECTED)
OPEN_STATUSES = (PENDING_REVIEW, FILED, DISPATCHED, HANDLED, VERIFIED)

REJECT_REASONS = ("false_positive", "duplicate", "not_a_violation", "exempt")

# status -> statuses a user may move it to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    PENDING_REVIEW: (FILED, REJECTED),
    FILED: (DISPATCHED,),
    DISPATCHED: (HANDLED,),
    HANDLED: (VERIFIED, DISPATCHED),
    VERIFIED: (CLOSED,),
    CLOSED: (),
    REJECTED: (),
}

# target status -> roles that may move a case there
ROLES_FOR: dict[str, tuple[str, ...]] = {
    FILED: ("admin", "operator"),
    REJECTED: ("admin", "operator"),
    DISPATCHED: ("admin", "operator"),
    HANDLED: ("admin", "operator", "enforcement"),
    VERIFIED: ("admin", "operator"),
    CLOSED: ("admin", "operator"),
}

# statuses that notify webhooks when entered
NOTIFY = (FILED, DISPATCHED, CLOSED)


class TransitionError(ValueError):
    """A move the workflow does not allow from the case's current status (HTTP 409)."""

    def __init__(self, current: str, target: str, allowed: tuple[str, ...]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none"
        super().__init__(
            f"cannot move a case from {current} to {target}; allowed from {current}: {allowed_text}"
        )
        self.current = current
        self.target = target
        self.allowed = allowed


class TransitionInputError(ValueError):
    """A move that lacks what it needs (a reason, a note, an after-photo); names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Move:
    target: str
    reason: str | None = None
    note: str | None = None
    has_photo: bool = False


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


def may_move(role: str, target: str) -> bool:
    return role in ROLES_FOR.get(target, ())
