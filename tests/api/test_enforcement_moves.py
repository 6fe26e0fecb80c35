"""A team member marking a case handled from a phone, probed over a real HTTP server (probe findings,
2026-12-05): what the after-photo may be, and what a stale or expired page tells the person."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.api.api_testkit import LiveServer, incident_json, post_incident

PDF = b"%PDF-1.4\n% an exhibit, not a photo\n" + b"x" * 200


def _dispatched(device: httpx.Client, office: httpx.Client, seed: str, lat: float) -> int:
    """A case of team-ziyang (DEMO-ZIYANG-0x) dispatched to it; its id."""
    case_id = int(post_incident(device, incident_json(seed, position=(lat, 120.16))).json()["case_id"])
    for to in ("filed", "dispatched"):
        moved = office.post(f"/api/cases/{case_id}/transitions", json={"to": to})
        assert moved.status_code == 200, moved.text
    return case_id


def test_an_after_photo_that_is_a_pdf_is_refused(make_server: Any, sqlite_url: str) -> None:
    """The evidence store keeps PDFs (exhibits), but an after-photo is what the verifier judges the
    place by: a PDF was taken, the case went to handled and the case page showed a broken image."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    sha = hashlib.sha256(PDF).hexdigest()
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.client("ziyang") as api,
        server.browser("ziyang") as phone,
    ):
        case_id = _dispatched(device, office, "pdf", 30.2500)
        photo = {"photo": ("after.pdf", PDF, "application/pdf")}
        refused = api.post(
            f"/api/cases/{case_id}/transitions", data={"to": "handled", "note": "towed"}, files=photo
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "photo"
        assert "not a JPEG, PNG, GIF or WebP image" in refused.json()["detail"]

        page = phone.post(
            f"/cases/{case_id}/move",
            data={"to": "handled", "from": "dispatched", "note": "towed away", "back": "task"},
            files=photo,
            follow_redirects=False,
        )
        assert page.status_code == 422, page.text[:300]
        assert "The after-photo must be a JPEG, PNG, GIF or WebP image" in page.text
        assert "towed away</textarea>" in page.text  # the typed note is kept
        assert office.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"
        assert not server.services.store.exists(sha)  # nothing of the refused move is kept


def test_a_move_sent_after_the_session_ended_says_it_was_not_saved(make_server: Any, sqlite_url: str) -> None:
    """A phone's session that ended (logged out elsewhere, the login's time up) while the after-photo
    was being taken: the form's post went to the login page, which said nothing, and the person took
    the case for handled. The login page says nothing was saved and to send it again, also after a
    mistyped password; a page merely opened after the session ended says nothing of the kind."""
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.client("operator") as office:
        case_id = _dispatched(device, office, "expired", 30.2500)
        task = f"{server.url}/tasks/{case_id}"
        with httpx.Client(
            base_url=server.url,
            cookies={SESSION_COOKIE: "a-token-that-ended", "gp_lang": "en"},
            follow_redirects=True,
            headers={"Accept": "text/html", "Referer": task},
            timeout=30,
        ) as phone:
            sent = phone.post(
                f"/cases/{case_id}/move",
                data={
                    "to": "handled",
                    "from": "dispatched",
                    "note": "towed",
                    "back": "task",
                    "csrf_token": "x",
                },
                files={"photo": ("after.jpg", b"\xff\xd8\xff\xe0 an after-photo \xff\xd9", "image/jpeg")},
            )
            assert sent.status_code == 200 and sent.url.path == "/login"
            assert sent.url.params["next"] == f"/tasks/{case_id}"
            notice = "You were logged out before what you sent arrived: nothing was saved."
            assert notice in sent.text and 'id="login-unsent"' in sent.text
            mistyped = phone.post(
                "/login",
                data={
                    "username": "ziyang",
                    "password": "wrong",
                    "login_csrf": phone.cookies["gp_login_csrf"],
                    "next": f"/tasks/{case_id}",
                    "unsent": "1",
                },
            )
            assert mistyped.status_code == 401 and notice in mistyped.text
            opened = phone.get(f"/tasks/{case_id}")
            assert opened.url.path == "/login" and notice not in opened.text
        assert office.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"


def test_a_move_sent_twice_is_named_as_the_person_s_own(make_server: Any, sqlite_url: str) -> None:
    """A second tap (or a resend after a slow connection lost the answer) of "mark handled" finds the
    case handled by the first: the page said someone else had handled it. It says the person did, and
    the case keeps one after-photo; a case an operator moved meanwhile is still someone else's move."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.browser("ziyang") as phone,
    ):
        case_id = _dispatched(device, office, "twice", 30.2500)
        form = {"to": "handled", "from": "dispatched", "note": "towed", "back": "task"}
        photo = {"photo": ("after.jpg", b"\xff\xd8\xff\xe0 the after-photo \xff\xd9", "image/jpeg")}
        first = phone.post(f"/cases/{case_id}/move", data=form, files=photo, follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == f"/tasks?done={case_id}"
        second = phone.post(f"/cases/{case_id}/move", data=form, files=photo, follow_redirects=False)
        assert second.status_code == 409
        assert "You already made this case Handled (the form was sent twice)" in second.text
        assert "Someone else" not in second.text
        case = office.get(f"/api/cases/{case_id}").json()
        assert case["status"] == "handled"
        assert [e["role"] for e in case["case_evidence"]] == ["after_photo"]

        other = _dispatched(device, office, "meanwhile", 30.2520)
        by_office = office.post(
            f"/api/cases/{other}/transitions",
            data={"to": "handled", "note": "done by the office"},
            files=photo,
        )
        assert by_office.status_code == 200, by_office.text
        stale = phone.post(f"/cases/{other}/move", data=form, files=photo, follow_redirects=False)
        assert stale.status_code == 409
        assert "Someone else already made this case Handled; nothing was changed." in stale.text
