"""The pages' limits agree with what the service stores (probe findings, 2026-12-05): a site category of
33-64 characters, which ingest accepts and the review page offers, can be chosen on the review page and
filtered on the dashboard; a note over the limit on a case move is named as too long, not as missing."""

from __future__ import annotations

from typing import Any

from api.http.cookies import csrf_token_for
from api.storage.models import CATEGORY_MAX
from tests.api.api_testkit import LiveServer, incident_json, post_incident

LONG = "site_rule." + "x" * (CATEGORY_MAX - 10)  # a site rule's category of the longest length stored


def test_a_long_site_category_can_be_chosen_and_filtered(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("operator") as op:
        long_case = post_incident(device, incident_json("long", category=LONG)).json()["case_id"]
        other = post_incident(device, incident_json("other", position=(30.2841, 120.1651))).json()["case_id"]
        assert LONG in op.get("/review").text
        changed = op.post(f"/review/{other}/category", data={"category": LONG})
        assert changed.status_code == 200, changed.text[:300]
        assert op.get(f"/api/cases/{other}").json()["category"] == LONG
        assert long_case != other

        page = op.get("/dashboard", params={"category": LONG})
        assert page.status_code == 200 and 'class="flash error"' not in page.text
        assert f"category={LONG}" in page.text  # the stats it asks for are the chosen category's
        unknown = op.get("/dashboard", params={"category": "y" * 5000, "since": "z" * 5000})
        assert unknown.status_code == 200 and "text/html" in unknown.headers["content-type"]
        assert "There is no category" in unknown.text and "y" * 64 + "…" in unknown.text
        assert "y" * 65 not in unknown.text and "z" * 64 + "…" in unknown.text


def test_a_note_over_the_limit_is_named_as_too_long(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("admin") as admin:
        case_id = post_incident(device, incident_json("noted")).json()["case_id"]
        token = server.tokens["admin"]
        moved = admin.post(
            f"/cases/{case_id}/move",
            data={"to": "filed", "note": "n" * 5000, "csrf_token": csrf_token_for(token)},
        )
        assert moved.status_code == 422, moved.text[:300]
        assert "The note is too long: at most 4000 characters." in moved.text
        assert "Please write a note." not in moved.text
        assert admin.get(f"/api/cases/{case_id}").json()["status"] == "pending_review"


def test_a_form_over_a_field_s_limit_is_answered_with_a_page(make_server: Any, sqlite_url: str) -> None:
    """A browser's form post that the page's parameters refuse gets the pages' message page naming the
    field (not the API's JSON); a script's post (no text/html) still gets the JSON."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    token = server.tokens["admin"]
    with server.client("device") as device, server.browser("admin") as admin:
        case_id = post_incident(device, incident_json("huge")).json()["case_id"]
        csrf = csrf_token_for(token)
        added = admin.post(
            "/admin/users",
            data={"username": "long", "role": "operator", "password": "p" * 10_000, "csrf_token": csrf},
        )
        assert added.status_code == 422 and "text/html" in added.headers["content-type"]
        assert "Form not accepted" in added.text and "password: String should have at most" in added.text
        huge = admin.post(
            f"/cases/{case_id}/move",
            files={"note": (None, "n" * 2_000_000), "to": (None, "filed"), "csrf_token": (None, csrf)},
        )
        assert huge.status_code == 400 and "Form not accepted" in huge.text, huge.text[:300]
        assert admin.get(f"/api/cases/{case_id}").json()["status"] == "pending_review"
        script = admin.post(
            "/admin/users",
            data={"username": "long", "role": "operator", "password": "p" * 10_000, "csrf_token": csrf},
            headers={"Accept": "application/json"},
        )
        assert script.status_code == 422 and script.json()["errors"][0]["field"] == "password"
        assert all(u["username"] != "long" for u in admin.get("/api/users").json())


def test_a_reversed_range_on_the_case_list_is_named_and_dropped(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("operator") as op:
        number = post_incident(device, incident_json("ranged")).json()["case_number"]
        page = op.get("/cases", params={"since": "2000-01-01", "until": "1999-12-31"})
        assert page.status_code == 200
        assert "First seen until is before the start of the range and was ignored" in page.text
        assert number in page.text  # the start alone still filters: the case, seen after it, is listed


def test_the_dashboards_dates_are_those_the_service_takes(make_server: Any, sqlite_url: str) -> None:
    """The first local day, 1970-01-01, begins before the earliest time /api/stats takes at UTC+8: the
    dashboard asks from that time instead (no case lies before it), and counts a case seen on it; a
    day outside 1970..2199 is named and left out, not sent to /api/stats to be refused there."""
    import html

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("operator") as op:
        made = post_incident(device, incident_json("first-day", when="1970-01-01T00:30:00Z"))
        assert made.status_code == 201, made.text
        for params, found, notice in (
            ({"since": "1970-01-01", "until": "1970-01-01"}, 1, None),
            ({"since": "0001-01-01"}, 1, "From: 0001-01-01 is outside the years 1970 to 2199; left out"),
            ({"until": "9999-12-31"}, 1, "To: 9999-12-31 is outside the years 1970 to 2199; left out"),
        ):
            page = op.get("/dashboard", params=params)
            assert page.status_code == 200
            if notice is None:
                assert 'class="flash error"' not in page.text
            else:
                assert notice in html.unescape(page.text), page.text
            query = html.unescape(page.text.split('"/api/stats?')[1].split('"')[0])
            stats = op.get(f"/api/stats?{query}&by=total")
            assert stats.status_code == 200, (params, stats.text)
            assert stats.json()["total"] == found
