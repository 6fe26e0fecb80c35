"""Sealed evidence (issue 12): an incident's "original" (its best frame before privacy blurring) is stored and
chained like the other evidence, but only admins see it listed and only admins fetch it, through
GET /api/cases/{id}/evidence/original, each fetch recorded in the case's custody chain; the chain and the
audit (`gridpatrol evidence verify`) still pass. On SQLite and PostgreSQL, over a real HTTP server."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx
from sqlalchemy import select

from api.cases import audit, custody
from api.storage.models import CustodyEntry
from tests.api.api_testkit import incident_json, jpeg_bytes, post_incident

ROUTE = "/api/cases/{}/evidence/original"


def sealed_incident(incident_id: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    files = {role: jpeg_bytes(incident_id + role) for role in ("annotated", "crop", "raw", "original")}
    return incident_json(incident_id, files=files, **kwargs), files


def roles_listed(detail: dict[str, Any]) -> set[str]:
    return {e["role"] for s in detail["sightings_list"] for e in s["evidence"]}


def unsealings(services: Any, case_id: int) -> list[CustodyEntry]:
    with services.factory() as session:
        return list(
            session.scalars(
                select(CustodyEntry)
                .where(CustodyEntry.case_id == case_id, CustodyEntry.action == "evidence_unsealed")
                .order_by(CustodyEntry.seq)
            )
        )


def logged_in(server: Any, username: str) -> httpx.Client:
    """A browser-like client of the web pages, logged in through the login form."""
    client = httpx.Client(base_url=server.url, timeout=30)
    found = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/login").text)
    assert found is not None
    fields = {"username": username, "password": f"password-{username}", "login_csrf": found[1], "next": "/"}
    assert client.post("/login", data=fields).status_code == 303
    return client


def assert_verified(services: Any) -> None:
    with services.factory() as session:
        assert custody.verify_all(session)[1] == []
    with services.factory() as session:  # the audit reads from one snapshot: its own session
        assert audit.audit(session).problems == []


def test_the_original_is_sealed_from_all_but_admins(make_server: Any, db_url: str) -> None:
    server = make_server(db_url)
    data, files = sealed_incident("inc-sealed-1")
    original_sha = hashlib.sha256(files["original"]).hexdigest()
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.client("viewer") as viewer,
        server.client("ziyang") as ziyang,
        server.client("admin") as admin,
    ):
        posted = post_incident(device, data, files)
        assert posted.status_code == 201, posted.text
        case_id = posted.json()["case_id"]

        # operators see the case and its blurred evidence, not the original
        detail = op.get(f"/api/cases/{case_id}").json()
        assert roles_listed(detail) == {"annotated", "crop", "raw"}
        raw_sha = hashlib.sha256(files["raw"]).hexdigest()
        assert op.get(f"/api/evidence/{raw_sha}").content == files["raw"]
        for who in (op, viewer, ziyang, admin):  # the evidence route never serves it, not even to admins
            assert who.get(f"/api/evidence/{original_sha}").status_code == 404
        for name in ("operator", "admin"):  # the case's web page shows the blurred frames only
            browser = logged_in(server, name)
            page = browser.get(f"/cases/{case_id}")
            browser.close()
            assert page.status_code == 200 and raw_sha in page.text and original_sha not in page.text

        # only admins fetch it
        for who in (op, viewer, ziyang, device):
            refused = who.get(ROUTE.format(case_id))
            assert refused.status_code == 403, refused.text
        assert unsealings(server.services, case_id) == []

        # an admin sees it listed, and gets its bytes; the fetch is in the custody chain
        assert roles_listed(admin.get(f"/api/cases/{case_id}").json()) == {
            "annotated",
            "crop",
            "raw",
            "original",
        }
        got = admin.get(ROUTE.format(case_id))
        assert got.status_code == 200, got.text
        assert hashlib.sha256(got.content).hexdigest() == original_sha
        assert got.headers["content-type"] == "image/jpeg" and got.headers["cache-control"] == "no-store"
        by_sha = admin.get(ROUTE.format(case_id), params={"sha256": original_sha})
        assert by_sha.status_code == 200 and by_sha.content == files["original"]
        number = detail["number"]
        assert admin.get(ROUTE.format(number)).content == files["original"]  # by case number too

        entries = unsealings(server.services, case_id)
        assert len(entries) == 3
        assert {e.actor for e in entries} == {"user:admin"}
        record = json.loads(entries[0].detail)
        assert record["sha256"] == original_sha and record["role"] == "original"
        assert record["sighting_id"] == detail["sightings_list"][0]["id"]
        assert entries[0].at is not None
        # the history (workflow events) is unchanged, and the custody count includes the fetches
        after = op.get(f"/api/cases/{case_id}").json()
        assert after["history"] == detail["history"]
        assert after["custody_entries"] == detail["custody_entries"] + 3
    assert_verified(server.services)


def test_unknown_cases_and_originals_are_404(make_server: Any, db_url: str) -> None:
    server = make_server(db_url)
    with server.client("device") as device, server.client("admin") as admin, server.client("operator") as op:
        plain = incident_json("inc-plain")  # annotated and crop only: nothing was blurred
        case_id = post_incident(device, plain).json()["case_id"]
        assert admin.get(ROUTE.format(999_999)).status_code == 404
        assert admin.get(ROUTE.format("GP-2026-999999")).status_code == 404
        missing = admin.get(ROUTE.format(case_id))
        assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "case_id"
        data, files = sealed_incident("inc-sealed-2", position=(30.30, 120.20))
        sealed_case = post_incident(device, data, files).json()["case_id"]
        other = admin.get(ROUTE.format(sealed_case), params={"sha256": "0" * 64})
        assert other.status_code == 404 and other.json()["errors"][0]["field"] == "sha256"
        assert admin.get(ROUTE.format(sealed_case), params={"sha256": "xyz"}).status_code == 422
        assert op.get(ROUTE.format(999_999)).status_code == 403
        assert unsealings(server.services, case_id) == unsealings(server.services, sealed_case) == []
    assert_verified(server.services)


def test_the_audit_names_an_unsealing_of_a_file_the_case_never_had(make_server: Any, db_url: str) -> None:
    server = make_server(db_url, people=True)
    with server.client("device") as device:
        case_id = post_incident(device, incident_json("inc-forged")).json()["case_id"]
    with server.services.factory() as session:
        custody.append(
            session,
            case_id=case_id,
            actor="user:admin",
            action="evidence_unsealed",
            detail={"role": "original", "sha256": "ab" * 32, "sighting_id": 1},
        )
        session.commit()
        problems = audit.audit(session).problems
    assert len(problems) == 1 and f"unseals blob {'ab' * 32}" in problems[0], problems
