"""Case ingestion and merging, over real databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from api.accounts.accounts import SYSTEM, Principal
from api.cases import custody, workflow
from api.cases.acting import transition
from api.cases.audit import audit
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, IngestWriter, _Pending, ingest
from api.cases.merge import MergePolicy, distance_m
from api.cases.reading import CaseFilter, NotFound, get_case, list_cases
from api.services import Services
from api.storage.evidence_store import StoredFile
from api.storage.models import UNASSIGNED, Case, CustodyEntry, Sighting
from tests.api.api_testkit import import_demo_grid, incident_json

# A point in the demo grid (cell DEMO-ZIYANG-04) and offsets in degrees of latitude (~1.11 m per 1e-5).
LAT, LON = 30.2741, 120.1551
OPERATOR = Principal(kind="user", name="op", role="operator", user_id=1)


def north(metres: float) -> float:
    return LAT + metres / 111_195.0


def _incident(services: Services, incident_id: str, **kwargs: Any) -> IncidentIn:
    data = incident_json(incident_id, **kwargs)
    payload = IncidentPayload.model_validate(data)
    evidence = []
    for e in payload.evidence:
        blob = hashlib.sha256(e.sha256.encode()).hexdigest()
        evidence.append((e.role, StoredFile(sha256=e.sha256, size=10, media_type="image/jpeg")))
        assert blob
    return IncidentIn.from_payload(payload, evidence=evidence)


def _ingest(services: Services, incident_id: str, **kwargs: Any):  # type: ignore[no-untyped-def]
    inc = _incident(services, incident_id, **kwargs)
    with services.factory() as session:
        result = ingest(
            session, inc, grid=services.grid_cache.get(session), policy=MergePolicy(15.0, 24.0), actor=SYSTEM
        )
        session.commit()
        return result


@pytest.fixture
def svc(services: Services) -> Services:
    import_demo_grid(services)
    return services


def test_distance_is_haversine_metres() -> None:
    assert distance_m(LAT, LON, LAT, LON) == 0
    assert distance_m(LAT, LON, north(100), LON) == pytest.approx(100, rel=1e-3)


def test_first_incident_opens_a_case_in_its_grid_cell(svc: Services) -> None:
    result = _ingest(svc, "inc-1", plate="浙A12345")
    case = result.case
    assert result.created and not result.duplicate
    assert re.fullmatch(r"GP-2026-\d{6}", case.number)
    assert case.status == workflow.PENDING_REVIEW
    assert (case.grid_cell_id, case.team) == ("DEMO-ZIYANG-04", "team-ziyang")
    assert case.plate == "浙A12345"
    assert case.first_seen.isoformat() == "2026-11-20T01:00:00"  # stored as UTC


def test_same_incident_twice_is_one_sighting(svc: Services) -> None:
    first = _ingest(svc, "inc-1")
    again = _ingest(svc, "inc-1")
    assert again.duplicate and again.case.id == first.case.id and again.sighting_id == first.sighting_id
    with svc.factory() as session:
        assert session.query(Sighting).count() == 1
        assert session.get(Case, first.case.id).sightings_count == 1


# (second incident's changes, merged into the first case?)
MERGE_TABLE = [
    ({"position": (north(10), LON)}, True),
    ({"position": (north(14.5), LON)}, True),
    ({"position": (north(16), LON)}, False),
    ({"category": "street_vending"}, False),
    ({"when": "2026-11-20T20:00:00+08:00"}, True),  # 11 h later, inside the 24 h window
    ({"when": "2026-11-21T10:00:00+08:00"}, False),  # 25 h later
    ({"plate": "浙A12345"}, True),  # the case has no plate yet
]


@pytest.mark.parametrize(("change", "merged"), MERGE_TABLE)
def test_merge_rules(svc: Services, change: dict[str, Any], merged: bool) -> None:
    first = _ingest(svc, "a")
    second = _ingest(svc, "b", **change)
    assert (second.case.id == first.case.id) is merged
    assert second.created is not merged


def test_different_plates_never_merge(svc: Services) -> None:
    first = _ingest(svc, "a", plate="浙A11111")
    same = _ingest(svc, "b", plate="浙a11111", position=(north(3), LON))
    other = _ingest(svc, "c", plate="浙B22222", position=(north(3), LON))
    assert same.case.id == first.case.id
    assert other.case.id != first.case.id


def test_position_outside_grid_is_unassigned(svc: Services) -> None:
    result = _ingest(svc, "far", position=(31.5, 121.0))
    assert result.case.grid_cell_id == UNASSIGNED and result.case.team is None
    nowhere = _ingest(svc, "nopos", position=None)
    assert nowhere.case.grid_cell_id == UNASSIGNED
    # without a position, merging is by camera
    again = _ingest(svc, "nopos2", position=None)
    other_cam = _ingest(svc, "nopos3", position=None, source_id="cam-2")
    assert again.case.id == nowhere.case.id
    assert other_cam.case.id != nowhere.case.id


_TO_CLOSED = (workflow.FILED, workflow.DISPATCHED, workflow.HANDLED, workflow.VERIFIED, workflow.CLOSED)


def _walk_to_closed(svc: Services, case_id: int, targets: tuple[str, ...] = _TO_CLOSED) -> None:
    photo = StoredFile(sha256="e" * 64, size=5, media_type="image/jpeg")
    with svc.factory() as session:
        for target in targets:
            move = workflow.Move(target=target, note="removed the car", has_photo=target == workflow.HANDLED)
            transition(
                session,
                principal=OPERATOR,
                case_id=case_id,
                move=move,
                photo=photo if target == workflow.HANDLED else None,
            )
        session.commit()


def _around_now(hours: float) -> str:
    """A time `hours` from now: a closing happens now, so a sighting after it is seen after now."""
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def test_closed_case_seen_again_reopens_as_recurrence(svc: Services) -> None:
    first = _ingest(svc, "a", when=_around_now(-1))
    _walk_to_closed(svc, first.case.id)
    again = _ingest(svc, "b", when=_around_now(1), position=(north(5), LON))
    assert again.recurrence and again.case.id == first.case.id
    assert again.case.status == workflow.PENDING_REVIEW
    assert again.case.recurrence_count == 1
    with svc.factory() as session:
        actions = [e.action for e in get_case(session, principal=OPERATOR, case_id=first.case.id).events]
    assert actions == ["created", "filed", "dispatched", "handled", "verified", "closed", "reopened"]


def test_a_sighting_racing_the_close_reopens_the_case(svc: Services) -> None:
    """PostgreSQL: a sighting seen after the closing chooses a case still verified while a reviewer
    is closing it; the sighting waits for the close (the case's row lock) and then reads the case
    as closed, with its closing, so it reopens it as a recurrence instead of leaving a closed case
    with a new sighting."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing can close a case during an ingest")
    first = _ingest(svc, "a", when=_around_now(-1))
    _walk_to_closed(svc, first.case.id, _TO_CLOSED[:-1])
    got: list[Any] = []
    with svc.factory() as reviewer:
        transition(
            reviewer, principal=OPERATOR, case_id=first.case.id, move=workflow.Move(target=workflow.CLOSED)
        )
        reviewer.flush()  # the case row is locked and closed, not committed
        sighting = threading.Thread(
            target=lambda: got.append(_ingest(svc, "b", when=_around_now(1), position=(north(5), LON)))
        )
        sighting.start()
        time.sleep(1.0)
        assert sighting.is_alive() and not got  # waiting for the reviewer
        reviewer.commit()
    sighting.join(timeout=15)
    assert got, "the sighting never finished"
    again = got[0]
    assert again.case.id == first.case.id and again.recurrence
    assert (again.case.status, again.case.recurrence_count) == (workflow.PENDING_REVIEW, 1)
    with svc.factory() as session:
        actions = [e.action for e in get_case(session, principal=OPERATOR, case_id=first.case.id).events]
    assert actions[-2:] == ["closed", "reopened"]


_BLOCKED_BY = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")


def _wait_until_blocked_by(svc: Services, holder: Session, waiter: threading.Thread) -> None:
    """PostgreSQL: return once another backend waits for a lock that `holder`'s transaction holds
    (the `waiter` thread's, which must not have ended before). Each look is a transaction of its
    own: pg_stat_activity is read once per transaction."""
    pid = holder.scalar(text("SELECT pg_backend_pid()"))
    deadline = time.monotonic() + 10
    while True:
        with svc.engine.connect() as conn:
            if conn.scalar(_BLOCKED_BY, {"pid": pid}):
                return
        assert waiter.is_alive(), "the thread ended without waiting for the lock"
        assert time.monotonic() < deadline, "nothing waited for the lock"
        time.sleep(0.01)


def test_a_sighting_seen_before_a_racing_close_leaves_the_case_closed(svc: Services) -> None:
    """PostgreSQL: a sighting seen before the closing (footage uploaded late) chooses a case still
    verified while a reviewer is closing it, and waits for the close's row lock. Once the close has
    committed, the sighting is decided on the case as closed, with its closing time: it is evidence,
    the close stands (it once read no closing in the history and reopened the case)."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing can close a case during an ingest")
    first = _ingest(svc, "a", when=_around_now(-2))
    _walk_to_closed(svc, first.case.id, _TO_CLOSED[:-1])
    got: list[Any] = []

    def sighting_seen_before() -> None:
        try:
            got.append(_ingest(svc, "late", when=_around_now(-1), position=(north(5), LON)))
        except BaseException as exc:  # handed to the test
            got.append(exc)

    with svc.factory() as reviewer:
        transition(
            reviewer, principal=OPERATOR, case_id=first.case.id, move=workflow.Move(target=workflow.CLOSED)
        )
        reviewer.flush()  # the case row is locked and closed, not committed
        sighting = threading.Thread(target=sighting_seen_before)
        sighting.start()
        try:
            _wait_until_blocked_by(svc, reviewer, sighting)
        finally:
            reviewer.commit()
    sighting.join(timeout=15)
    assert got, "the sighting never finished"
    assert not isinstance(got[0], BaseException), got[0]
    late = got[0]
    assert late.case.id == first.case.id
    assert (late.recurrence, late.before_close) == (False, True)
    assert (late.case.status, late.case.recurrence_count) == (workflow.CLOSED, 0)
    with svc.factory() as session:
        case = get_case(session, principal=OPERATOR, case_id=first.case.id)
        assert case.status == workflow.CLOSED
        assert [e.action for e in case.events][-2:] == ["closed", "seen_before_close"]
    with svc.factory() as session:
        assert audit(session).problems == []


def test_a_close_racing_a_sighting_waits_for_it_and_stands(svc: Services) -> None:
    """PostgreSQL: the other order. A sighting holds the case's row (added, not committed) when a
    reviewer closes the case: the close waits for it, then closes the case with the sighting in it."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing can close a case during an ingest")
    first = _ingest(svc, "a", when=_around_now(-2))
    _walk_to_closed(svc, first.case.id, _TO_CLOSED[:-1])
    closed: list[Any] = []

    def close() -> None:
        try:
            with svc.factory() as reviewer:
                move = workflow.Move(target=workflow.CLOSED)
                closed.append(
                    transition(reviewer, principal=OPERATOR, case_id=first.case.id, move=move).status
                )
                reviewer.commit()
        except BaseException as exc:  # handed to the test
            closed.append(exc)

    with svc.factory() as session:
        inc = _incident(svc, "b", when=_around_now(-1), position=(north(5), LON))
        grid = svc.grid_cache.get(session)
        seen = ingest(session, inc, grid=grid, policy=MergePolicy(15.0, 24.0), actor=SYSTEM)
        assert (seen.case.id, seen.case.status) == (first.case.id, workflow.VERIFIED)
        closing = threading.Thread(target=close)
        closing.start()
        try:
            _wait_until_blocked_by(svc, session, closing)
        finally:
            session.commit()
    closing.join(timeout=15)
    assert closed == [workflow.CLOSED]
    with svc.factory() as session:
        case = get_case(session, principal=OPERATOR, case_id=first.case.id)
        assert (case.status, case.sightings_count, case.recurrence_count) == (workflow.CLOSED, 2, 0)
        assert [e.action for e in case.events][-1] == "closed"


def test_a_sighting_racing_a_reject_opens_a_case_of_its_own(svc: Services) -> None:
    """PostgreSQL: a sighting chooses a case under review while a reviewer is rejecting it, and
    waits for its row; once the reject has committed, the rejected case takes no sighting (the merge
    rule), so the incident is decided again and opens a new case (it once joined the rejected one)."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing can reject a case during an ingest")
    first = _ingest(svc, "a", when=_around_now(-2))
    got: list[Any] = []

    def sighting() -> None:
        try:
            got.append(_ingest(svc, "b", when=_around_now(-1), position=(north(5), LON)))
        except BaseException as exc:  # handed to the test
            got.append(exc)

    reject = workflow.Move(target=workflow.REJECTED, reason="false_positive")
    with svc.factory() as reviewer:
        transition(reviewer, principal=OPERATOR, case_id=first.case.id, move=reject)
        reviewer.flush()  # the case row is locked and rejected, not committed
        waiting = threading.Thread(target=sighting)
        waiting.start()
        try:
            _wait_until_blocked_by(svc, reviewer, waiting)
        finally:
            reviewer.commit()
    waiting.join(timeout=15)
    assert got and not isinstance(got[0], BaseException), got
    assert got[0].created and got[0].case.id != first.case.id
    with svc.factory() as session:
        rejected = get_case(session, principal=OPERATOR, case_id=first.case.id)
        assert (rejected.status, rejected.sightings_count) == (workflow.REJECTED, 1)


def test_a_move_decides_on_the_case_as_locked_not_as_loaded_before(svc: Services) -> None:
    """PostgreSQL: a move whose session read the case before taking its row lock (the after-photo's
    check reads it first) decides on the case as the lock finds it: a close by another reviewer
    meanwhile makes a second close a 409, not a second closing of an already closed case."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the first read holds off the other reviewer")
    first = _ingest(svc, "a", when=_around_now(-2))
    _walk_to_closed(svc, first.case.id, _TO_CLOSED[:-1])
    close = workflow.Move(target=workflow.CLOSED)
    with svc.factory() as late_reviewer:
        seen = get_case(late_reviewer, principal=OPERATOR, case_id=first.case.id)
        assert seen.status == workflow.VERIFIED
        _walk_to_closed(svc, first.case.id, (workflow.CLOSED,))  # another reviewer, committed
        with pytest.raises(workflow.TransitionError):
            transition(late_reviewer, principal=OPERATOR, case_id=first.case.id, move=close)
    with svc.factory() as session:
        actions = [e.action for e in get_case(session, principal=OPERATOR, case_id=first.case.id).events]
    assert actions.count("closed") == 1


def test_a_batch_racing_the_close_chains_its_entry_after_the_close(svc: Services) -> None:
    """PostgreSQL: the same race through the ingest writer's batch. The batch decides on the case as
    it read it (verified) and adds its sighting when the batch ends, in one UPDATE that waits for the
    reviewer's close and then finds the case no longer verified; the batch is rolled back and its
    incidents written again one at a time, so the sighting reopens the case. Its custody entry must
    follow the close's entry in the case's chain (read before the close committed, it would fork the
    chain)."""
    if svc.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing can close a case during an ingest")
    first = _ingest(svc, "a", when=_around_now(-1))
    _walk_to_closed(svc, first.case.id, _TO_CLOSED[:-1])
    incidents = [
        _incident(svc, "b", when=_around_now(1), position=(north(5), LON)),
        _incident(svc, "c", when=_around_now(1), position=(north(900), LON)),
    ]
    writer = IngestWriter(svc.factory, grid_cache=svc.grid_cache, policy=svc.policy)
    got: list[Any] = []

    def write_batch() -> None:
        got.extend(writer._write([_Pending(inc, SYSTEM, None, None, None) for inc in incidents]))  # type: ignore[arg-type]

    with svc.factory() as reviewer:
        transition(
            reviewer, principal=OPERATOR, case_id=first.case.id, move=workflow.Move(target=workflow.CLOSED)
        )
        reviewer.flush()  # the case row is locked and closed, not committed
        thread = threading.Thread(target=write_batch)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive() and not got  # waiting for the reviewer
        reviewer.commit()
    thread.join(timeout=15)
    assert len(got) == 2, "the batch never finished"
    assert [error for _, error in got] == [None, None]
    (reopened, _), (opened, _) = got
    assert reopened.case.id == first.case.id and reopened.recurrence and opened.created
    assert (reopened.case.status, reopened.case.recurrence_count) == (workflow.PENDING_REVIEW, 1)
    assert writer.stats.retried_alone == 2  # the batch found the case closed under it: each written alone
    with svc.factory() as session:
        chains, problems = custody.verify_all(session)
        actions = session.scalars(
            select(CustodyEntry.action)
            .where(CustodyEntry.case_id == first.case.id)
            .order_by(CustodyEntry.seq)
        ).all()
    assert problems == [] and chains == 2
    assert actions[-2:] == ["transition", "sighting_added"]


def test_rejected_case_takes_no_sightings(svc: Services) -> None:
    first = _ingest(svc, "a")
    with svc.factory() as session:
        transition(
            session,
            principal=OPERATOR,
            case_id=first.case.id,
            move=workflow.Move(target="rejected", reason="false_positive"),
        )
        session.commit()
    second = _ingest(svc, "b")
    assert second.created and second.case.id != first.case.id


def test_illegal_transition_names_allowed_ones(svc: Services) -> None:
    case = _ingest(svc, "a").case
    with svc.factory() as session, pytest.raises(workflow.TransitionError) as err:
        transition(session, principal=OPERATOR, case_id=case.id, move=workflow.Move(target="closed"))
    assert err.value.allowed == ("filed", "rejected")
    assert "filed, rejected" in str(err.value)


def test_an_empty_first_page_counts_nothing_even_when_a_case_arrives_meanwhile(svc: Services) -> None:
    """The case list answers from one moment: a case filed just after the page was read (by a
    runner, while an operator's page loads) is in neither the page nor its total. (An empty page
    once counted again in a later statement: total 1 beside no rows, on PostgreSQL in CI.)"""
    admin = Principal(kind="user", name="a", role="admin")
    arrived: list[int] = []

    def file_one_after_the_page(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "matching_total" in statement and not arrived:
            arrived.append(_ingest(svc, "meanwhile").case.id)

    event.listen(svc.engine, "after_cursor_execute", file_one_after_the_page)
    try:
        with svc.list_factory() as session:
            rows, total = list_cases(session, principal=admin, filters=CaseFilter())
    finally:
        event.remove(svc.engine, "after_cursor_execute", file_one_after_the_page)
    assert arrived, "the page statement was not seen"
    assert (rows, total) == ([], 0)
    with svc.list_factory() as session:
        rows, total = list_cases(session, principal=admin, filters=CaseFilter())
    assert [r.id for r in rows] == arrived and total == 1


def test_a_read_session_reads_one_moment(svc: Services) -> None:
    """Every read of one read session sees the same committed state (PostgreSQL: REPEATABLE READ;
    SQLite: a WAL read transaction): a reader that counts and then lists (the chalk marks, a case
    with its sightings) never pairs a total with rows from a later moment."""
    _ingest(svc, "before")
    count = select(func.count()).select_from(Case)
    with svc.read_factory() as reader:
        assert reader.scalar(count) == 1
        _ingest(svc, "meanwhile", position=(31.5, 121.0))
        assert reader.scalar(count) == 1
        assert len(reader.scalars(select(Sighting)).all()) == 1
    with svc.read_factory() as reader:
        assert reader.scalar(count) == 2


def test_list_filters_and_team_visibility(svc: Services) -> None:
    _ingest(svc, "a", plate="浙A1")
    _ingest(svc, "b", position=(30.26, 120.14), category="street_vending")  # another cell
    _ingest(svc, "c", position=(31.5, 121.0))
    admin = Principal(kind="user", name="a", role="admin")
    with svc.factory() as session:
        rows, total = list_cases(session, principal=admin, filters=CaseFilter())
        assert total == 3 and len(rows) == 3
        assert list_cases(session, principal=admin, filters=CaseFilter(plate="浙a1"))[1] == 1
        assert list_cases(session, principal=admin, filters=CaseFilter(category="street_vending"))[1] == 1
        assert list_cases(session, principal=admin, filters=CaseFilter(grid_cell=UNASSIGNED))[1] == 1
        assert list_cases(session, principal=admin, filters=CaseFilter(team="team-ziyang"))[1] == 1
        assert list_cases(session, principal=admin, filters=CaseFilter(status=["filed"]))[1] == 0
        number = rows[0].number
        assert (
            list_cases(session, principal=admin, filters=CaseFilter(number=number.lower()))[0][0].number
            == number
        )
        page2, total = list_cases(session, principal=admin, filters=CaseFilter(), page=2, per_page=2)
        assert len(page2) == 1 and total == 3  # the count beside a page's rows is every match's
        past_end, total = list_cases(session, principal=admin, filters=CaseFilter(), page=5, per_page=2)
        assert past_end == [] and total == 3  # a page past the end still says how many there are
        ziyang = Principal(kind="user", name="z", role="enforcement", team="team-ziyang")
        seen, total = list_cases(session, principal=ziyang, filters=CaseFilter())
        assert total == 1 and seen[0].team == "team-ziyang"
        other = next(r for r in rows if r.team != "team-ziyang")
        with pytest.raises(NotFound):
            get_case(session, principal=ziyang, case_id=other.id)
