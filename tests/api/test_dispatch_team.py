"""Dispatching a case to a team: the case takes the team, the history and custody chain say so, the team's
people see it and the former team's no longer do; a team no grid cell has is refused by name. Over real
databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from api.accounts.accounts import SYSTEM, Principal
from api.cases import custody, workflow
from api.cases.acting import dispatch_teams, dispatched_team, transition
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, ingest
from api.cases.merge import MergePolicy
from api.cases.reading import CaseFilter, NotFound, get_case, list_cases
from api.services import Services
from api.storage.evidence_store import StoredFile
from api.storage.models import CaseEvent, CustodyEntry
from tests.api.api_testkit import import_demo_grid, incident_json, post_incident

OPERATOR = Principal(kind="user", name="op", role="operator", user_id=1)
ZIYANG = Principal(kind="user", name="z", role="enforcement", team="team-ziyang")
HUBIN = Principal(kind="user", name="h", role="enforcement", team="team-hubin")


@pytest.fixture
def filed_case(services: Services) -> int:
    """A case in DEMO-ZIYANG-04 (team-ziyang), filed."""
    import_demo_grid(services)
    payload = IncidentPayload.model_validate(incident_json("dispatch-a"))
    evidence = [
        (e.role, StoredFile(sha256=e.sha256, size=10, media_type="image/jpeg")) for e in payload.evidence
    ]
    with services.factory() as session:
        result = ingest(
            session,
            IncidentIn.from_payload(payload, evidence=evidence),
            grid=services.grid_cache.get(session),
            policy=MergePolicy(15.0, 24.0),
            actor=SYSTEM,
        )
        transition(session, principal=OPERATOR, case_id=result.case.id, move=workflow.Move("filed"))
        session.commit()
        assert result.case.team == "team-ziyang"
        return result.case.id


def _custody(services: Services, case_id: int) -> list[CustodyEntry]:
    with services.factory() as session:
        return list(
            session.scalars(
                select(CustodyEntry).where(CustodyEntry.case_id == case_id).order_by(CustodyEntry.seq)
            )
        )


def test_dispatch_to_another_team(services: Services, filed_case: int) -> None:
    with services.factory() as session:
        assert "team-hubin" in dispatch_teams(session) and "team-ziyang" in dispatch_teams(session)
        move = workflow.Move("dispatched", note="the ziyang team is busy", team="team-hubin")
        case = transition(session, principal=OPERATOR, case_id=filed_case, move=move)
        session.commit()
        assert (case.status, case.team) == ("dispatched", "team-hubin")
    with services.factory() as session:
        event = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == filed_case).order_by(CaseEvent.id.desc())
        ).first()
        assert event is not None and event.to_status == "dispatched"
        assert event.note == "dispatched to team-hubin\nthe ziyang team is busy"
        assert dispatched_team(event.note) == ("team-hubin", "the ziyang team is busy")
        # the new team sees it, the former one does not
        assert get_case(session, principal=HUBIN, case_id=filed_case).team == "team-hubin"
        with pytest.raises(NotFound):
            get_case(session, principal=ZIYANG, case_id=filed_case)
        assert list_cases(session, principal=ZIYANG, filters=CaseFilter())[1] == 0
    entries = _custody(services, filed_case)
    last = json.loads(entries[-1].detail)
    assert (
        last["team"] == "team-hubin" and last["team_before"] == "team-ziyang" and last["to"] == "dispatched"
    )
    assert custody.verify_chain(entries, filed_case) == []


def test_dispatch_without_a_team_keeps_the_cells_team(services: Services, filed_case: int) -> None:
    with services.factory() as session:
        case = transition(session, principal=OPERATOR, case_id=filed_case, move=workflow.Move("dispatched"))
        session.commit()
        assert case.team == "team-ziyang"
        event = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == filed_case).order_by(CaseEvent.id.desc())
        ).first()
        assert event is not None and event.note is None
        assert dispatched_team(event.note) == (None, None)
    assert "team" not in json.loads(_custody(services, filed_case)[-1].detail)


@pytest.mark.parametrize(
    ("move", "field"),
    [
        (workflow.Move("dispatched", team="team-nowhere"), "team"),
        (workflow.Move("dispatched", team=""), "team"),
        (workflow.Move("dispatched", team="TEAM-HUBIN"), "team"),
    ],
)
def test_a_team_no_cell_has_is_refused_by_name(
    services: Services, filed_case: int, move: workflow.Move, field: str
) -> None:
    before = len(_custody(services, filed_case))
    with services.factory() as session:
        with pytest.raises(workflow.TransitionInputError) as err:
            transition(session, principal=OPERATOR, case_id=filed_case, move=move)
        session.rollback()
        assert err.value.field == field and err.value.status == 422
        case = get_case(session, principal=OPERATOR, case_id=filed_case)
        assert (case.status, case.team) == ("filed", "team-ziyang")
    assert len(_custody(services, filed_case)) == before


def test_a_team_is_given_only_when_dispatching() -> None:
    with pytest.raises(workflow.TransitionInputError) as err:
        workflow.check_move("pending_review", workflow.Move("filed", team="team-hubin"))
    assert err.value.field == "team"
    workflow.check_move("filed", workflow.Move("dispatched", team="team-hubin"))


def test_sending_back_may_change_the_team(services: Services, filed_case: int) -> None:
    photo = StoredFile(sha256="e" * 64, size=5, media_type="image/jpeg")
    with services.factory() as session:
        transition(session, principal=OPERATOR, case_id=filed_case, move=workflow.Move("dispatched"))
        transition(
            session,
            principal=ZIYANG,
            case_id=filed_case,
            move=workflow.Move("handled", note="towed", has_photo=True),
            photo=photo,
        )
        again = workflow.Move("dispatched", note="still there; hubin is nearer", team="team-hubin")
        case = transition(session, principal=OPERATOR, case_id=filed_case, move=again)
        session.commit()
        assert (case.status, case.team) == ("dispatched", "team-hubin")
    assert custody.verify_chain(_custody(services, filed_case), filed_case) == []


def test_the_api_takes_the_team_as_a_form_field(make_server: Any, db_url: str) -> None:
    live = make_server(db_url)
    operator, hubin = live.client("operator"), live.client("hubin")
    data = incident_json("dispatch-api")
    assert post_incident(live.client("device"), data).status_code in (200, 201)
    case_id = operator.get("/api/cases").json()["items"][0]["id"]
    assert operator.post(f"/api/cases/{case_id}/transitions", data={"to": "filed"}).status_code == 200
    assert hubin.get(f"/api/cases/{case_id}").status_code == 404
    wrong = operator.post(f"/api/cases/{case_id}/transitions", data={"to": "dispatched", "team": "team-x"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "team"
    r = operator.post(f"/api/cases/{case_id}/transitions", data={"to": "dispatched", "team": "team-hubin"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["team"] == "team-hubin" and body["history"][-1]["note"] == "dispatched to team-hubin"
    assert hubin.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"
    assert live.client("ziyang").get(f"/api/cases/{case_id}").status_code == 404


def test_a_case_of_no_team_is_dispatched_only_to_a_named_team(services: Services) -> None:
    """A case whose position is in no grid cell has no team: dispatched as it was, no enforcement user
    saw it and it sat dispatched to nobody. Refused naming team and the teams there are; nothing moves."""
    import_demo_grid(services)
    payload = IncidentPayload.model_validate(incident_json("no-team", position=None))
    with services.factory() as session:
        result = ingest(
            session,
            IncidentIn.from_payload(payload, evidence=[]),
            grid=services.grid_cache.get(session),
            policy=MergePolicy(15.0, 24.0),
            actor=SYSTEM,
        )
        case_id = result.case.id
        transition(session, principal=OPERATOR, case_id=case_id, move=workflow.Move("filed"))
        session.commit()
    before = len(_custody(services, case_id))
    with services.factory() as session:
        with pytest.raises(workflow.TransitionInputError) as err:
            transition(session, principal=OPERATOR, case_id=case_id, move=workflow.Move("dispatched"))
        session.rollback()
        assert err.value.field == "team" and err.value.status == 422
        assert "belongs to no team (grid cell unassigned)" in err.value.reason
        assert "team-hubin, team-nanxing" in err.value.reason, err.value.reason
        case = get_case(session, principal=OPERATOR, case_id=case_id)
        assert (case.status, case.team) == ("filed", None)
    assert len(_custody(services, case_id)) == before
    with services.factory() as session:
        case = transition(
            session, principal=OPERATOR, case_id=case_id, move=workflow.Move("dispatched", team="team-hubin")
        )
        session.commit()
        assert (case.status, case.team) == ("dispatched", "team-hubin")
        assert [c.id for c in list_cases(session, principal=HUBIN, filters=CaseFilter())[0]] == [case_id]
