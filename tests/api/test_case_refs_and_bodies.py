"""A case is named in an API path by its id or by its number (GP-2026-000001, as the demo prints it),
resolved in one place; transitions and login take JSON bodies as well as forms."""

from __future__ import annotations

import pytest

from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def test_a_case_is_found_by_its_number_wherever_its_id_is_taken(server: LiveServer) -> None:
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.client("ziyang") as ziyang,
        server.client("hubin") as hubin,
    ):
        made = post_incident(device, incident_json("by-number")).json()
        case_id, number = made["case_id"], made["case_number"]
        assert number == f"GP-2026-{case_id:06d}"
        by_number = op.get(f"/api/cases/{number}")
        assert by_number.status_code == 200, by_number.text
        assert by_number.json() == op.get(f"/api/cases/{case_id}").json()
        filed = op.post(f"/api/cases/{number}/transitions", data={"to": "filed"})
        assert filed.status_code == 200 and filed.json()["id"] == case_id, filed.text
        dispatched = op.post(f"/api/cases/{number}/transitions", json={"to": "dispatched"})
        assert dispatched.status_code == 200 and dispatched.json()["team"] == "team-ziyang", dispatched.text
        photo = {"photo": ("after.jpg", jpeg_bytes("after-by-number"), "image/jpeg")}
        handled = ziyang.post(
            f"/api/cases/{number}/transitions", data={"to": "handled", "note": "towed"}, files=photo
        )
        assert handled.status_code == 200 and handled.json()["status"] == "handled", handled.text
        # another team's case is as invisible by its number as by its id
        assert hubin.get(f"/api/cases/{number}").status_code == 404
        assert hubin.get(f"/api/cases/{case_id}").status_code == 404


@pytest.mark.parametrize(
    ("ref", "status"),
    [
        ("GP-2026-999999", 404),  # no such number: like no such id
        ("999999", 404),
        ("GP-1999-000001", 404),  # the id exists, the number does not
        ("2147483648", 422),  # past the largest id
        ("0", 422),
        ("-1", 422),
        ("gp-2026-000001", 422),
        ("GP-2026-1", 422),
        ("case-1", 422),
    ],
)
def test_an_unknown_or_malformed_case_reference(server: LiveServer, ref: str, status: int) -> None:
    with server.client("device") as device, server.client("operator") as op:
        assert post_incident(device, incident_json("known")).json()["case_id"] == 1
        for response in (
            op.get(f"/api/cases/{ref}"),
            op.post(f"/api/cases/{ref}/transitions", json={"to": "filed"}),
        ):
            assert response.status_code == status, response.text
            assert response.json()["errors"][0]["field"] == "case_id"


def test_transitions_take_json_as_well_as_forms(server: LiveServer) -> None:
    with server.client("device") as device, server.client("operator") as op:
        case_id = post_incident(device, incident_json("json-moves")).json()["case_id"]
        url = f"/api/cases/{case_id}/transitions"
        no_reason = op.post(url, json={"to": "rejected", "note": None})
        assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
        bad = op.post(url, json={"to": "nowhere", "note": "x" * 4001})
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["to", "note"]
        conflict = op.post(url, json={"to": "closed"})
        assert conflict.status_code == 409 and conflict.json()["allowed"] == ["filed", "rejected"]
        rejected = op.post(url, json={"to": "rejected", "reason": "duplicate", "note": "seen twice"})
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected" and rejected.json()["reject_reason"] == "duplicate"
        # an empty form field is not sent, as with FastAPI's form parameters
        other = post_incident(device, incident_json("form-moves", position=(30.2841, 120.1651))).json()
        filed = op.post(
            f"/api/cases/{other['case_id']}/transitions", data={"to": "filed", "reason": "", "team": ""}
        )
        assert filed.status_code == 200 and filed.json()["status"] == "filed", filed.text


@pytest.mark.parametrize("as_json", [True, False])
def test_login_takes_json_as_well_as_a_form(server: LiveServer, as_json: bool) -> None:
    with server.client() as anyone:

        def login(**fields: str) -> object:
            return anyone.post("/api/auth/token", **({"json": fields} if as_json else {"data": fields}))

        good = login(username="operator", password="password-operator")
        assert good.status_code == 200, good.text  # type: ignore[attr-defined]
        token = good.json()["access_token"]  # type: ignore[attr-defined]
        me = anyone.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["name"] == "operator"
        wrong = login(username="operator", password="wrong-password")
        assert wrong.status_code == 401  # type: ignore[attr-defined]
        missing = login(username="operator")
        assert missing.status_code == 422  # type: ignore[attr-defined]
        assert missing.json()["errors"][0]["field"] == "password"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"username": "operator", ', 400),
        ("application/json", b'["operator", "password-operator"]', 422),
        ("text/plain", b"username=operator&password=password-operator", 415),
        ("application/xml", b"<login/>", 415),
    ],
)
def test_a_body_that_is_neither_json_nor_a_form(
    server: LiveServer, content_type: str, body: bytes, status: int
) -> None:
    with server.client("operator") as op:
        for url in ("/api/auth/token", "/api/cases/1/transitions"):
            response = op.post(url, content=body, headers={"Content-Type": content_type})
            assert response.status_code == status, response.text  # the body is read before the case
            assert response.json()["errors"][0]["field"] == "body"


def test_the_openapi_document_shows_both_bodies(server: LiveServer) -> None:
    with server.client() as anyone:
        doc = anyone.get("/openapi.json").json()
    for path, method in (("/api/auth/token", "post"), ("/api/cases/{case_id}/transitions", "post")):
        content = doc["paths"][path][method]["requestBody"]["content"]
        assert set(content) == {
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        }
        assert "$defs" not in str(content) and "$ref" not in str(content)
    transition = doc["paths"]["/api/cases/{case_id}/transitions"]["post"]
    multipart = transition["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert multipart["photo"]["format"] == "binary"
    assert "photo" not in transition["requestBody"]["content"]["application/json"]["schema"]["properties"]
    case_id = next(p for p in transition["parameters"] if p["name"] == "case_id")
    assert case_id["in"] == "path" and case_id["schema"]["type"] == "string"


def test_a_body_that_is_not_json_is_named_as_the_body(server: LiveServer) -> None:
    """A JSON body the route's model reads (POST /api/users) that is not JSON: the body is named, not a
    character position as if it were a field."""
    with server.client("admin") as admin:
        bad = admin.post(
            "/api/users", content=b'{"username": "x",', headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 422, bad.text
        field, reason = bad.json()["errors"][0]["field"], bad.json()["errors"][0]["reason"]
        assert field == "body" and reason.startswith("not valid JSON at character 17: "), reason
        assert all(u["username"] != "x" for u in admin.get("/api/users").json())


def test_a_form_field_that_is_not_utf8_is_refused_naming_it_and_nothing_changes(server: LiveServer) -> None:
    """Starlette reads such bytes as U+FFFD: the note was stored other than sent (JSON refuses them)."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    with server.client("device") as device, server.client("operator") as op:
        case_id = post_incident(device, incident_json("latin-note")).json()["case_id"]
        r = op.post(f"/api/cases/{case_id}/transitions", content=b"to=filed&note=caf%E9", headers=form)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [
            {"field": "note", "reason": "is not UTF-8 text (byte 0xe9 at position 3)"}
        ]
        case = op.get(f"/api/cases/{case_id}").json()
        assert case["status"] == "pending_review" and len(case["history"]) == 1, case["history"]
        sent = "to=filed&note=" + "caf%C3%A9+%E2%9C%93"  # the same note in UTF-8 is taken as sent
        r = op.post(f"/api/cases/{case_id}/transitions", content=sent.encode(), headers=form)
        assert r.status_code == 200, r.text
        assert op.get(f"/api/cases/{case_id}").json()["history"][-1]["note"] == "café ✓"
