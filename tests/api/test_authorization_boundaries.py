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


def test_the_pages_take_a_case_number_like_its_id_and_hide_another_teams_case_alike(
    server: LiveServer,
) -> None:
    """README: `/cases/GP-2026-000123` works like the id. A number of another team's case is the
    page's plain "not found", as an unknown number is; a move posted to it moves nothing."""
    with (
        server.client("device") as device,
        server.client("operator") as api,
        server.browser("operator") as operator,
        server.browser("hubin") as hubin,
    ):
        made = post_incident(device, incident_json("page-by-number")).json()
        number, case_id = made["case_number"], made["case_id"]
        page = operator.get(f"/cases/{number}")
        assert page.status_code == 200 and number in page.text
        moved = operator.post(f"/cases/{number}/move", data={"to": "filed"}, follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"] == f"/cases/{case_id}?done=filed"
        assert api.get(f"/api/cases/{case_id}").json()["status"] == "filed"
        assert api.post(f"/api/cases/{case_id}/transitions", json={"to": "dispatched"}).status_code == 200

        unknown = hubin.get("/cases/GP-2026-000999")
        assert unknown.status_code == 404
        hidden = hubin.get(f"/cases/{number}")
        assert hidden.status_code == 404 and "<title>Not found" in hidden.text
        assert hidden.text.replace(number, "GP-2026-000999") == unknown.text  # the same page, word for word
        assert hubin.get(f"/tasks/{number}").status_code == 404
        photo = {"photo": ("after.jpg", jpeg_bytes("hubin-guess"), "image/jpeg")}
        refused = hubin.post(f"/cases/{number}/move", data={"to": "handled", "note": "towed"}, files=photo)
        assert refused.status_code == 404
        assert api.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"
