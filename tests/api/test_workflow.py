"""The workflow table: every move from every status, with what it needs."""

from __future__ import annotations

import pytest

from api.cases import workflow
from api.cases.workflow import Move, TransitionError, TransitionInputError, check_move, may_move

OK, ILLEGAL = "ok", "illegal"

TABLE = [
    ("pending_review", Move("filed"), OK),
    ("pending_review", Move("rejected", reason="false_positive"), OK),
    ("pending_review", Move("rejected"), "reason"),
    ("pending_review", Move("rejected", reason="because"), "reason"),
    ("pending_review", Move("dispatched"), ILLEGAL),
    ("filed", Move("dispatched"), OK),
    ("filed", Move("closed"), ILLEGAL),
    ("dispatched", Move("handled", note="towed", has_photo=True), OK),
    ("dispatched", Move("handled", note="towed"), "photo"),
    ("dispatched", Move("handled", has_photo=True), "note"),
    ("handled", Move("verified"), OK),
    ("handled", Move("dispatched", note="still there"), OK),
    ("handled", Move("dispatched"), "note"),
    ("verified", Move("closed"), OK),
    ("closed", Move("filed"), ILLEGAL),
    ("rejected", Move("pending_review"), ILLEGAL),
    ("filed", Move("nonsense"), "to"),
]


@pytest.mark.parametrize(("current", "move", "expected"), TABLE)
def test_moves(current: str, move: Move, expected: str) -> None:
    if expected == OK:
        check_move(current, move)
    elif expected == ILLEGAL:
        with pytest.raises(TransitionError) as err:
            check_move(current, move)
        assert err.value.allowed == workflow.TRANSITIONS[current]
        assert current in str(err.value)
    else:
        with pytest.raises(TransitionInputError) as err:
            check_move(current, move)
        assert err.value.field == expected


def test_every_status_has_a_row() -> None:
    assert set(workflow.TRANSITIONS) == set(workflow.STATUSES)
    assert set(workflow.OPEN_STATUSES) == set(workflow.STATUSES) - {"closed", "rejected"}


@pytest.mark.parametrize(
    ("role", "target", "allowed"),
    [
        ("operator", "filed", True),
        ("enforcement", "filed", False),
        ("enforcement", "handled", True),
        ("viewer", "handled", False),
        ("device", "filed", False),
        ("admin", "closed", True),
        # the service itself (the upload worker) only rejects the cases a corrected resend superseded
        ("system", "rejected", True),
        ("system", "filed", False),
        ("system", "dispatched", False),
        ("system", "closed", False),
    ],
)
def test_roles(role: str, target: str, allowed: bool) -> None:
    assert may_move(role, target) is allowed
