"""An enforcement team's task list (/tasks), probed over a real HTTP server (probe findings,
2026-12-05): which cases it shows, in which order, and how it pages."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from api.storage.models import Case, CaseEvent
from tests.api.api_testkit import LiveServer, incident_json, post_incident

START = datetime(2026, 11, 1, 8, 0)


def _seed_dispatched(server: LiveServer, count: int, team: str = "team-ziyang") -> list[str]:
    """`count` cases dispatched to `team`, the k-th dispatched k minutes after START and last seen in the
    opposite order (the oldest dispatch was seen last); their numbers, oldest dispatch first."""
    numbers = []
    with server.services.factory() as session:
        for k in range(count):
            seen = START - timedelta(days=1) + timedelta(minutes=count - k)
            number = f"GP-2026-{900000 + k:06d}"
            case = Case(
                number=number,
                category="illegal_parking",
                status="dispatched",
                grid_cell_id="DEMO-ZIYANG-01",
                team=team,
                first_seen=seen,
                last_seen=seen,
                sightings_count=1,
                updated_at=START + timedelta(minutes=k),
            )
            session.add(case)
            session.flush()
            at = START + timedelta(minutes=k)
            session.add_all(
                [
                    CaseEvent(case_id=case.id, at=at, actor="user:operator", action="filed"),
                    CaseEvent(
                        case_id=case.id,
                        at=at,
                        actor="user:operator",
                        action="dispatched",
                        from_status="filed",
                        to_status="dispatched",
                    ),
                ]
            )
            numbers.append(number)
        session.commit()
    return numbers


def _shown(html: str) -> list[str]:
    return re.findall(r'data-number="(GP-[0-9-]+)"', html)


def test_the_oldest_dispatch_is_never_left_out(make_server: Any, sqlite_url: str) -> None:
    """Over 500 dispatched cases: the list took the 500 least recently seen, then sorted them by
    dispatch, so the count said 520 and the 20 oldest dispatches were nowhere. The list is chosen in
    the database in the order shown and pages through all of them."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    numbers = _seed_dispatched(server, 520)
    with server.browser("ziyang") as phone, server.browser("hubin") as other_team:
        first = phone.get("/tasks")
        assert first.status_code == 200
        assert "520 to handle" in first.text
        assert _shown(first.text) == numbers[:50]
        assert "Showing 1–50 of 520" in first.text and "Page 1 of 11" in first.text
        assert 'href="/tasks?page=2"' in first.text

        seen = []
        for page in range(1, 7):
            seen += _shown(phone.get(f"/tasks?page={page}&per_page=100").text)
        assert seen == numbers  # every case once, oldest dispatch first

        past = phone.get("/tasks?page=40")
        assert past.status_code == 200 and _shown(past.text) == []
        assert "past the end of the list" in past.text and 'href="/tasks?page=1"' in past.text
        bad = phone.get("/tasks?page=x&per_page=5000")
        assert bad.status_code == 200 and _shown(bad.text) == numbers[:50]
        assert "Page is not a valid number" in bad.text and "Per page is not a valid number" in bad.text

        assert _shown(other_team.get("/tasks").text) == []


def test_a_case_sent_back_comes_first_and_says_so(make_server: Any, sqlite_url: str) -> None:
    """A case sent back (verification found the problem still there) sorted by its send-back, behind
    the new work, and nothing said it had come back. The cases sent back come first, each group by
    when the work was first dispatched, marked in both languages on the list and on the task page."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    photo = {"photo": ("after.jpg", b"\xff\xd8\xff\xe0 an after-photo \xff\xd9", "image/jpeg")}
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.client("ziyang") as team,
        server.browser("ziyang") as phone,
    ):
        a, b, c, d = (_dispatched(device, office, f"back-{k}", 30.2500 + k / 1000) for k in range(4))
        for case_id in (d, b):  # handled, then found still there: d sent back before b
            handled = team.post(
                f"/api/cases/{case_id}/transitions", data={"to": "handled", "note": "moved on"}, files=photo
            )
            assert handled.status_code == 200, handled.text
        for case_id in (d, b):
            back = office.post(
                f"/api/cases/{case_id}/transitions", json={"to": "dispatched", "note": "still parked there"}
            )
            assert back.status_code == 200, back.text
        number = {case_id: office.get(f"/api/cases/{case_id}").json()["number"] for case_id in (a, b, c, d)}

        listed = phone.get("/tasks")
        assert _shown(listed.text) == [number[b], number[d], number[a], number[c]]
        assert "Sent back first, then oldest dispatch first" in listed.text
        items = {
            n: item for n, item in re.findall(r'data-number="(GP-[0-9-]+)"(.*?)</li>', listed.text, re.S)
        }
        for sent_back in (b, d):
            assert 'data-sent-back="1"' in items[number[sent_back]]
            assert "Sent back</span>" in items[number[sent_back]]
            assert "verification found the problem still there" in items[number[sent_back]]
        for new in (a, c):
            assert "Sent back" not in items[number[new]] and "data-sent-back" not in items[number[new]]

        task = phone.get(f"/tasks/{b}")
        assert 'id="sent-back"' in task.text and "came back to your team" in task.text
        assert 'id="sent-back"' not in phone.get(f"/tasks/{a}").text

        phone.cookies.set("gp_lang", "zh-CN")
        assert "退回重办的在前" in phone.get("/tasks").text and "退回重办" in phone.get(f"/tasks/{b}").text


def _dispatched(device: Any, office: Any, seed: str, lat: float) -> int:
    """A case of team-ziyang (DEMO-ZIYANG-0x) dispatched to it through the API; its id."""
    case_id = int(post_incident(device, incident_json(seed, position=(lat, 120.16))).json()["case_id"])
    for to in ("filed", "dispatched"):
        moved = office.post(f"/api/cases/{case_id}/transitions", json={"to": to})
        assert moved.status_code == 200, moved.text
    return case_id
