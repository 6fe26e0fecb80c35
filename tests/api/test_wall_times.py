"""Date-times at the edge of the calendar: every date-time input of the API takes 1970 .. 2199 (UTC) and
answers a time outside it with a 422 naming the field, never a 500 (an OverflowError converting year 1
at +14:00 to UTC, or adding the merge window to 9999-12-31); the case list page names it as a bad time.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from api.cases.wall_time import WallTimeError, parse_wall_time
from api.http.cookies import SESSION_COOKIE
from tests.api.api_testkit import LiveServer, evidence_files, incident_json

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
YEAR_1 = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-12:00"


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def _query(path: str, name: str, value: str) -> Any:
    return lambda client: client.get(path, params={name: value})


def _incident(key: str, value: str, *, evidence: bool = False) -> Any:
    """An incident with `key` set to `value`; a first_seen_wall is its last_seen_wall too (an incident
    lasts at most 7 days: test_an_incident_longer_than_7_days_is_a_422_naming_its_last_time)."""

    def send(client: httpx.Client) -> httpx.Response:
        data = incident_json(f"edge-{key}-{value}")
        if evidence:
            data["evidence"][0]["wall_time"] = value
        else:
            data[key] = value
            if key == "first_seen_wall":
                data["last_seen_wall"] = value
        return client.post("/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data))

    return send


def _upload(start_time: str) -> Any:
    def send(client: httpx.Client) -> httpx.Response:
        body = MP4_HEAD + start_time.encode() * 64
        return client.post(
            "/api/uploads",
            files={"file": ("edge.mp4", body, "video/mp4")},
            data={"start_time": start_time},
        )

    return send


# (who, request, the field a 422 names); every one of these was a 500 before
OUT_OF_RANGE = [
    ("admin", _query("/api/cases", "since", YEAR_1), "since"),  # ?since=0001-01-01T00:00:00%2B14:00
    ("admin", _query("/api/cases", "until", YEAR_9999), "until"),
    ("admin", _query("/api/stats", "since", YEAR_1), "since"),
    ("admin", _query("/api/stats", "until", YEAR_9999), "until"),
    ("device", _incident("first_seen_wall", "0001-01-01T00:00:00Z"), "incident.first_seen_wall"),
    ("device", _incident("last_seen_wall", YEAR_9999), "incident.last_seen_wall"),
    ("device", _incident("first_seen_wall", YEAR_1), "incident.first_seen_wall"),
    ("device", _incident("wall_time", YEAR_1, evidence=True), "incident.evidence.0.wall_time"),
    ("device", _upload(YEAR_9999), "start_time"),
    ("device", _upload(YEAR_1), "start_time"),
    ("device", _upload("0001-01-01T00:00:00Z"), "start_time"),
    # Unix seconds past 2200 (this one was read as milliseconds, 2001-09-09, and stored; not a 500)
    ("device", _incident("first_seen_wall", 1e12), "incident.first_seen_wall"),  # type: ignore[arg-type]
    ("device", _incident("last_seen_wall", "1000000000000"), "incident.last_seen_wall"),
]


@pytest.mark.parametrize(("who", "send", "field"), OUT_OF_RANGE)
def test_a_time_off_the_calendar_is_a_422_naming_its_field(
    server: LiveServer, who: str, send: Any, field: str
) -> None:
    with server.client(who) as client:
        response = send(client)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == field
    assert "1970-01-01T00:00:00Z" in error["reason"] and "2200-01-01T00:00:00Z" in error["reason"]


# the edges of the range itself are taken
IN_RANGE = [
    ("admin", _query("/api/cases", "since", "1970-01-01T00:00:00Z"), 200),
    ("admin", _query("/api/cases", "until", "2199-12-31T23:59:59.999999Z"), 200),
    ("admin", _query("/api/stats", "since", "1970-01-01T08:00:00+08:00"), 200),
    ("device", _incident("first_seen_wall", "1970-01-01T00:00:00Z"), 201),
    ("device", _incident("first_seen_wall", "2199-12-31T23:59:59Z"), 201),
    ("device", _upload("2199-12-31T23:59:59Z"), 201),
    ("device", _incident("first_seen_wall", 1764000000), 201),  # type: ignore[arg-type]  # Unix seconds
]


@pytest.mark.parametrize(("who", "send", "status"), IN_RANGE)
def test_the_edges_of_the_range_are_taken(server: LiveServer, who: str, send: Any, status: int) -> None:
    with server.client(who) as client:
        response = send(client)
    assert response.status_code == status, response.text


def test_the_case_list_page_names_a_time_off_the_calendar(server: LiveServer) -> None:
    cookies = {SESSION_COOKIE: server.tokens["admin"]}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as page:
        for since in ("0001-01-01", YEAR_1, "9999-12-31T23:59:59-12:00"):
            response = page.get("/cases", params={"since": since, "until": "9999-12-31"})
            assert response.status_code == 200, response.text[-2000:]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not a time", "'not a time' is not an ISO 8601 date-time"),
        ("1969-12-31T23:59:59Z", "must be from 1970-01-01T00:00:00Z"),
        ("2200-01-01T00:00:00Z", "must be from 1970-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00+14:00", "must be from 1970-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59-12:00", "must be from 1970-01-01T00:00:00Z"),
    ],
)
def test_parse_wall_time_names_the_field(text: str, reason: str) -> None:
    with pytest.raises(WallTimeError) as caught:
        parse_wall_time(text, "start_time")
    assert caught.value.field == "start_time" and caught.value.reason.startswith(reason)


def test_parse_wall_time_keeps_the_offset() -> None:
    assert parse_wall_time("2026-11-20T09:00:00+08:00", "x").isoformat() == "2026-11-20T09:00:00+08:00"
    assert parse_wall_time(" 2026-11-20T01:00:00Z ", "x").isoformat() == "2026-11-20T01:00:00+00:00"


def test_an_incident_longer_than_7_days_is_a_422_naming_its_last_time(server: LiveServer) -> None:
    """A first time years before the last (a wrong clock, a stale first time) would date the case's
    first sighting back that far: refused, nothing filed; 7 days is taken."""
    with server.client("device") as device, server.client("admin") as admin:
        years = incident_json("years", when="2023-11-20T09:00:00+08:00", until="2026-11-20T09:00:00+08:00")
        refused = device.post(
            "/api/incidents", data={"incident": json.dumps(years)}, files=evidence_files(years)
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()["errors"][0]
        assert error["field"] == "incident.last_seen_wall"
        assert error["reason"] == "must be at most 7 days after first_seen_wall (it is 1096.0 days after it)"
        assert admin.get("/api/cases").json()["total"] == 0
        week = incident_json("week", when="2026-11-13T09:00:00+08:00", until="2026-11-20T09:00:00+08:00")
        taken = device.post("/api/incidents", data={"incident": json.dumps(week)}, files=evidence_files(week))
        assert taken.status_code == 201, taken.text
        case = admin.get(f"/api/cases/{taken.json()['case_id']}").json()
    assert (case["first_seen"], case["last_seen"]) == ("2026-11-13T01:00:00Z", "2026-11-20T01:00:00Z"), case
