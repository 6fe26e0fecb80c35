"""The runner's forwarder against the real case service (uvicorn over create_app, SQLite and PostgreSQL):
order, outages, kill -9 mid-send, bad items, a wrong key; and against a scripted HTTP endpoint for the
retry answers the service gives only when it is in trouble (503, 429, 500)."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.runner.forwarder import Forwarder, ForwarderState, Outcome, backoff_s, masked_url, retry_after_s
from api.runner.spool import EvidenceFile, Spool
from tests.api.api_testkit import LiveServer, free_port, incident_json, jpeg_bytes
from tests.runner.conftest import ServiceOnPort

REPO = Path(__file__).resolve().parents[2]
LARGE = {"max_bytes": 1 << 30, "max_items": 100_000}
FAST = {"backoff_min_s": 0.05, "backoff_max_s": 0.3, "timeout_s": 10.0}


def runner_incident(
    incident_id: str, category: str = "illegal_parking", evidence_size: int = 0
) -> tuple[dict[str, Any], list[EvidenceFile]]:
    """An incident as the pipeline makes it (its own plate, so each becomes its own case) and its two
    evidence files (padded to evidence_size bytes when given)."""
    files = {"annotated": jpeg_bytes(incident_id + "a"), "crop": jpeg_bytes(incident_id + "c")}
    if evidence_size:
        files = {role: body[:-2] + bytes(evidence_size) + b"\xff\xd9" for role, body in files.items()}
    plate = f"ZA{zlib.crc32(incident_id.encode()):010d}"
    data = incident_json(incident_id, category=category, plate=plate, files=files)
    return data, [(role, f"{incident_id}-{role}.jpg", body) for role, body in files.items()]


def received(client: httpx.Client) -> list[dict[str, Any]]:
    """Every sighting the service holds, in the order it recorded them (as an operator reads them)."""
    page = client.get("/api/cases", params={"per_page": 500}).json()
    rows = []
    for case in page["items"]:
        detail = client.get(f"/api/cases/{case['id']}").json()
        rows += [
            {
                "incident_id": s["incident_id"],
                "id": s["id"],
                "case": case["id"],
                "evidence": len(s["evidence"]),
            }
            for s in detail["sightings_list"]
        ]
    assert page["total"] == len(page["items"])
    assert sum(case["sightings"] for case in page["items"]) == len(rows)
    return sorted(rows, key=lambda row: row["id"])


def wait_for(condition: Callable[[], bool], timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def server(make_server: Any, db_url: str) -> LiveServer:
    return make_server(db_url, run_webhooks=False)


# --- against the real case service --------------------------------------------------------------


def test_items_become_cases_in_order(server: LiveServer, tmp_path: Path) -> None:
    """Items go oldest first; an item whose evidence was dropped arrives as a sighting without any."""
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for i in range(5):
            spool.put(*runner_incident(f"order-{i}"))
        spool.max_bytes = spool.state().bytes + 10_000  # room for a JSON, not for 100 KB of evidence
        bare = spool.put(*runner_incident("order-5", "piled_debris", evidence_size=50_000))
        assert bare is not None and bare.evidence_dropped
        spool.max_bytes = LARGE["max_bytes"]
        spool.put(*runner_incident("order-6"))
        forwarder = Forwarder(spool, server_url=server.url, device_key=server.tokens["device"], **FAST)
        forwarder.start()
        try:
            wait_for(lambda: len(spool) == 0, what="the spool to empty")
        finally:
            forwarder.stop()
        state = forwarder.state()
    assert (state.delivered, state.duplicates, state.rejected, state.failures) == (7, 0, 0, 0)
    assert state.last_error is None and state.last_success_at is not None
    with server.client("operator") as client:
        rows = received(client)
    assert [row["incident_id"] for row in rows] == [f"order-{i}" for i in range(7)]
    assert len({row["case"] for row in rows}) == 7
    assert [row["evidence"] for row in rows] == [2, 2, 2, 2, 2, 0, 2]


def test_service_down_and_back_while_items_keep_coming(
    service_on_port: ServiceOnPort, tmp_path: Path
) -> None:
    """The service stops with items in flight and comes back on the same port: every item put meanwhile
    arrives, none twice."""
    service = service_on_port
    put_ids: list[str] = []
    back = threading.Event()

    with Spool(tmp_path / "spool", **LARGE) as spool:
        forwarder = Forwarder(spool, server_url=service.url, device_key=service.tokens["device"], **FAST)

        def keep_putting() -> None:
            i = 0
            while not back.is_set() and i < 300:
                spool.put(*runner_incident(f"outage-{i}"))
                put_ids.append(f"outage-{i}")
                i += 1
                time.sleep(0.03)
            for _ in range(5):  # and a few more once it is back
                spool.put(*runner_incident(f"outage-{i}"))
                put_ids.append(f"outage-{i}")
                i += 1

        putter = threading.Thread(target=keep_putting)
        forwarder.start()
        putter.start()
        try:
            wait_for(lambda: forwarder.state().delivered >= 3, what="first deliveries")
            service.stop()
            before = forwarder.state().failures
            down_at = len(put_ids)
            wait_for(lambda: forwarder.state().failures >= before + 3, what="failed sends")
            wait_for(lambda: len(put_ids) >= down_at + 5, what="puts while down")
            down = forwarder.state()
            assert down.last_error is not None and "Connect" in down.last_error
            assert len(spool) >= 5
            service.start()
            back.set()
            putter.join(30)
            wait_for(lambda: len(spool) == 0, what="the spool to empty")
        finally:
            back.set()
            forwarder.stop()
        state = forwarder.state()
    assert state.delivered == len(put_ids) and state.rejected == 0
    with service.client("operator") as client:
        rows = received(client)
    assert [row["incident_id"] for row in rows] == put_ids  # all, once each, in order


KILLED_RUNNER = textwrap.dedent(
    """
    import dataclasses, json, os, sys, time
    from api.runner.forwarder import Forwarder
    from api.runner.spool import Spool

    root, url, die_at = sys.argv[1:4]

    class DyingSpool(Spool):
        def ack(self, item):
            if item.incident_id == die_at:  # the service has it; the spool does not know yet
                os.kill(os.getpid(), 9)
            super().ack(item)

    spool = DyingSpool(root, max_bytes=1 << 30, max_items=100_000)
    forwarder = Forwarder(spool, server_url=url, device_key=os.environ["RUNNER_KEY"],
                          backoff_min_s=0.05, backoff_max_s=0.3, timeout_s=10)
    forwarder.start()
    while len(spool):
        time.sleep(0.005)
    forwarder.stop()
    print(json.dumps(dataclasses.asdict(forwarder.state())))
    """
)


def test_runner_killed_mid_send_loses_and_duplicates_nothing(server: LiveServer, tmp_path: Path) -> None:
    """The runner process is killed with SIGKILL twice: once at a random moment while sending, once
    exactly between the service's answer and the ack. Restarted, it sends the unacked item again; the
    service answers it as a duplicate: every incident once, in order."""
    root = tmp_path / "spool"
    ids = [f"kill-{i}" for i in range(40)]
    with Spool(root, **LARGE) as spool:
        for incident_id in ids:
            spool.put(*runner_incident(incident_id))

    def runner(die_at: str = "") -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", KILLED_RUNNER, str(root), server.url, die_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, RUNNER_KEY=server.tokens["device"]),
        )

    def left() -> int:
        return len(os.listdir(root / "items"))

    child = runner()  # 1: killed from outside at a random moment after a few deliveries
    wait_for(lambda: left() <= len(ids) - 5 or child.poll() is not None, what="deliveries")
    time.sleep(random.Random(14).uniform(0.0, 0.05))
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with Spool(root, **LARGE) as spool:
        remaining = [item.incident_id for item in spool]
    assert remaining == ids[len(ids) - len(remaining) :] and 0 < len(remaining) < len(ids)

    die_at = remaining[5]  # 2: kills itself once the service has answered for this item
    child = runner(die_at)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with Spool(root, **LARGE) as spool:
        assert [item.incident_id for item in spool] == remaining[5:]

    child = runner()  # 3: runs to the end
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    state = json.loads(out)
    assert state["delivered"] == len(remaining) - 5
    assert state["duplicates"] >= 1  # die_at, sent again
    with server.client("operator") as client:
        rows = received(client)
    assert [row["incident_id"] for row in rows] == ids  # 0 lost, 0 twice
    assert all(row["evidence"] == 2 for row in rows)


def test_a_bad_item_goes_to_rejected_and_the_next_is_delivered(server: LiveServer, tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        spool.put(*runner_incident("good-1"))
        data, files = runner_incident("bad-1")
        bad = spool.put(dict(data, position=[95.0, 120.0]), files)  # no latitude: 422
        assert bad is not None
        spool.put(*runner_incident("good-2"))
        forwarder = Forwarder(spool, server_url=server.url, device_key=server.tokens["device"], **FAST)
        forwarder.start()
        try:
            wait_for(lambda: len(spool) == 0, what="the spool to empty")
        finally:
            forwarder.stop()
        state = forwarder.state()
        assert spool.state().rejected == 1
    assert (state.delivered, state.rejected, state.failures) == (2, 1, 0)
    assert state.last_error is not None and state.last_error.startswith("HTTP 422: incident.position.0")
    folder = tmp_path / "spool" / "rejected" / bad.name
    saved = json.loads((folder / "response.json").read_text())
    assert saved["status"] == 422 and saved["incident_id"] == "bad-1"
    assert saved["body"]["errors"][0]["field"] == "incident.position.0"
    assert json.loads((folder / "meta.json").read_text())["incident"]["id"] == "bad-1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "evidence-0",
        "evidence-1",
        "meta.json",
        "response.json",
    ]
    with server.client("operator") as client:
        assert [row["incident_id"] for row in received(client)] == ["good-1", "good-2"]


def test_an_item_whose_id_was_filed_with_other_content_goes_to_rejected(
    server: LiveServer, tmp_path: Path
) -> None:
    """The service has the incident id already, with other content (409 naming what differs): the item
    can never be delivered, so it is moved to rejected/ with the answer, not retried for ever."""
    data, files = runner_incident("twice-1")
    with server.client("device") as device:
        first = device.post(
            "/api/incidents",
            data={"incident": json.dumps(dict(data, category="piled_debris"))},
            files=[("files", (name, body, "image/jpeg")) for _, name, body in files],
        )
        assert first.status_code == 201, first.text
    with Spool(tmp_path / "spool", **LARGE) as spool:
        item = spool.put(data, files)
        assert item is not None
        forwarder = Forwarder(spool, server_url=server.url, device_key=server.tokens["device"], **FAST)
        with forwarder.client() as client:
            attempt = forwarder.send_next(client)
        assert (attempt.outcome, attempt.status, attempt.delay_s) == (Outcome.REJECTED, 409, 0)
        assert len(spool) == 0 and spool.state().rejected == 1
    state = forwarder.state()
    assert state.last_error is not None and "incident 'twice-1'" in state.last_error
    saved = json.loads((tmp_path / "spool" / "rejected" / item.name / "response.json").read_text())
    assert saved["status"] == 409 and saved["body"]["changed"] == ["category"]


class _Recording(httpx.HTTPTransport):
    """The real HTTP transport, recording each request's path; `no_batch`: answer the batch route
    404 as a case service from before it would."""

    def __init__(self, *, no_batch: bool = False) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.no_batch = no_batch

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.no_batch and request.url.path.endswith("/batch"):
            return httpx.Response(404, json={"detail": "path: Not Found"})
        return super().handle_request(request)


@pytest.mark.parametrize("no_batch", [False, True])
def test_a_backlog_goes_in_batches_in_order(server: LiveServer, tmp_path: Path, no_batch: bool) -> None:
    """40 items waiting (after an outage), one of them bad: 3 batch requests of at most 16 deliver the
    39 in spool order and reject the bad one alone; a service without the batch route gets them one
    at a time after its 404."""
    ids = [f"backlog-{i:02d}" for i in range(40)]
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for incident_id in ids:
            data, files = runner_incident(incident_id)
            if incident_id == "backlog-20":
                data = dict(data, position=[95.0, 120.0])
            spool.put(data, files)
        transport = _Recording(no_batch=no_batch)
        forwarder = Forwarder(
            spool, server_url=server.url, device_key=server.tokens["device"], transport=transport, **FAST
        )
        forwarder.start()
        try:
            wait_for(lambda: len(spool) == 0, what="the spool to empty")
        finally:
            forwarder.stop()
        state = forwarder.state()
        assert spool.state().rejected == 1
    assert (state.delivered, state.rejected, state.failures) == (39, 1, 0)
    if no_batch:
        assert transport.paths == ["/api/incidents/batch"] + ["/api/incidents"] * 40
    else:
        assert transport.paths == ["/api/incidents/batch"] * 3
    with server.client("operator") as client:
        assert [row["incident_id"] for row in received(client)] == [i for i in ids if i != "backlog-20"]


def test_a_batch_of_only_bad_items_rejects_each(server: LiveServer, tmp_path: Path) -> None:
    """Nothing of the batch can be taken (422 for the batch, each item's answer inside): each item is
    moved to rejected/ with its own error, nothing is retried."""
    with Spool(tmp_path / "spool", **LARGE) as spool:
        for incident_id in ("worse-1", "worse-2"):
            data, files = runner_incident(incident_id)
            spool.put(dict(data, position=[95.0, 120.0]), files)
        transport = _Recording()
        forwarder = Forwarder(
            spool, server_url=server.url, device_key=server.tokens["device"], transport=transport, **FAST
        )
        with forwarder.client() as client:
            attempt = forwarder.send_next(client)
        assert (attempt.outcome, attempt.status, attempt.delay_s) == (Outcome.REJECTED, 422, 0)
        assert len(spool) == 0 and spool.state().rejected == 2
    assert transport.paths == ["/api/incidents/batch"]
    state = forwarder.state()
    assert (state.delivered, state.rejected, state.failures) == (0, 2, 0)
    for folder in sorted((tmp_path / "spool" / "rejected").iterdir()):
        saved = json.loads((folder / "response.json").read_text())
        assert saved["status"] == 422 and saved["body"]["errors"][0]["field"] == "incident.position.0"


@pytest.mark.parametrize("batch_max", [1, 16])
def test_an_item_sent_with_evidence_and_resent_without_is_one_sighting(
    server: LiveServer, tmp_path: Path, batch_max: int
) -> None:
    """The first send reached the service but its answer was lost; the spool then dropped the item's
    evidence to make room: the resend (no files, empty evidence list) is answered as a duplicate and
    the sighting keeps the evidence of the first send. Sent alone, or in one batch with the next."""
    with Spool(tmp_path / "spool", **LARGE) as spool:
        item = spool.put(*runner_incident("late-1", "piled_debris", evidence_size=50_000))
        assert item is not None
        forwarder = Forwarder(
            spool, server_url=server.url, device_key=server.tokens["device"], batch_max=batch_max, **FAST
        )
        with forwarder.client() as client:  # the send whose answer is lost: the same request, no ack
            parcel = spool.load(item)
            files = [("files", (f.filename, f.data, f.media_type)) for f in parcel.files]
            first = client.post(forwarder.url, data={"incident": json.dumps(parcel.incident)}, files=files)
            assert first.status_code == 201
            spool.max_bytes = spool.state().bytes + 1_000  # too little for late-2 (1.4 KB)
            spool.put(*runner_incident("late-2"))  # illegal_parking: late-1's evidence goes
            assert spool.oldest() == dataclasses.replace(
                item, evidence_dropped=True, files=0, bytes=spool.items()[0].bytes
            )
            attempts = [forwarder.send_next(client), forwarder.send_next(client)]
    if batch_max == 1:
        assert [(a.outcome, a.status) for a in attempts] == [
            (Outcome.DUPLICATE, 200),
            (Outcome.DELIVERED, 201),
        ]
    else:  # one batch of both: one of them new
        assert [(a.outcome, a.status) for a in attempts] == [(Outcome.DELIVERED, 200), (Outcome.EMPTY, None)]
    assert forwarder.state().delivered == 2 and forwarder.state().duplicates == 1
    with server.client("operator") as client:
        rows = received(client)
    assert [(row["incident_id"], row["evidence"]) for row in rows] == [("late-1", 2), ("late-2", 2)]


def test_a_wrong_key_keeps_the_items_and_says_so_once_a_minute(
    server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "gpd_" + "x" * 40
    with Spool(tmp_path / "spool", **LARGE) as spool:
        spool.put(*runner_incident("key-1"))
        spool.put(*runner_incident("key-2"))
        forwarder = Forwarder(spool, server_url=server.url, device_key=wrong, auth_retry_s=0.05, **FAST)
        forwarder.start()
        try:
            wait_for(lambda: forwarder.state().failures >= 4, what="refused sends")
        finally:
            forwarder.stop()
        state = forwarder.state()
        assert state.auth_failing and state.delivered == 0 and state.last_error is not None
        assert state.last_error.startswith("HTTP 401")
        assert len(spool) == 2
        refusals = [r for r in caplog.records if r.name == "api.runner.forwarder" and r.levelname == "ERROR"]
        assert len(refusals) == 1 and "wrong or revoked" in refusals[0].getMessage()
        assert wrong not in caplog.text and server.tokens["device"] not in caplog.text
        forwarder = Forwarder(spool, server_url=server.url, device_key=server.tokens["device"], **FAST)
        forwarder.start()
        try:
            wait_for(lambda: len(spool) == 0, what="the spool to empty")
        finally:
            forwarder.stop()
        assert not forwarder.state().auth_failing


# --- answers the service gives when in trouble: a scripted endpoint ------------------------------


class ScriptedService:
    """A real HTTP endpoint answering POST /api/incidents (and a camera's PUT of its state) with the
    statuses scripted (then 201); with `page`, every answer (to GET too) is that HTML page (another web
    app at the URL, a proxy's page); with `ahead_s`, its Date header that far ahead of this machine's
    clock (a runner whose clock is behind the service's); with `delay_s`, each POST answered that long
    after its body came (a service slow to commit); with `report_delay_s`, each PUT (a camera's state
    report) likewise; with `refuse_field`, a PUT whose JSON carries that field gets the 422 an older
    service gives a field it does not know."""

    def __init__(
        self,
        script: list[tuple[int, dict[str, str]]],
        page: bytes | None = None,
        *,
        ahead_s: float = 0.0,
        delay_s: float = 0.0,
        report_delay_s: float = 0.0,
        refuse_field: str | None = None,
    ) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(time.time() + ahead_s, usegmt=True)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = {"at": time.monotonic(), "method": self.command, "headers": dict(self.headers)}
                service.requests.append({**seen, "body": body})
                if self.command == "POST":
                    time.sleep(delay_s)
                elif self.command == "PUT":
                    time.sleep(report_delay_s)
                status, headers = service.script.pop(0) if service.script else (201, {})
                answer = json.dumps({"detail": f"scripted {status}", "duplicate": False}).encode()
                if self.command == "PUT" and refuse_field is not None and refuse_field in json.loads(body):
                    status, headers = 422, {}
                    answer = json.dumps(
                        {"detail": f"{refuse_field}: Extra inputs are not permitted"}
                    ).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json" if page is None else "text/html")
                answer = answer if page is None else page
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_PUT = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_retry_answers_keep_the_item_and_back_off(tmp_path: Path) -> None:
    service = ScriptedService([(503, {"Retry-After": "2"}), (429, {}), (500, {}), (507, {}), (201, {})])
    try:
        with Spool(tmp_path / "spool", **LARGE) as spool:
            spool.put(*runner_incident("retry-1"))
            forwarder = Forwarder(
                spool, server_url=service.url, device_key="gpd_k", backoff_min_s=0.2, backoff_max_s=0.5
            )
            with forwarder.client() as client:
                attempts = [forwarder.send_next(client) for _ in range(5)]
            assert [(a.outcome, a.status) for a in attempts] == [
                (Outcome.RETRY, 503),
                (Outcome.RETRY, 429),
                (Outcome.RETRY, 500),
                (Outcome.RETRY, 507),
                (Outcome.DELIVERED, 201),
            ]
            assert attempts[0].delay_s == 2.0  # Retry-After
            assert 0.2 <= attempts[1].delay_s <= 0.4  # 0.2 doubled once, jittered
            assert 0.25 <= attempts[2].delay_s <= 0.5  # capped at 0.5
            assert 0.25 <= attempts[3].delay_s <= 0.5
            assert len(spool) == 0
            state = forwarder.state()
            assert (state.delivered, state.failures) == (1, 4)
            assert state.last_error == "HTTP 507: scripted 507"
    finally:
        service.close()
    first = service.requests[0]
    assert first["headers"]["Authorization"] == "Bearer gpd_k"
    assert first["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert first["body"].index(b'name="incident"') < first["body"].index(b'name="files"')


def test_a_2xx_that_is_not_the_service_answer_acks_nothing(tmp_path: Path) -> None:
    """The server URL at another web app, or a proxy's maintenance page answering 200 to anything:
    each incident was taken as delivered (a 'duplicate') and left the spool, lost; the camera list
    ended the runner with a JSONDecodeError traceback."""
    from api.runner.engine import CameraEngine

    service = ScriptedService([(200, {})] * 3, page=b"<html><body>Under maintenance</body></html>")
    try:
        with Spool(tmp_path / "spool", **LARGE) as spool:
            spool.put(*runner_incident("page-1"))
            forwarder = Forwarder(spool, server_url=service.url, device_key="gpd_k", **FAST)
            with forwarder.client() as client:
                alone = forwarder.send_next(client)
                spool.put(*runner_incident("page-2"))
                batch = forwarder.send_next(client)  # a backlog: the batch route
            assert [(a.outcome, a.status) for a in (alone, batch)] == [(Outcome.RETRY, 200)] * 2
            assert len(spool) == 2
            state = forwarder.state()
            assert (state.delivered, state.duplicates, state.failures) == (0, 0, 2)
            assert "not the case service's (is the server URL right?)" in (state.last_error or "")
        assert CameraEngine(service.url, "gpd_k").fetch_cameras() is None  # as when it cannot be reached
    finally:
        service.close()


NGINX_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center>"
    b"<h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize("status", [413, 400])
def test_a_proxys_4xx_page_keeps_the_items_until_the_service_takes_them(
    server: LiveServer, tmp_path: Path, status: int
) -> None:
    """nginx before the case service answers 413 (its 1 MiB body limit, under a full-frame incident's
    evidence) or 400 with a page of its own: each incident was moved to rejected/ as if the service had
    refused it, never sent again (and past 1000 of them removed). Only the service's own error (JSON
    with `detail`) rejects an item; a proxy's page is retried, the error naming who refused it."""
    proxy = ScriptedService([(status, {})] * 3, page=NGINX_413)
    try:
        with Spool(tmp_path / "spool", **LARGE) as spool:
            spool.put(*runner_incident("proxy-1"))
            forwarder = Forwarder(spool, server_url=proxy.url, device_key="gpd_k", **FAST)
            with forwarder.client() as client:
                alone = forwarder.send_next(client)
                spool.put(*runner_incident("proxy-2"))
                batch = forwarder.send_next(client)  # a backlog: the batch route, refused whole
                again = forwarder.send_next(client)  # then one at a time
            assert [(a.outcome, a.status) for a in (alone, batch, again)] == [(Outcome.RETRY, status)] * 3
            assert len(spool) == 2 and spool.state().rejected == 0
            state = forwarder.state()
            assert state.rejected == 0
            assert f"HTTP {status}: refused by something other than the case service" in (
                state.last_error or ""
            )
            assert "413 Request Entity Too Large" in (state.last_error or "")

            # the proxy's limit raised: every incident reaches the service
            fixed = Forwarder(spool, server_url=server.url, device_key=server.tokens["device"], **FAST)
            with fixed.client() as client:
                while len(spool):
                    assert fixed.send_next(client).outcome is Outcome.DELIVERED
    finally:
        proxy.close()
    with server.client("operator") as client:
        assert sorted(row["incident_id"] for row in received(client)) == ["proxy-1", "proxy-2"]


def test_the_thread_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    service = ScriptedService([(503, {"Retry-After": "1"})])
    try:
        with Spool(tmp_path / "spool", **LARGE) as spool:
            spool.put(*runner_incident("wait-1"))
            forwarder = Forwarder(spool, server_url=service.url, device_key="gpd_k", backoff_min_s=0.05)
            forwarder.start()
            try:
                wait_for(lambda: forwarder.state().backing_off_until is not None, what="the 503")
                until = forwarder.state().backing_off_until
                assert until is not None and 0.8 < until - time.time() <= 1.0
                wait_for(lambda: len(spool) == 0, what="the retry")
            finally:
                forwarder.stop()
    finally:
        service.close()
    assert service.requests[1]["at"] - service.requests[0]["at"] >= 0.95


def test_a_send_unanswered_at_stop_is_abandoned_before_the_spool_is_let_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped forwarder went on with a send in flight after stop() returned: the camera job then
    closed the spool (its lock released) and the late answer acked the item under the spool's next
    owner, who still listed it (its load failed: a traceback), and logged after the job had stopped.
    Now the send is abandoned when stop() gives up on it: its answer touches the spool no more, the
    item stays for the next owner (the service takes the resend once), and nothing is logged after."""
    service = ScriptedService([], delay_s=1.5)
    try:
        spool = Spool(tmp_path / "spool", **LARGE)
        spool.put(*runner_incident("late-1"))
        forwarder = Forwarder(spool, server_url=service.url, device_key="gpd_k", batch_max=1)
        forwarder.start()
        wait_for(lambda: service.requests, what="the send")
        forwarder.stop(timeout_s=0.2)
        spool.close()  # as the camera job does: the lock released
        caplog.set_level(logging.DEBUG, logger="api.runner")
        caplog.clear()
        with Spool(tmp_path / "spool", **LARGE) as taken_over:  # the spool's next owner
            (item,) = taken_over.items()
            time.sleep(2.0)  # the late answer comes (and the old thread ends)
            assert taken_over.load(item).incident["id"] == "late-1"  # still there, whole
        assert caplog.records == []
        with pytest.raises(RuntimeError, match="abandoned a send"):  # its thread may still wait
            forwarder.start()
    finally:
        service.close()


def test_nothing_listening_is_retried(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        spool.put(*runner_incident("nobody-1"))
        forwarder = Forwarder(spool, server_url=f"http://127.0.0.1:{free_port()}", device_key="gpd_k", **FAST)
        with forwarder.client() as client:
            attempt = forwarder.send_next(client)
        assert attempt.outcome is Outcome.RETRY and attempt.status is None
        assert attempt.delay_s >= 0.05 and len(spool) == 1
        assert "ConnectError" in (forwarder.state().last_error or "")


def test_an_item_the_spool_cannot_read_goes_to_rejected(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        broken = spool.put(*runner_incident("broken-1"))
        spool.put(*runner_incident("fine-1"))
        assert broken is not None
        (tmp_path / "spool" / "items" / broken.name / "evidence-1").unlink()  # the disk lost it
        forwarder = Forwarder(spool, server_url=f"http://127.0.0.1:{free_port()}", device_key="gpd_k")
        with forwarder.client() as client:
            attempt = forwarder.send_next(client)
        assert attempt.outcome is Outcome.REJECTED and attempt.delay_s == 0
        assert [item.incident_id for item in spool] == ["fine-1"]
    saved = json.loads((tmp_path / "spool" / "rejected" / broken.name / "response.json").read_text())
    assert saved["status"] is None and saved["reason"].startswith("unreadable in the spool")


# --- the pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streak", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (6, 16.0, 32.0), (7, 30.0, 60.0), (50, 30.0, 60.0)],
)
def test_backoff_doubles_from_1_s_to_60_s_jittered(streak: int, low: float, high: float) -> None:
    rng = random.Random(streak)
    delays = [backoff_s(streak, 1.0, 60.0, rng) for _ in range(200)]
    assert all(max(1.0, low) <= d <= high for d in delays)


NOW = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("Fri, 20 Nov 2026 09:00:30 GMT", 30.0),
        ("Fri, 20 Nov 2026 08:59:00 GMT", 0.0),  # already past
        ("soon", None),
        ("-3", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, now=NOW) == seconds


def test_urls_in_logs_lose_their_userinfo() -> None:
    assert (
        masked_url("https://user:secret@cases.example/api/incidents")
        == "https://***@cases.example/api/incidents"
    )
    assert masked_url("http://127.0.0.1:8000/api/incidents") == "http://127.0.0.1:8000/api/incidents"


def test_state_is_a_plain_record_for_the_heartbeat(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", **LARGE) as spool:
        forwarder = Forwarder(spool, server_url="http://127.0.0.1:9", device_key="gpd_k")
        state = forwarder.state()
    assert isinstance(state, ForwarderState)
    assert dataclasses.asdict(state) == {
        "delivered": 0,
        "duplicates": 0,
        "rejected": 0,
        "failures": 0,
        "last_error": None,
        "last_error_at": None,
        "last_success_at": None,
        "backing_off_until": None,
        "auth_failing": False,
    }
