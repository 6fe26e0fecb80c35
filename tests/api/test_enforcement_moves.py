"""A team member marking a case handled from a phone, probed over a real HTTP server (probe findings,
2026-12-05): what the after-photo may be, and what a stale or expired page tells the person."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import httpx
import pytest

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


def _handled_then_sent_to_hubin(
    colleague: httpx.Client, office: httpx.Client, case_id: int, note: str
) -> httpx.Response:
    """A colleague marks the case handled, then the office sends it out again, to team-hubin."""
    handled = colleague.post(
        f"/api/cases/{case_id}/transitions",
        data={"to": "handled", "note": "done by a colleague"},
        files={"photo": ("first.jpg", b"\xff\xd8\xff\xe0 the first photo \xff\xd9", "image/jpeg")},
    )
    assert handled.status_code == 200, handled.text
    sent = office.post(
        f"/api/cases/{case_id}/transitions", json={"to": "dispatched", "team": "team-hubin", "note": note}
    )
    assert sent.status_code == 200, sent.text
    return sent


def test_a_case_sent_to_another_team_meanwhile_says_nothing_was_saved(
    make_server: Any, sqlite_url: str
) -> None:
    """A team member has a task page open; meanwhile a colleague marks the case handled and the office
    sends it back to another team. Posting the form (a note, an after-photo) gave the plain "Not
    found" page: the note and the photo were gone without a word why. The answer says the case is no
    longer the team's and nothing was saved, shows the note back, and tells nothing of the case now;
    a case the team never had stays the plain "not found", word for word."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    photo = {"photo": ("after.jpg", b"\xff\xd8\xff\xe0 a late after-photo \xff\xd9", "image/jpeg")}
    late_sha = hashlib.sha256(photo["photo"][1]).hexdigest()
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.client("ziyang") as colleague,
        server.browser("ziyang") as phone,
    ):
        case_id = _dispatched(device, office, "moved-away", 30.2500)
        assert phone.get(f"/tasks/{case_id}").status_code == 200  # the page open on the phone
        sent = _handled_then_sent_to_hubin(colleague, office, case_id, "hubin: still there, plate ZJ-A1")
        number = sent.json()["number"]

        form = {"to": "handled", "from": "dispatched", "note": "towed at 10:02", "back": "task"}
        late = phone.post(f"/cases/{case_id}/move", data=form, files=photo, follow_redirects=False)
        assert late.status_code == 409, late.text[:300]
        assert "This case is no longer your team&#39;s" in late.text
        assert "Nothing was saved: not your note, not your after-photo" in late.text
        assert "towed at 10:02</textarea>" in late.text and 'id="unsaved-photo"' in late.text
        for detail in ("team-hubin", "ZJ-A1", "still there", number, "Not found"):
            assert detail not in late.text
        assert not server.services.store.exists(late_sha)
        assert office.get(f"/api/cases/{case_id}").json()["status"] == "dispatched"

        phone.cookies.set("gp_lang", "zh-CN")
        in_chinese = phone.post(f"/cases/{case_id}/move", data=form, files=photo, follow_redirects=False)
        assert in_chinese.status_code == 409 and "此案件已不属于您的队伍" in in_chinese.text
        assert "没有保存任何内容" in in_chinese.text
        phone.cookies.set("gp_lang", "en")

        never_json = incident_json("never-theirs", position=(30.2520, 120.1340))  # a cell of team-hubin
        never = int(post_incident(device, never_json).json()["case_id"])
        assert office.get(f"/api/cases/{never}").json()["team"] != "team-ziyang"
        unknown = phone.post("/cases/999999/move", data=form, follow_redirects=False)
        hidden = phone.post(f"/cases/{never}/move", data=form, follow_redirects=False)
        assert unknown.status_code == hidden.status_code == 404
        assert hidden.text.replace(f"/cases/{never}/", "/cases/999999/") == unknown.text  # word for word
        assert "no longer your team" not in hidden.text


def test_opening_a_case_sent_to_another_team_says_it_is_no_longer_the_team_s(
    make_server: Any, sqlite_url: str
) -> None:
    """A team member opens a task from a link kept on the phone after the office sent the case to
    another team. The page was the plain "Not found", as if the case had never existed. It says the
    case is no longer the team's, naming neither the team it went to nor anything of the case now; a
    case the team never had stays the plain "not found", word for word."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.client("ziyang") as colleague,
        server.browser("ziyang") as phone,
    ):
        case_id = _dispatched(device, office, "opened-after-it-left", 30.2500)
        number = office.get(f"/api/cases/{case_id}").json()["number"]
        assert phone.get(f"/tasks/{case_id}").status_code == 200
        _handled_then_sent_to_hubin(colleague, office, case_id, "hubin: plate ZJ-B2")

        for path in (f"/tasks/{case_id}", f"/tasks/{number}"):
            page = phone.get(path)
            assert page.status_code == 404, path
            assert "This case is no longer your team&#39;s" in page.text and 'id="left-team"' in page.text
            shown = page.text.replace(f'value="{path}"', "")  # the language switch comes back to the path
            for detail in ("team-hubin", "ZJ-B2", number, "Not found", "Nothing was saved"):
                assert detail not in shown, (path, detail)
        phone.cookies.set("gp_lang", "zh-CN")
        in_chinese = phone.get(f"/tasks/{case_id}")
        assert "此案件已不属于您的队伍" in in_chinese.text and "不再是您的任务" in in_chinese.text
        phone.cookies.set("gp_lang", "en")

        never_json = incident_json("never-opened", position=(30.2520, 120.1340))  # a cell of team-hubin
        never = int(post_incident(device, never_json).json()["case_id"])
        unknown = phone.get("/tasks/999999")
        hidden = phone.get(f"/tasks/{never}")
        assert unknown.status_code == hidden.status_code == 404
        assert hidden.text.replace(f"/tasks/{never}", "/tasks/999999") == unknown.text  # word for word
        assert "no longer your team" not in hidden.text


def test_a_move_from_the_task_page_is_logged_as_one_from_the_case_page(
    make_server: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A move made on the case page was logged (who, which case, to what); one made on the task page,
    the enforcement phone's, was not. Both are, in the same one line, and the note is not in it."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    photo = {"photo": ("after.jpg", b"\xff\xd8\xff\xe0 the after-photo \xff\xd9", "image/jpeg")}
    with (
        server.client("device") as device,
        server.client("operator") as office,
        server.browser("ziyang") as phone,
        caplog.at_level(logging.INFO, logger="api.http.pages.cases"),
    ):
        for seed, lat, back in (("from the task", 30.2500, "task"), ("from the case", 30.2520, "case")):
            case_id = _dispatched(device, office, seed, lat)
            number = office.get(f"/api/cases/{case_id}").json()["number"]
            caplog.clear()
            form = {"to": "handled", "from": "dispatched", "note": "a secret note", "back": back}
            moved = phone.post(f"/cases/{case_id}/move", data=form, files=photo, follow_redirects=False)
            assert moved.status_code == 303, moved.text
            lines = [r.getMessage() for r in caplog.records if "moved case" in r.getMessage()]
            assert len(lines) == 1, (back, lines)
            assert lines[0].endswith(f"ziyang moved case {number} to handled"), (back, lines)
            assert "secret" not in lines[0]
