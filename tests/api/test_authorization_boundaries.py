"""Authorization boundaries probed as a hostile or careless caller would, over a real HTTP server: what
another team's enforcement learns by guessing case numbers."""

from __future__ import annotations

import pytest

from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident

HUBIN_SPOT = (30.25, 120.134)  # in DEMO-HUBIN-01 (team-hubin); incident_json's default is team-ziyang's


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(sqlite_url, run_webhooks=False)


def test_another_teams_case_by_number_answers_as_an_unknown_number(server: LiveServer) -> None:
    """Guessing case numbers tells an enforcement user neither that another team's case exists nor
    its id: the 404 is the one a number no case has, naming the number as sent."""
    with server.client("device") as device, server.client("hubin") as hubin:
        ziyang_case = post_incident(device, incident_json("ziyang-case")).json()
        own = post_incident(device, incident_json("hubin-case", position=HUBIN_SPOT)).json()
        number, case_id = ziyang_case["case_number"], ziyang_case["case_id"]
        assert hubin.get(f"/api/cases/{own['case_number']}").status_code == 200
        unknown = hubin.get("/api/cases/GP-2026-000999")
        assert unknown.status_code == 404
        photo = {"photo": ("after.jpg", jpeg_bytes("guess"), "image/jpeg")}
        for hidden in (
            hubin.get(f"/api/cases/{number}"),
            hubin.post(f"/api/cases/{number}/transitions", data={"to": "handled", "note": "x"}, files=photo),
            hubin.post(f"/api/cases/{number}/transitions", json={"to": "handled", "note": "x"}),
        ):
            assert hidden.status_code == 404, hidden.text
            body = hidden.json()
            assert body == {
                "detail": f"case_id: no case {number}",
                "errors": [{"field": "case_id", "reason": f"no case {number}"}],
            }
            assert str(case_id) not in body["detail"].replace(number, "")
        # by id it is the unknown id's answer, as before
        by_id = hubin.get(f"/api/cases/{case_id}")
        assert by_id.status_code == 404 and by_id.json()["detail"] == f"case_id: no case {case_id}"
