"""The review queue over real databases: claims never overlap, decisions, undo, category changes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from api.accounts.accounts import Principal
from api.cases import custody, review, workflow
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, ingest
from api.cases.merge import MergePolicy
from api.services import Services
from api.storage.db import utcnow
from api.storage.models import Case, CaseEvent, CustodyEntry, ReviewClaim
from tests.api.api_testkit import LiveServer, import_demo_grid, incident_json, post_incident

OP1 = Principal(kind="user", name="op1", role="operator", user_id=1)
OP2 = Principal(kind="user", name="op2", role="operator", user_id=2)
SYSTEM = Principal(kind="system", name="test", role="system")


def _cases(services: Services, count: int, categories: tuple[str, ...] = ()) -> list[int]:
    """count cases far enough apart not to merge; categories: the first ones' (default illegal_parking)."""
    import_demo_grid(services)
    ids = []
    with services.factory() as session:
        grid = services.grid_cache.get(session)
        for i in range(count):
            category = categories[i] if i < len(categories) else "illegal_parking"
            position = (30.2741 + i * 0.001, 120.1551)
            data = incident_json(f"inc-{i}", category=category, position=position, files={})
            payload = IncidentPayload.model_validate(data)
            result = ingest(
                session,
                IncidentIn.from_payload(payload, evidence=[]),
                grid=grid,
                policy=MergePolicy(),
                actor=SYSTEM,
            )
            ids.append(result.case.id)
        session.commit()
    return ids


def test_two_operators_never_hold_the_same_case(services: Services) -> None:
    ids = _cases(services, 3)
    with services.factory() as s1, services.factory() as s2:
        a = review.claim_next(s1, principal=OP1)
        s1.commit()
        b = review.claim_next(s2, principal=OP2)
        s2.commit()
        assert a is not None and b is not None and a.id != b.id
        # the one loaded ahead: op1 skips what is on screen and gets the third; op2 then gets none
        c = review.claim_next(s1, principal=OP1, skip=[a.id])
        s1.commit()
        assert c is not None and c.id not in (a.id, b.id)
        assert review.claim_next(s2, principal=OP2, skip=[b.id]) is None
    assert sorted([a.id, b.id, c.id]) == sorted(ids)


def test_claims_at_the_same_instant_go_to_one_operator(services: Services) -> None:
    _cases(services, 1)
    got: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def take(principal: Principal) -> None:
        with services.factory() as session:
            barrier.wait()
            for _ in range(20):
                try:
                    case = review.claim_next(session, principal=principal)
                    session.commit()
                    break
                except Exception as exc:  # SQLite: "database is locked" while the other writes
                    session.rollback()
                    if "locked" not in str(exc):
                        raise
            got[principal.name] = case.id if case else None

    threads = [threading.Thread(target=take, args=(p,)) for p in (OP1, OP2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v is None for v in got.values()) == [False, True], got


def test_an_expired_claim_goes_to_the_next_operator(services: Services) -> None:
    _cases(services, 1)
    with services.factory() as session:
        first = review.claim_next(session, principal=OP1, lease_s=-1)  # lapsed at once
        session.commit()
        second = review.claim_next(session, principal=OP2)
        session.commit()
    assert first is not None and second is not None and first.id == second.id


def test_confirm_reject_undo_and_category_are_recorded(services: Services) -> None:
    a, b = _cases(services, 2)
    with services.factory() as session:
        review.decide(session, principal=OP1, case_id=a, decision="confirm")
        review.decide(session, principal=OP1, case_id=b, decision="reject", reason="false_positive")
        session.commit()
        assert session.get(Case, a).status == workflow.FILED
        assert session.get(Case, b).status == workflow.REJECTED
        # op2 cannot undo op1's decision; op1 can, once
        with pytest.raises(review.UndoRefused):
            review.undo_last(session, principal=OP2, case_id=b)
        review.undo_last(session, principal=OP1, case_id=b)
        session.commit()
        case_b = session.get(Case, b)
        assert case_b.status == workflow.PENDING_REVIEW and case_b.reject_reason is None
        with pytest.raises(review.UndoRefused):
            review.undo_last(session, principal=OP1, case_id=b)
        review.change_category(session, principal=OP1, case_id=b, category="piled_debris")
        session.commit()
        assert session.get(Case, b).category == "piled_debris"
        with pytest.raises(review.NotInReview):
            review.change_category(session, principal=OP1, case_id=a, category="street_vending")
        with pytest.raises(review.ReviewInputError):
            review.change_category(session, principal=OP1, case_id=b, category="graffiti")
        with pytest.raises(workflow.TransitionError):  # someone decided it first: a 409
            review.decide(session, principal=OP2, case_id=a, decision="reject", reason="duplicate")
        actions = [
            e.action for e in session.query(CaseEvent).filter(CaseEvent.case_id == b).order_by(CaseEvent.id)
        ]
        assert actions == ["created", "rejected", "undo", "recategorized"]
        custody_actions = [
            e.action
            for e in session.query(CustodyEntry).filter(CustodyEntry.case_id == b).order_by(CustodyEntry.seq)
        ]
        assert custody_actions == ["case_created", "transition", "undo", "recategorized"]
        checked, problems = custody.verify_all(session)
        assert problems == [] and checked >= 2


def test_a_category_of_the_site_s_own_rules_can_be_chosen_in_review(services: Services) -> None:
    """A site config may add a rule (here blocked_fire_lane): once a case carries its category, the
    review offers it and takes it; a category no case carries is still refused, naming the known ones."""
    site_case, b = _cases(services, 2, categories=("blocked_fire_lane",))
    with services.factory() as session:
        assert review.known_categories(session) == (*review.CATEGORIES, "blocked_fire_lane")
        review.change_category(session, principal=OP1, case_id=b, category="blocked_fire_lane")
        session.commit()
        assert session.get(Case, b).category == "blocked_fire_lane"
        with pytest.raises(review.ReviewInputError, match="piled_debris, blocked_fire_lane"):
            review.change_category(session, principal=OP1, case_id=site_case, category="graffiti")
        review.change_category(session, principal=OP1, case_id=site_case, category="street_vending")
        review.change_category(session, principal=OP1, case_id=b, category="piled_debris")
        session.commit()
        assert review.known_categories(session) == review.CATEGORIES  # no case carries it any more


def test_renewing_keeps_only_the_claims_still_ones_own(services: Services) -> None:
    """The page renews what it holds, lapsed or not; a claim that lapsed and went to another operator
    stays theirs, and a case released or decided is not claimed again by a renewal."""
    _cases(services, 4)
    with services.factory() as session:
        ids: list[int] = []
        for _ in range(4):  # all four held by op1, each claim lapsed at once
            case = review.claim_next(session, principal=OP1, skip=ids, lease_s=-1)
            assert case is not None
            ids.append(case.id)
        session.commit()
        lapsed, kept, released, decided = ids
        taken = review.claim_next(session, principal=OP2)
        assert taken is not None and taken.id == lapsed
        review.release(session, principal=OP1, case_id=released)
        review.decide(session, principal=OP2, case_id=decided, decision="confirm")
        session.commit()
        renewed = review.renew(session, principal=OP1, case_ids=ids, lease_s=60)
        session.commit()
        assert renewed == [kept]
        claims = {c.case_id: c for c in session.scalars(select(ReviewClaim))}
        assert claims[lapsed].holder == OP2.label and released not in claims
        assert claims[kept].expires_at > utcnow() + timedelta(seconds=50)
        assert claims[decided].expires_at < utcnow()  # not renewed: the case left the queue
        # a page back from an idle pause (which released its cases) claims again those nobody took
        retaken = review.renew(session, principal=OP1, case_ids=ids, lease_s=60, retake=True)
        assert retaken == [kept, released]


def test_the_page_renews_its_claims_and_names_a_bad_id(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"review_lease_s": 30})
    with server.client("device") as device, server.browser("operator") as op:
        first = post_incident(device, incident_json("renew-1")).json()["case_id"]
        page = op.get("/review")
        assert 'data-lease-s="30.0"' in page.text and f'data-case-id="{first}"' in page.text
        renewed = op.post("/review/claims", data={"cases": f"{first},{first + 1000}"})
        assert renewed.status_code == 200, renewed.text
        assert renewed.json() == {"held": [first], "lost": [first + 1000]}
        for bad in ("1,x", "0", ",".join(["1"] * 9)):
            refused = op.post("/review/claims", data={"cases": bad})
            assert refused.status_code == 422 and "cases" in refused.text, (bad, refused.text)
