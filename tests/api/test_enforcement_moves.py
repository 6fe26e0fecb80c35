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
