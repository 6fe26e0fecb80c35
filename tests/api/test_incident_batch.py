"""POST /api/incidents/batch: several incidents in one request, each filed as POST /api/incidents
would file it (merged, deduplicated, chalked, evidence hashed, custody chained), with an answer per
incident; one incident's mistake fails only itself. A real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.cases import custody
from api.storage.models import Case, EvidenceLink, Sighting
from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident

P = (30.2741, 120.1551)  # inside the demo grid
FAR = (30.2841, 120.1651)  # about 1.4 km away


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


Part = tuple[str, tuple[str | None, bytes, str]]


def batch_parts(*incidents: dict[str, Any] | tuple[dict[str, Any] | bytes, dict[str, bytes]]) -> list[Part]:
    """The parts of a batch body: per incident its `incident` part (JSON, or raw bytes as sent) and
    its `files` (derived from its id like api_testkit.evidence_files, unless given)."""
    parts: list[Part] = []
    for entry in incidents:
        data, files = entry if isinstance(entry, tuple) else (entry, None)
        text = data if isinstance(data, bytes) else json.dumps(data).encode()
        parts.append(("incident", (None, text, "application/json")))
        if files is None:
            assert isinstance(data, dict)
            files = {"annotated": jpeg_bytes(data["id"] + "a"), "crop": jpeg_bytes(data["id"] + "c")}
        parts += [("files", (f"{role}.jpg", body, "image/jpeg")) for role, body in files.items()]
    return parts


def post_batch(client: httpx.Client, parts: list[Part]) -> httpx.Response:
    return client.post("/api/incidents/batch", files=parts)


def _counts(server: LiveServer) -> tuple[int, int, int]:
    with server.services.factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Case)) or 0,
            session.scalar(select(func.count()).select_from(Sighting)) or 0,
            session.scalar(select(func.count()).select_from(EvidenceLink)) or 0,
        )


def test_a_batch_files_each_incident_like_a_single_post(server: LiveServer) -> None:
    incidents = [
        incident_json("b-1", position=P, when="2026-11-20T09:00:00+08:00"),
        incident_json("b-2", position=P, when="2026-11-20T09:05:00+08:00"),  # the same car again
        incident_json("b-3", position=FAR, when="2026-11-20T09:06:00+08:00"),
        incident_json("b-4", category="piled_debris", position=P, when="2026-11-20T09:07:00+08:00"),
    ]
    with server.client("device") as device, server.client("operator") as op:
        r = post_batch(device, batch_parts(*incidents))
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [e["index"] for e in results] == [0, 1, 2, 3]
        assert [e["incident_id"] for e in results] == ["b-1", "b-2", "b-3", "b-4"]
        assert [e["status_code"] for e in results] == [201, 201, 201, 201]
        assert all(e["error"] is None for e in results)
        out = [e["outcome"] for e in results]
        assert out[0]["created"] and not out[1]["created"]
        assert out[1]["case_id"] == out[0]["case_id"]  # merged, decided after the one before it
        assert len({out[0]["case_id"], out[2]["case_id"], out[3]["case_id"]}) == 3
        assert _counts(server) == (3, 4, 8)

        detail = op.get(f"/api/cases/{out[0]['case_id']}").json()
        assert detail["camera_id"] == "demo-cam-01" and detail["grid_cell"] == "DEMO-ZIYANG-04"
        assert len(detail["sightings_list"]) == 2
        for sighting in detail["sightings_list"]:
            for evidence in sighting["evidence"]:
                image = op.get(evidence["url"])
                assert hashlib.sha256(image.content).hexdigest() == evidence["sha256"]

        # the same batch again: every incident a duplicate with its first answer, nothing written
        again = post_batch(device, batch_parts(*incidents))
        assert again.status_code == 200
        assert [e["status_code"] for e in again.json()["results"]] == [200, 200, 200, 200]
        assert [e["outcome"]["case_id"] for e in again.json()["results"]] == [o["case_id"] for o in out]
        assert all(e["outcome"]["duplicate"] for e in again.json()["results"])
        assert _counts(server) == (3, 4, 8)

        # a single POST of the same incident agrees
        single = post_incident(device, incidents[2])
        assert single.status_code == 200 and single.json()["case_id"] == out[2]["case_id"]

    with server.services.factory() as session:
        chains, problems = custody.verify_all(session)
    assert chains == 3 and problems == []


def test_one_bad_incident_fails_only_itself(server: LiveServer) -> None:
    good = [incident_json(f"g-{i}", position=P if i % 2 else FAR) for i in range(3)]
    mismatched = incident_json("bad-sha")
    parts = batch_parts(
        good[0],
        (b"{not json", {"annotated": jpeg_bytes("x")}),  # its file is skipped with it
        good[1],
        (mismatched, {"annotated": jpeg_bytes("other"), "crop": jpeg_bytes("bad-shac")}),
        (dict(good[2], position=[95.0, 120.0]), None),  # latitude out of range
        (incident_json("not-image"), {"annotated": b"hello", "crop": b"world"}),
    )
    with server.client("device") as device:
        r = post_batch(device, parts)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [e["status_code"] for e in results] == [201, 422, 201, 422, 422, 422]
        assert results[1]["incident_id"] is None
        # each error as the incident would have had it alone
        assert results[1]["error"]["errors"][0]["field"] == "incident"
        assert results[3]["incident_id"] == "bad-sha"
        assert results[3]["error"]["errors"][0]["field"] in ("incident.evidence[0]", "files")
        assert results[4]["error"]["errors"][0]["field"].startswith("incident.position")
        assert results[5]["error"]["detail"].startswith("files[0]")
        assert _counts(server) == (2, 2, 4)

        # the corrected incidents later, in a batch with one already filed
        fixed = post_batch(device, batch_parts(good[2], mismatched, good[0]))
        assert [e["status_code"] for e in fixed.json()["results"]] == [201, 201, 200]
        assert _counts(server)[1] == 4


def test_whole_body_mistakes_are_named(server: LiveServer) -> None:
    data = incident_json("w-1")
    with server.client("device") as device:
        not_form = device.post("/api/incidents/batch", json={"incident": data})
        assert not_form.status_code == 415
        files_first = post_batch(device, [("files", ("a.jpg", jpeg_bytes("w-1a"), "image/jpeg"))])
        assert files_first.status_code == 422 and files_first.json()["errors"][0]["field"] == "files"
        nothing = device.post("/api/incidents/batch", files=[("note", (None, b"hello", "text/plain"))])
        assert nothing.status_code == 422 and nothing.json()["errors"][0]["field"] == "incidents"
        too_many = post_batch(device, batch_parts(*(incident_json(f"m-{i}") for i in range(65))))
        assert too_many.status_code == 422 and "at most 64" in too_many.json()["detail"]
        all_bad = post_batch(device, batch_parts((b"[]", {}), dict(data, position=[95.0, 120.0])))
        assert all_bad.status_code == 422
        assert all_bad.json()["errors"][0]["field"] == "incidents[0].incident"
        assert [e["status_code"] for e in all_bad.json()["results"]] == [422, 422]
        broken = device.post(
            "/api/incidents/batch",
            content=b"--xyz\r\nContent-Disposition: form-data; name=incident\r\n\r\n{}",
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert broken.status_code == 400
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.post("/api/incidents/batch", files=batch_parts(data)).status_code == 401
    with server.client("viewer") as viewer:
        assert viewer.post("/api/incidents/batch", files=batch_parts(data)).status_code == 403
    assert _counts(server) == (0, 0, 0)


def test_a_suspected_incident_in_a_batch_is_chalked(server: LiveServer) -> None:
    first = dict(incident_json("s-1", when="2026-11-20T09:00:00+08:00"), suspected=True)
    second = dict(incident_json("s-2", when="2026-11-20T09:30:00+08:00"), suspected=True)
    with server.client("device") as device:
        r = post_batch(device, batch_parts(first, incident_json("n-1", position=FAR)))
        results = r.json()["results"]
        assert [e["status_code"] for e in results] == [201, 201]
        assert results[0]["outcome"]["status"] == "suspected" and results[0]["outcome"]["chalk_mark"]
        assert results[0]["outcome"]["case_id"] is None
        r = post_batch(device, batch_parts(second))
        confirmed = r.json()["results"][0]["outcome"]
        assert confirmed["case_id"] is not None and confirmed["chalk_mark"]
        assert _counts(server)[0] == 2


def test_case_numbers_past_a_million_keep_every_digit(server: LiveServer) -> None:
    """The number is GP-<year>- and the id, six digits at least (PostgreSQL writes it in the INSERT
    that takes the id from the sequence; SQLite in Python)."""
    with server.services.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('cases', 'id'), 999998)")
        else:
            conn.exec_driver_sql(
                "INSERT INTO cases (id, number, category, status, grid_cell_id, team, first_seen,"
                " last_seen, sightings_count, recurrence_count, created_at, updated_at) VALUES"
                " (999998, 'GP-2026-999998', 'piled_debris', 'rejected', 'DEMO-HUBIN-01', 'team-hubin',"
                " '2026-01-01', '2026-01-01', 1, 0, '2026-01-01', '2026-01-01')"
            )
    incidents = [incident_json(f"million-{i}", position=(P[0] + i * 0.001, P[1])) for i in range(3)]
    with server.client("device") as device:
        results = post_batch(device, batch_parts(*incidents)).json()["results"]
    assert [e["outcome"]["case_number"] for e in results] == [
        "GP-2026-999999",
        "GP-2026-1000000",
        "GP-2026-1000001",
    ]
    with server.services.factory() as session:
        stored = session.scalars(select(Case.number).where(Case.id >= 999999).order_by(Case.id)).all()
        chains, problems = custody.verify_all(session)
    assert stored == ["GP-2026-999999", "GP-2026-1000000", "GP-2026-1000001"]
    assert problems == []
