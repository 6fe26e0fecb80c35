"""The API over real HTTP (uvicorn on 127.0.0.1): roles, cases, workflow, evidence, stats, grids."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(db_url, run_webhooks=False)


def test_health_and_login(server: LiveServer) -> None:
    with server.client() as anon:
        assert anon.get("/api/health").json() == {"status": "ok"}
        bad = anon.post("/api/auth/token", data={"username": "admin", "password": "wrong-password"})
        assert bad.status_code == 401 and bad.json()["errors"][0]["field"] == "password"
        ok = anon.post("/api/auth/token", data={"username": "admin", "password": "password-admin"})
        token = ok.json()["access_token"]
        me = anon.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["role"] == "admin"
        missing = anon.get("/api/cases")
        assert missing.status_code == 401 and missing.json()["errors"][0]["field"] == "Authorization"


def test_incident_to_case_with_evidence(server: LiveServer) -> None:
    data = incident_json("inc-1", plate="浙A12345")
    with server.client("device") as device, server.client("operator") as op:
        first = post_incident(device, data)
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["created"] and body["case_number"].startswith("GP-2026-")
        retry = post_incident(device, data)
        assert retry.status_code == 200 and retry.json()["duplicate"]
        assert retry.json()["case_id"] == body["case_id"]

        detail = op.get(f"/api/cases/{body['case_id']}").json()
        assert detail["grid_cell"] == "DEMO-ZIYANG-04" and detail["team"] == "team-ziyang"
        assert detail["camera_id"] == "demo-cam-01" and detail["device_id"] is not None
        evidence = detail["sightings_list"][0]["evidence"]
        assert {e["role"] for e in evidence} == {"annotated", "crop"}
        image = op.get(evidence[0]["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(image.content).hexdigest() == evidence[0]["sha256"]
        assert detail["history"][0]["what"] == "created" and detail["history"][0]["who"] == "device:van-1"

        # device keys reach only the incident and upload endpoints
        assert device.get("/api/cases").status_code == 403
        assert device.get(f"/api/cases/{body['case_id']}").status_code == 403
        assert device.get("/api/me").status_code == 403
        assert device.get(f"/api/evidence/{evidence[0]['sha256']}").status_code == 403


def test_incident_evidence_must_match(server: LiveServer) -> None:
    data = incident_json("inc-2")
    with server.client("device") as device:
        wrong = post_incident(
            device, data, files={"annotated": jpeg_bytes("other"), "crop": jpeg_bytes("inc-2c")}
        )
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] in ("incident.evidence[0]", "files")
        not_image = post_incident(device, data, files={"annotated": b"hello", "crop": b"world"})
        assert not_image.status_code == 422 and "files[0]" in not_image.json()["detail"]
        bad_json = device.post("/api/incidents", data={"incident": "{not json"})
        assert bad_json.status_code == 422 and bad_json.json()["errors"][0]["field"] == "incident"
        bad_field = dict(data, position=[95.0, 120.0])
        r = device.post("/api/incidents", data={"incident": json.dumps(bad_field)})
        assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("incident.position")
        missing = device.post("/api/incidents", data={})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "incident"
        # values no column or JSON holds: refused, named, before any file is kept
        for key, value in (
            ("frame_index", 10**30),
            ("track_ids", [10**30]),
            ("observations", -1),
            ("box", [10.0, 20.0, float("nan"), 220.0]),
            ("first_seen_ts", float("inf")),
            ("box", [500.0, 500.0, 10.0, 10.0]),
            ("box", [-1e12, 0.0, 1e12, 10.0]),
        ):
            r = post_incident(device, dict(data, id=f"hostile-{key}", **{key: value}))
            assert r.status_code == 422, (key, value, r.text)
            assert r.json()["errors"][0]["field"].startswith(f"incident.{key}") or "box" in r.text, r.text
        deep = device.post("/api/incidents", data={"incident": "[" * 100_000 + "]" * 100_000})
        assert deep.status_code == 422 and deep.json()["detail"] == "incident: nested too deeply"
        twice = device.post(
            "/api/incidents",
            files=[("incident", (None, json.dumps(data))), ("incident", (None, json.dumps(data)))],
        )
        assert twice.status_code == 422 and "incident: sent twice" in twice.json()["detail"], twice.text
        not_a_form = device.post("/api/incidents", json=data)
        assert not_a_form.status_code == 415 and not_a_form.json()["errors"][0]["field"] == "body"


def _transition(client, case_id: int, to: str, **form) -> object:  # type: ignore[no-untyped-def]
    files = form.pop("files", None)
    return client.post(f"/api/cases/{case_id}/transitions", data={"to": to, **form}, files=files)


def test_workflow_roles_and_team_isolation(server: LiveServer) -> None:
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.client("ziyang") as ziyang,
        server.client("hubin") as hubin,
        server.client("viewer") as viewer,
    ):
        first = datetime.now(UTC) - timedelta(hours=3)
        case_id = post_incident(device, incident_json("inc-w", when=first.isoformat())).json()["case_id"]
        # another team's case is invisible, and so is its evidence
        assert hubin.get(f"/api/cases/{case_id}").status_code == 404
        sha = op.get(f"/api/cases/{case_id}").json()["sightings_list"][0]["evidence"][0]["sha256"]
        assert hubin.get(f"/api/evidence/{sha}").status_code == 404
        assert ziyang.get(f"/api/evidence/{sha}").status_code == 200
        assert hubin.get("/api/cases").json()["total"] == 0
        assert ziyang.get("/api/cases").json()["total"] == 1
        # illegal transition: 409 naming the allowed ones
        r = _transition(op, case_id, "closed")
        assert r.status_code == 409
        assert r.json()["allowed"] == ["filed", "rejected"] and "filed, rejected" in r.json()["detail"]
        # roles
        assert _transition(viewer, case_id, "filed").status_code == 403
        assert _transition(ziyang, case_id, "filed").status_code == 403
        assert _transition(op, case_id, "filed").status_code == 200
        assert _transition(op, case_id, "dispatched").status_code == 200
        assert _transition(hubin, case_id, "handled", note="x").status_code == 404
        no_photo = _transition(ziyang, case_id, "handled", note="towed away")
        assert no_photo.status_code == 422 and no_photo.json()["errors"][0]["field"] == "photo"
        photo = jpeg_bytes("after")
        done = _transition(
            ziyang, case_id, "handled", note="towed away", files={"photo": ("after.jpg", photo, "image/jpeg")}
        )
        assert done.status_code == 200, done.text
        assert done.json()["case_evidence"][0]["role"] == "after_photo"
        assert _transition(op, case_id, "verified").status_code == 200
        closed = _transition(op, case_id, "closed", note="ok")
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        history = [(h["what"], h["who"]) for h in closed.json()["history"]]
        assert history == [
            ("created", "device:van-1"),
            ("filed", "user:operator"),
            ("dispatched", "user:operator"),
            ("handled", "user:ziyang"),
            ("verified", "user:operator"),
            ("closed", "user:operator"),
        ]
        # seen again after it was closed, within the window: reopened, a recurrence
        seen = datetime.now(UTC) + timedelta(seconds=1)
        sent = incident_json("inc-w2", when=(seen - timedelta(hours=1)).isoformat(), until=seen.isoformat())
        again = post_incident(device, sent).json()
        assert again["case_id"] == case_id and again["recurrence"] and again["status"] == "pending_review"
        # reject needs a reason
        r = _transition(op, case_id, "rejected")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
        assert _transition(op, case_id, "rejected", reason="duplicate").json()["reject_reason"] == "duplicate"


def test_list_filters_sorting_stats_and_grids(server: LiveServer) -> None:
    with server.client("device") as device, server.client("admin") as admin:
        post_incident(device, incident_json("a", plate="浙A00001", when="2026-11-20T09:00:00+08:00"))
        post_incident(device, incident_json("b", position=(30.26, 120.14), category="street_vending"))
        post_incident(device, incident_json("c", position=(31.5, 121.0), when="2026-11-22T09:00:00+08:00"))
        everything = admin.get("/api/cases", params={"sort": "first_seen", "order": "asc"}).json()
        assert everything["total"] == 3
        firsts = [c["first_seen"] for c in everything["items"]]
        assert firsts == sorted(firsts)
        assert admin.get("/api/cases", params={"plate": "浙A00001"}).json()["total"] == 1
        assert admin.get("/api/cases", params={"category": "street_vending"}).json()["total"] == 1
        assert admin.get("/api/cases", params={"grid_cell": "unassigned"}).json()["total"] == 1
        assert admin.get("/api/cases", params={"camera": "demo-cam-01"}).json()["total"] == 3
        assert admin.get("/api/cases", params={"since": "2026-11-21T00:00:00Z"}).json()["total"] == 1
        assert admin.get("/api/cases", params={"status": ["filed", "closed"]}).json()["total"] == 0
        page = admin.get("/api/cases", params={"per_page": 2, "page": 2}).json()
        assert len(page["items"]) == 1
        number = everything["items"][0]["number"]
        assert admin.get("/api/cases", params={"number": number}).json()["items"][0]["number"] == number
        bad = admin.get("/api/cases", params={"per_page": 0})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "per_page"
        bad = admin.get("/api/cases", params={"status": "open"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("status")

        stats = admin.get("/api/stats").json()
        assert stats["total"] == 3
        assert {(r["category"], r["status"], r["day"]) for r in stats["rows"]} >= {
            ("illegal_parking", "pending_review", "2026-11-20"),
            ("illegal_parking", "pending_review", "2026-11-22"),
        }
        # sums grouped by the database: each `by` gives the cube's rows summed over the other dimensions
        for by, keys in (
            ("day,category", ("category", "day")),
            ("grid_cell,status", ("status", "grid_cell")),
        ):
            expected: Counter[tuple[str, ...]] = Counter()
            for row in stats["rows"]:
                expected[tuple(row[k] for k in keys)] += row["count"]
            grouped = admin.get("/api/stats", params={"by": by}).json()
            assert grouped["total"] == 3
            assert {tuple(r[k] for k in keys): r["count"] for r in grouped["rows"]} == dict(expected)
            others = set(("category", "status", "grid_cell", "day")) - set(keys)
            assert all(r[k] is None for r in grouped["rows"] for k in others)
        assert len(expected) == 3  # the three cases are in three cells
        total = admin.get("/api/stats", params={"by": "total", "category": "illegal_parking"}).json()
        assert total["total"] == 2 and len(total["rows"]) == 1 and total["rows"][0]["category"] is None
        total = admin.get("/api/stats", params={"by": "total"}).json()  # no filter: all cases, not 1
        assert total["total"] == 3 and [r["count"] for r in total["rows"]] == [3]
        inverted = {"since": "2026-12-05T00:00:00Z", "until": "2026-12-01T00:00:00+08:00"}
        for path in ("/api/cases", "/api/stats", "/api/coverage", "/api/chalk-marks"):
            bad = admin.get(path, params=inverted)
            assert bad.status_code == 422 and bad.json()["errors"] == [
                {"field": "until", "reason": "is before since"}
            ], (path, bad.text)
        bad = admin.get("/api/stats", params={"by": "category,week"})
        assert bad.status_code == 422
        assert bad.json()["errors"] == [
            {"field": "by", "reason": "not a dimension: 'week'; use any of category, status, grid_cell, day"}
        ]

        grids = admin.get("/api/grids").json()
        assert grids["type"] == "FeatureCollection" and len(grids["features"]) == 36
        counts = {f["id"]: f["properties"]["open_cases"] for f in grids["features"]}
        assert counts["DEMO-ZIYANG-04"] == 1 and grids["unassigned"]["open_cases"] == 1


def test_stats_count_a_case_on_the_local_day_it_was_first_seen(make_server, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    """A case first seen in the last millisecond of a local day (23:59:59.9996 at UTC+8) is that day's,
    by `day` as by the since/until of the same day: SQLite's date() rounded its time to the millisecond,
    into the next day."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.client("admin") as admin:
        made = post_incident(device, incident_json("midnight", when="2026-11-20T23:59:59.999600+08:00"))
        assert made.status_code == 201, made.text
        day = {"since": "2026-11-20T00:00:00+08:00", "until": "2026-11-20T23:59:59.999999+08:00"}
        got = admin.get("/api/stats", params={**day, "by": "day"}).json()
    assert got["total"] == 1 and [(r["day"], r["count"]) for r in got["rows"]] == [("2026-11-20", 1)]


def test_admin_endpoints_need_admin(server: LiveServer) -> None:
    with server.client("operator") as op, server.client("admin") as admin:
        assert op.get("/api/webhooks/deliveries").status_code == 403
        assert (
            op.post(
                "/api/users", json={"username": "x", "password": "12345678", "role": "viewer"}
            ).status_code
            == 403
        )
        created = admin.post(
            "/api/users", json={"username": "newbie", "password": "12345678", "role": "viewer"}
        )
        assert created.status_code == 201
        dup = admin.post("/api/users", json={"username": "newbie", "password": "12345678", "role": "viewer"})
        assert dup.status_code == 409 and dup.json()["errors"][0]["field"] == "username"
        enf = admin.post("/api/users", json={"username": "e1", "password": "12345678", "role": "enforcement"})
        assert enf.status_code == 422 and enf.json()["errors"][0]["field"] == "team"
        device = admin.post("/api/devices", json={"name": "van-2"}).json()
        assert device["key"].startswith("gpd_")
        taken = admin.post("/api/devices", json={"name": "van-2"})
        assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "name"
        assert "gridpatrol device rotate van-2" in taken.json()["errors"][0]["reason"]
        bad_grid = admin.put(
            "/api/grids", json={"type": "FeatureCollection", "features": [{"type": "Feature"}]}
        )
        assert bad_grid.status_code == 422 and "feature 0" in bad_grid.json()["detail"]
        assert admin.get("/api/evidence/" + "0" * 64).status_code == 404
        assert admin.get("/api/evidence/not-a-hash").status_code == 422
