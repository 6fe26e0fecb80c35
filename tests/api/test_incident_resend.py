"""An incident id sent again: the same content is a retry, answered as the first time (200, duplicate);
other content under the same id is refused (409 naming the id and what differs) and changes nothing.
Single posts, retries without files, batches and suspected incidents (chalk marks); a real server."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from sqlalchemy import func, select

from api.storage.models import Case, ChalkMark, EvidenceLink, Sighting
from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident
from tests.api.test_incident_batch import batch_parts, post_batch

P = (30.2741, 120.1551)  # inside the demo grid


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def _stored(server: LiveServer) -> tuple[int, int, int, list[str]]:
    """Cases, sightings, evidence links and each sighting's incident JSON, as the database has them."""
    with server.services.factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Case)) or 0,
            session.scalar(select(func.count()).select_from(Sighting)) or 0,
            session.scalar(select(func.count()).select_from(EvidenceLink)) or 0,
            list(session.scalars(select(Sighting.incident_json).order_by(Sighting.id))),
        )


def _assert_conflict(response: Any, incident_id: str, changed: list[str]) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "incident.id"
    assert body["incident_id"] == incident_id and body["changed"] == changed
    assert f"'{incident_id}'" in body["detail"] and all(name in body["detail"] for name in changed)


OTHER_FILES = {"annotated": jpeg_bytes("other-a"), "crop": jpeg_bytes("other-c")}
CHANGES: list[tuple[str, dict[str, Any], dict[str, bytes] | None, list[str]]] = [
    ("category", {"category": "piled_debris"}, None, ["category"]),
    ("time", {"last_seen_wall": "2026-11-20T10:00:00+08:00"}, None, ["last_seen_wall"]),
    ("box", {"box": [1.0, 2.0, 30.0, 40.0]}, None, ["box"]),
    ("camera", {"source_id": "demo-cam-02"}, None, ["source_id"]),
    ("position and plate", {"position": [30.28, 120.16], "plate": "浙B00001"}, None, ["position", "plate"]),
]


@pytest.mark.parametrize(("what", "change", "files", "changed"), CHANGES, ids=[c[0] for c in CHANGES])
def test_the_same_id_with_other_content_is_refused(
    server: LiveServer, what: str, change: dict[str, Any], files: dict[str, bytes] | None, changed: list[str]
) -> None:
    data = incident_json("resend-1", position=P)
    with server.client("device") as device:
        first = post_incident(device, data)
        assert first.status_code == 201, first.text
        before = _stored(server)

        retry = post_incident(device, data)  # the same content: a retry, answered as the first time
        assert retry.status_code == 200 and retry.json() == dict(first.json(), duplicate=True, created=False)

        other = post_incident(device, dict(data, **change), files)
        _assert_conflict(other, "resend-1", changed)
        assert _stored(server) == before  # nothing written, the first content kept

        # the other content sent again without its files (a retry's form): refused as well
        without_files = device.post("/api/incidents", data={"incident": json.dumps(dict(data, **change))})
        _assert_conflict(without_files, "resend-1", changed)
        assert _stored(server) == before


def test_other_evidence_under_the_same_id_is_refused(server: LiveServer) -> None:
    data = incident_json("resend-ev", position=P)
    other = incident_json("resend-ev", position=P, files=OTHER_FILES)
    with server.client("device") as device:
        assert post_incident(device, data).status_code == 201
        before = _stored(server)
        _assert_conflict(post_incident(device, other, OTHER_FILES), "resend-ev", ["evidence"])
        assert _stored(server) == before
        # a retry without files (its evidence list as sent the first time) is still the first answer
        again = device.post("/api/incidents", data={"incident": json.dumps(data)})
        assert again.status_code == 200 and again.json()["duplicate"]


def test_the_same_instant_with_another_offset_is_the_same_incident(server: LiveServer) -> None:
    data = incident_json("resend-tz", position=P, when="2026-11-20T09:00:00+08:00")
    utc = dict(data, first_seen_wall="2026-11-20T01:00:00Z", last_seen_wall="2026-11-20T01:00:00Z")
    with server.client("device") as device:
        assert post_incident(device, data).status_code == 201
        again = post_incident(device, dict(utc, dwell_s=12.5))  # a key the service ignores, too
        assert again.status_code == 200 and again.json()["duplicate"]


def test_a_batch_refuses_only_the_changed_resend(server: LiveServer) -> None:
    first = incident_json("batch-r1", position=P)
    with server.client("device") as device:
        assert post_incident(device, first).status_code == 201
        before = _stored(server)
        changed = dict(first, category="piled_debris")
        twice = incident_json("batch-r2", position=(30.2841, 120.1651))
        r = post_batch(
            device,
            batch_parts(
                first,  # the same again: a duplicate
                changed,  # other content: refused, alone
                twice,  # new: filed
                dict(twice, box=[0.0, 0.0, 5.0, 5.0]),  # its id again in the same batch, other content
            ),
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [e["status_code"] for e in results] == [200, 409, 201, 409]
        assert results[1]["error"]["incident_id"] == "batch-r1"
        assert results[1]["error"]["changed"] == ["category"]
        assert results[3]["error"]["changed"] == ["box"] and results[3]["incident_id"] == "batch-r2"
        cases, sightings, links, stored = _stored(server)
        assert (cases, sightings, links) == (before[0] + 1, before[1] + 1, before[2] + 2)
        assert stored[: len(before[3])] == before[3]
        assert json.loads(stored[-1])["box"] == twice["box"]  # batch-r2 as first sent

        only = post_batch(device, batch_parts(changed))  # nothing taken: 422 naming the first
        assert only.status_code == 422
        assert only.json()["results"][0]["status_code"] == 409


def test_a_suspected_resend_with_other_content_is_refused(server: LiveServer) -> None:
    data = dict(incident_json("chalk-r1", position=P, plate="浙A99999"), suspected=True)
    with server.client("device") as device:
        first = post_incident(device, data)
        assert first.status_code == 201, first.text
        assert first.json()["chalk_mark"] is not None
        again = post_incident(device, data)
        assert again.status_code == 200 and again.json()["chalk_mark"] == first.json()["chalk_mark"]
        _assert_conflict(post_incident(device, dict(data, plate="浙A88888")), "chalk-r1", ["plate"])
        without_files = device.post(
            "/api/incidents", data={"incident": json.dumps(dict(data, plate="浙A88888"))}
        )
        _assert_conflict(without_files, "chalk-r1", ["plate"])
    with server.services.factory() as session:
        marks = list(session.scalars(select(ChalkMark)))
    assert [(m.incident_id, m.plate) for m in marks] == [("chalk-r1", "浙A99999")]


def test_a_damaged_stored_json_proves_no_conflict(
    make_server: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A faithful retry of an incident whose stored JSON was damaged since (cut short on disk, edited by
    hand) is answered as the duplicate it is, with a warning naming the row, and the row is left as it
    is. Before, the unreadable JSON compared as empty: every key differed, a 409, and the device kept
    the item in its rejected folder. A single post, a retry without files, a batch and a chalk mark."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    data = incident_json("damaged-1", position=P)
    mark = dict(incident_json("damaged-m", position=(30.2841, 120.1651)), suspected=True)
    with server.client("device") as device:
        first = post_incident(device, data)
        assert first.status_code == 201, first.text
        assert post_incident(device, mark).status_code == 201
        with sqlite3.connect(sqlite_url.split("///", 1)[1]) as db:
            db.execute("UPDATE sightings SET incident_json = substr(incident_json, 1, 40)")
            db.execute("UPDATE chalk_marks SET incident_json = '[\"not an incident\"]'")
        db.close()
        before = _stored(server)
        with caplog.at_level("WARNING", logger="api.cases.ingest"):
            retry = post_incident(device, data)
            assert retry.status_code == 200, retry.text
            assert retry.json() == dict(first.json(), duplicate=True, created=False)
            without_files = device.post("/api/incidents", data={"incident": json.dumps(data)})
            assert without_files.status_code == 200 and without_files.json()["duplicate"], without_files.text
            batch = post_batch(device, batch_parts(data))
            assert batch.status_code == 200, batch.text
            assert [e["status_code"] for e in batch.json()["results"]] == [200]
            again = post_incident(device, mark)
            assert again.status_code == 200 and again.json()["duplicate"], again.text
        assert _stored(server) == before  # the damaged row as it was: nothing overwritten
        sighting_id = first.json()["sighting_id"]
        named = f"incident damaged-1: the stored JSON of its sighting {sighting_id} cannot be read"
        assert named in caplog.text
        assert "incident damaged-m: the stored JSON of its chalk mark" in caplog.text
        with server.services.factory() as session:
            assert session.scalars(select(ChalkMark.incident_json)).one() == '["not an incident"]'
