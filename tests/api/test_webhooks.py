"""Webhooks against real HTTP servers on 127.0.0.1: signed, retried with backoff, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from api.cases.webhooks import sign
from tests.api.api_testkit import LiveServer, free_port, incident_json, post_incident


class Receiver:
    """A real HTTP endpoint; `script` lists the status codes to answer (then 200), `delay_s` stalls."""

    def __init__(self, script: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script = list(script or [])
        self.delay_s = delay_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "at": time.monotonic()}
                )
                time.sleep(receiver.delay_s)
                code = receiver.script.pop(0) if receiver.script else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, f"got {len(self.requests)} of {count} requests"


def test_signature_is_hmac_sha256() -> None:
    expected = hmac.new(b"s3cret", b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign("s3cret", b'{"a":1}') == "sha256=" + expected


@pytest.fixture
def server(make_server, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(
        db_url,
        run_webhooks=True,
        settings={
            "webhook_poll_s": 0.05,
            "webhook_backoff_s": 0.2,
            "webhook_max_attempts": 3,
            "webhook_timeout_s": 1.0,
        },
    )


def _file_case(server: LiveServer, incident_id: str, north_deg: float = 0.0) -> int:
    with server.client("device") as device, server.client("operator") as op:
        data = incident_json(incident_id, position=(30.2741 + north_deg, 120.1551))
        case_id = post_incident(device, data).json()["case_id"]
        t0 = time.monotonic()
        r = op.post(f"/api/cases/{case_id}/transitions", data={"to": "filed"})
        assert r.status_code == 200
        assert time.monotonic() - t0 < 1.0  # case handling never waits for the endpoint
        return case_id


def _deliveries(server: LiveServer) -> list[dict[str, Any]]:
    with server.client("admin") as admin:
        return admin.get("/api/webhooks/deliveries").json()


def test_delivery_signed_and_logged(server: LiveServer) -> None:
    receiver = Receiver()
    try:
        with server.client("admin") as admin:
            hook = admin.post("/api/webhooks", json={"url": receiver.url, "secret": "x" * 20}).json()
        case_id = _file_case(server, "wh-1")
        receiver.wait(1)
        request = receiver.requests[0]
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["x-gridpatrol-event"] == "case.filed"
        assert headers["x-gridpatrol-signature"] == sign(hook["secret"], request["body"])
        payload = json.loads(request["body"])
        assert payload["event"] == "case.filed" and payload["case"]["id"] == case_id
        assert payload["case"]["status"] == "filed"
        deadline = time.monotonic() + 5
        while _deliveries(server)[0]["status"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        log = _deliveries(server)
        assert log[0]["status"] == "delivered" and log[0]["last_status_code"] == 200
    finally:
        receiver.close()


def test_failing_endpoint_is_retried_with_backoff(server: LiveServer) -> None:
    receiver = Receiver(script=[500, 503])
    try:
        with server.client("admin") as admin:
            admin.post("/api/webhooks", json={"url": receiver.url, "events": ["case.filed"]})
        _file_case(server, "wh-2")
        receiver.wait(3)
        gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.35  # 0.2 s, then 0.4 s
        deadline = time.monotonic() + 5
        while _deliveries(server)[0]["status"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _deliveries(server)[0]["attempts"] == 3
    finally:
        receiver.close()


def test_dead_endpoint_never_slows_case_handling(server: LiveServer) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    slow = Receiver(delay_s=1.0)
    try:
        with server.client("admin") as admin:
            admin.post("/api/webhooks", json={"url": dead_url})
            admin.post("/api/webhooks", json={"url": slow.url})
        for i in range(3):
            _file_case(server, f"wh-dead-{i}", north_deg=i * 0.001)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            dead = [d for d in _deliveries(server) if d["webhook_id"] == 1]
            if len(dead) == 3 and all(d["status"] == "failed" for d in dead):
                break
            time.sleep(0.1)
        assert all(d["status"] == "failed" and d["attempts"] == 3 for d in dead), dead
        assert "ConnectError" in dead[0]["last_error"]
    finally:
        slow.close()
