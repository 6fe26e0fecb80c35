"""An enforcement team's task list (/tasks), probed over a real HTTP server (probe findings,
2026-12-05): which cases it shows, in which order, and how it pages."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from api.storage.models import Case, CaseEvent
from tests.api.api_testkit import LiveServer, incident_json, post_incident

START = datetime(2026, 11, 1, 8, 0)


def _seed_dispatched(
    server: LiveServer,
    count: int,
    team: str = "team-ziyang",
    places: dict[int, tuple[float, float]] | None = None,
    sent_back: frozenset[int] = frozenset(),
) -> list[str]:
    """`count` cases dispatched to `team`, the k-th dispatched k minutes after START and last seen in the
    opposite order (the oldest dispatch was seen last); their numbers, oldest dispatch first. The k-th
    is at places[k] (lat, lon) if given, else nowhere; those in `sent_back` were handled and sent
    back an hour after the last dispatch."""
    numbers = []
    places = places or {}
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
                lat=places[k][0] if k in places else None,
                lon=places[k][1] if k in places else None,
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
            if k in sent_back:
                later = START + timedelta(minutes=count + 60)
                session.add_all(
                    [
                        CaseEvent(
                            case_id=case.id,
                            at=later,
                            actor="user:ziyang",
                            action="handled",
                            from_status="dispatched",
                            to_status="handled",
                        ),
                        CaseEvent(
                            case_id=case.id,
                            at=later,
                            actor="user:operator",
                            action="dispatched",
                            from_status="handled",
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


HERE = (30.2500, 120.1600)  # the phone's position


def _metres(place: tuple[float, float]) -> float:
    """Great-circle distance from HERE (haversine)."""
    (lat1, lon1), (lat2, lon2) = (map(math.radians, p) for p in (HERE, place))
    a = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


def test_nearest_first_orders_all_the_tasks_before_paging(make_server: Any, sqlite_url: str) -> None:
    """Nearest first only re-sorted the page shown (in the browser): with 60 tasks the nearest, the
    newest dispatch, was on page 2 while page 1 showed far ones "nearest first". With the phone's
    position (near=LAT,LON) the database orders all the team's tasks by distance, then pages them:
    the cases sent back still first, those without a position last, the pager keeping the position."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    count = 60
    # the k-th case 220 m away and 22 m further for each step of a shuffled rank, but the newest
    # dispatch the nearest (11 m), then one 96 m east (a degree of longitude is shorter than one of
    # latitude here) before one 100 m north; the two oldest nowhere; the fourth oldest sent back, 5.6 km away
    places = {k: (HERE[0] + ((k * 37) % count + 10) * 0.0002, HERE[1]) for k in range(2, count)}
    places[count - 1] = (HERE[0] + 0.0001, HERE[1])
    places[count - 2], places[count - 3] = (HERE[0], HERE[1] + 0.0010), (HERE[0] + 0.0009, HERE[1])
    places[3] = (HERE[0] + 0.05, HERE[1])
    numbers = _seed_dispatched(server, count, places=places, sent_back=frozenset({3}))
    by_distance = sorted((k for k in places if k != 3), key=lambda k: _metres(places[k]))
    assert by_distance[:3] == [count - 1, count - 2, count - 3]
    expected = [numbers[k] for k in [3, *by_distance, 0, 1]]
    near = f"{HERE[0]},{HERE[1]}"
    with server.browser("ziyang") as phone:
        first = phone.get("/tasks", params={"near": near})
        assert first.status_code == 200
        assert _shown(first.text) == expected[:50]
        assert "Sent back first, then nearest first" in first.text
        assert "the pages go on from the nearest" in first.text
        assert f'data-near-lat="{HERE[0]}" data-near-lon="{HERE[1]}"' in first.text
        next_page = re.search(r'href="([^"]+)" rel="next"', first.text)
        assert next_page is not None and "near=30.25%2C120.16" in next_page[1]
        second = phone.get(next_page[1].replace("&amp;", "&"))
        assert _shown(second.text) == expected[50:]
        assert _shown(phone.get("/tasks", params={"near": near, "per_page": 100}).text) == expected

        default = [numbers[k] for k in [3, *(k for k in range(count) if k != 3)]]
        assert _shown(phone.get("/tasks").text) == default[:50]
        for bad in ("somewhere", "91,120", "30.25", "nan,inf", "30.25,120.16,7"):
            refused = phone.get("/tasks", params={"near": bad})
            assert refused.status_code == 200 and _shown(refused.text) == default[:50]
            assert f"“{bad}” is not a position (latitude,longitude) and was ignored" in refused.text
            assert "data-near-lat" not in refused.text


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


def test_the_list_and_the_task_page_show_the_same_dispatch(make_server: Any, sqlite_url: str) -> None:
    """A case sent back (dispatched again) showed on the list when it was first dispatched, and on its
    task page when it was sent back: two times for one case, a day apart. Both show when it was last
    dispatched to the team, and the task page also when it was first dispatched; a case dispatched
    once shows that one time."""
    from api.http.pages.cases import local_time
    from api.storage.db import utcnow

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    photo = {"photo": ("after.jpg", b"\xff\xd8\xff\xe0 an after-photo \xff\xd9", "image/jpeg")}
    now = utcnow().replace(second=0, microsecond=0)
    first_sent, handled_at = now - timedelta(days=3), now - timedelta(days=2)
    sent_back = now - timedelta(hours=5)
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.client("ziyang") as team,
        server.browser("ziyang") as phone,
    ):
        again, once = (_dispatched(device, office, f"when-{k}", 30.2600 + k / 1000) for k in range(2))
        handled = team.post(
            f"/api/cases/{again}/transitions", data={"to": "handled", "note": "moved on"}, files=photo
        )
        assert handled.status_code == 200, handled.text
        back = office.post(
            f"/api/cases/{again}/transitions", json={"to": "dispatched", "note": "still there"}
        )
        assert back.status_code == 200, back.text
        with server.services.factory() as session:  # the moves days apart, as in the street
            for event in session.query(CaseEvent).filter(CaseEvent.case_id.in_((again, once))):
                if event.to_status == "handled":
                    event.at = handled_at
                elif event.to_status == "dispatched":
                    event.at = sent_back if event.from_status == "handled" else first_sent
            session.commit()
        offset = timezone(timedelta(hours=server.services.settings.timezone_offset_h))

        items = dict(re.findall(r'data-case-id="(\d+)"(.*?)</li>', phone.get("/tasks").text, re.S))
        assert "dispatched 5 h ago" in items[str(again)], items[str(again)]
        assert "dispatched 3 days ago" in items[str(once)], items[str(once)]

        page = phone.get(f"/tasks/{again}").text
        assert f'<span id="dispatched-at">dispatched {local_time(sent_back, offset)}</span>' in page
        first = local_time(first_sent, offset)
        assert f'<span id="first-dispatched-at">first dispatched {first}</span>' in page
        page = phone.get(f"/tasks/{once}").text
        assert f'<span id="dispatched-at">dispatched {local_time(first_sent, offset)}</span>' in page
        assert 'id="first-dispatched-at"' not in page

        phone.cookies.set("gp_lang", "zh-CN")
        page = phone.get(f"/tasks/{again}").text
        assert f"首次派遣于 {first}" in page
