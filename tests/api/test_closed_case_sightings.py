"""A closed case and a sighting of it that arrives late (footage uploaded a day late, a runner's queue
drained after the case service was away): one last seen by the time the case was closed is kept with
the case as evidence and history and leaves it closed; one last seen after the closing reopens it (a
recurrence), as before. The period report counts the first as neither a new nor a reopened case."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from api.accounts.accounts import SYSTEM, Principal
from api.cases import workflow
from api.cases.acting import transition
from api.cases.audit import audit
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, ingest
from api.cases.merge import MergePolicy
from api.services import Services
from api.storage.models import Case, CaseEvent
from tests.api.api_testkit import LiveServer, import_demo_grid, incident_json, jpeg_bytes, post_incident

PLACE = (30.2710, 120.1560)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _close(server: LiveServer, admin: httpx.Client, team: httpx.Client, case_id: int) -> datetime:
    """Move the case through to closed; the time of its closing as its history holds it (aware)."""
    for to in ("filed", "dispatched", "handled", "verified", "closed"):
        files = None
        data = {"to": to}
        if to == "handled":
            files = {"photo": ("after.jpg", jpeg_bytes(f"after-{case_id}"), "image/jpeg")}
            data["note"] = "towed"
        moved = (team if to == "handled" else admin).post(
            f"/api/cases/{case_id}/transitions", data=data, files=files
        )
        assert moved.status_code == 200, moved.text
    with server.services.factory() as session:
        closed_at = session.scalar(
            select(CaseEvent.at).where(CaseEvent.case_id == case_id, CaseEvent.to_status == "closed")
        )
    assert closed_at is not None
    return closed_at.replace(tzinfo=UTC)


def _seen(device: httpx.Client, name: str, first: datetime, last: datetime) -> dict[str, Any]:
    sent = post_incident(device, incident_json(name, when=_iso(first), until=_iso(last), position=PLACE))
    assert sent.status_code in (200, 201), sent.text
    return dict(sent.json())


def test_a_sighting_seen_by_the_closing_is_evidence_and_the_case_stays_closed(
    make_server: Any, db_url: str
) -> None:
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        case_id = _seen(device, "first", now - timedelta(hours=20), now - timedelta(hours=20))["case_id"]
        closed_at = _close(server, admin, team, case_id)
        # the patrol's footage of the hours before the closing, uploaded late: up to the closing itself
        late = _seen(device, "late", now - timedelta(hours=19), closed_at)
        answer = (late["case_id"], late["status"], late["recurrence"], late["before_close"])
        assert answer == (case_id, "closed", False, True), late
        case = admin.get(f"/api/cases/{case_id}").json()
        assert (case["status"], case["sightings"], case["recurrences"]) == ("closed", 2, 0), case
        assert "late" in [s["incident_id"] for s in case["sightings_list"]]
        last = case["history"][-1]
        assert (last["what"], last["from"], last["to"]) == ("seen_before_close", None, None), last
        assert last["note"] == "seen before it was closed (incident late)"
        # a sighting last seen after the closing reopens it, as it always did
        again = _seen(device, "again", closed_at, closed_at + timedelta(seconds=1))
        answer = (again["case_id"], again["status"], again["recurrence"], again["before_close"])
        assert answer == (case_id, "pending_review", True, False), again
    with server.services.factory() as session:
        checked = audit(session)  # the chain implies the seen_before_close event: the history agrees
    assert checked.problems == [], checked.problems


def test_the_period_report_counts_no_new_or_reopened_case_for_it(make_server: Any, db_url: str) -> None:
    """The report of the hour the late sighting arrived: the case was found 20 h before and closed;
    nothing was found, nothing awaits review and nothing is open at its end."""
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        case_id = _seen(device, "first", now - timedelta(hours=20), now - timedelta(hours=20))["case_id"]
        closed_at = _close(server, admin, team, case_id)
        _seen(device, "late", now - timedelta(hours=19), closed_at - timedelta(minutes=1))
        period = {
            "since": _iso(now - timedelta(hours=1)),
            "until": _iso(datetime.now(UTC) + timedelta(hours=1)),
        }
        total = admin.get("/api/reports/period", params=period).json()["total"]
    assert (total["found"], total["closed"]) == (0, 1), total
    assert (total["open_at_end"], total["awaiting_review_at_end"]) == (0, 0), total


def test_a_batch_keeps_the_case_closed_for_the_earlier_sighting_and_reopens_it_for_the_later(
    make_server: Any, db_url: str
) -> None:
    """Both in one request, a runner's queue drained at once: the first (seen before the closing)
    leaves the case closed, the second (seen after it) reopens it."""
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        case_id = _seen(device, "first", now - timedelta(hours=20), now - timedelta(hours=20))["case_id"]
        closed_at = _close(server, admin, team, case_id)
        before = incident_json("before", when=_iso(closed_at - timedelta(hours=2)), position=PLACE)
        after = incident_json("after", when=_iso(closed_at + timedelta(seconds=1)), position=PLACE)
        parts = []
        for data in (before, after):
            parts.append(("incident", (None, json.dumps(data).encode(), "application/json")))
            for role in ("annotated", "crop"):
                body = jpeg_bytes(data["id"] + role[0])
                parts.append(("files", (f"{role}.jpg", body, "image/jpeg")))
        sent = device.post("/api/incidents/batch", files=parts)
        assert sent.status_code == 200, sent.text
        outcomes = [e["outcome"] for e in sent.json()["results"]]
        assert [(o["case_id"], o["status"], o["recurrence"], o["before_close"]) for o in outcomes] == [
            (case_id, "closed", False, True),
            (case_id, "pending_review", True, False),
        ], outcomes
        history = [e["what"] for e in admin.get(f"/api/cases/{case_id}").json()["history"]]
    assert history[-2:] == ["seen_before_close", "reopened"], history


def test_the_workers_path_keeps_it_closed_too(services: Services) -> None:
    """An upload's incident, ingested on its own (the worker's path, no batch): the same rule."""
    import_demo_grid(services)
    operator = Principal(kind="user", name="op", role="admin")

    def incident(name: str, when: datetime) -> IncidentIn:
        data = IncidentPayload.model_validate(incident_json(name, when=_iso(when), position=PLACE))
        return IncidentIn.from_payload(data, evidence=[])

    now = datetime.now(UTC)
    with services.factory() as session:
        grid = services.grid_cache.get(session)
        first = ingest(
            session,
            incident("first", now - timedelta(hours=20)),
            grid=grid,
            policy=MergePolicy(),
            actor=SYSTEM,
        )
        team = session.scalar(select(Case.team).where(Case.id == first.case_id))
        moves = [
            workflow.Move(workflow.FILED),
            workflow.Move(workflow.DISPATCHED, team=team),
            workflow.Move(workflow.HANDLED, note="towed", has_photo=True),
            workflow.Move(workflow.VERIFIED),
            workflow.Move(workflow.CLOSED),
        ]
        for move in moves:
            photo = services.store.put_bytes(jpeg_bytes("after")) if move.has_photo else None
            transition(session, principal=operator, case_id=first.case_id, move=move, photo=photo)
        session.commit()
        late = ingest(
            session, incident("late", now - timedelta(hours=1)), grid=grid, policy=MergePolicy(), actor=SYSTEM
        )
        session.commit()
        assert (late.case_id, late.status, late.recurrence) == (first.case_id, "closed", False)
        assert late.before_close
        assert audit(session).problems == []


def test_a_case_closed_outside_the_service_is_closed_since_its_last_change(services: Services) -> None:
    """A case closed by an import or by hand in SQL has no closing in its history: its updated_at,
    when it was last changed, is taken as its closing. A sighting seen by then leaves it closed (and
    its updated_at as it was), one seen after reopens it, as for a case closed through the workflow.
    (Every sighting of such a case once reopened it.)"""
    import_demo_grid(services)
    now = datetime.now(UTC)
    closed_at = now - timedelta(hours=2)

    def seen(name: str, when: datetime) -> Any:
        data = IncidentPayload.model_validate(incident_json(name, when=_iso(when), position=PLACE))
        with services.factory() as session:
            grid = services.grid_cache.get(session)
            result = ingest(
                session,
                IncidentIn.from_payload(data, evidence=[]),
                grid=grid,
                policy=MergePolicy(),
                actor=SYSTEM,
            )
            session.commit()
        return result

    case_id = seen("first", now - timedelta(hours=20)).case_id
    with services.factory() as session:  # an edit outside the service: no history row, no custody entry
        session.execute(
            update(Case)
            .where(Case.id == case_id)
            .values(status=workflow.CLOSED, updated_at=closed_at.replace(tzinfo=None))
        )
        session.commit()
    late = seen("late", closed_at - timedelta(minutes=30))
    assert (late.case_id, late.status, late.recurrence, late.before_close) == (case_id, "closed", False, True)
    again = seen("again", closed_at + timedelta(minutes=30))
    assert (again.case_id, again.status, again.recurrence) == (case_id, "pending_review", True)
    with services.factory() as session:
        actions = session.scalars(
            select(CaseEvent.action).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        ).all()
    assert actions == ["created", "seen_before_close", "reopened"]
