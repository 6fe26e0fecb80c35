"""Faults of the service's own, reproduced for real over HTTP: the database gone, restarted or
locked (503 with Retry-After), a full disk (507), a bookkeeping write that fails, a failed move's
after-photo. Every answer has the API's error shape, never a plain-text 500."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import os
import select
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from api.errors import StorageFull
from api.storage.evidence_store import EvidenceStore
from tests.api.api_testkit import PG_URL, LiveServer, incident_json, jpeg_bytes, post_incident, tmpfs


def _error(response: Any, status: int, field: str) -> dict[str, Any]:
    """The body of a named fault: its status, the API's error shape, the field it names."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["field"] == field
    assert body["detail"] == f"{field}: {body['errors'][0]['reason']}"
    return body


def _transition(client: Any, case_id: int, to: str, **form: Any) -> Any:
    files = form.pop("files", None)
    return client.post(f"/api/cases/{case_id}/transitions", data={"to": to, **form}, files=files)


# --- the database unreachable, restarted, locked --------------------------------------------------


class TcpProxy:
    """A TCP relay from a local port to the database: `stop()` is the database going away (every
    connection cut, nothing listening on the port), `start()` it coming back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                s.close()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server (the URL as given, not through a proxy)."""
    if not PG_URL:
        pytest.skip("GRIDPATROL_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_gone_is_503_then_recovers(
    make_server: Any, pg_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert PG_URL is not None
    url = make_url(PG_URL)
    proxy = TcpProxy((url.host or "localhost", url.port or 5432))
    proxy.start()
    app_name = f"gp-faults-{uuid.uuid4().hex[:8]}"
    proxied = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
        {"options": f"-csearch_path={pg_schema_url}", "application_name": app_name}
    )
    server: LiveServer = make_server(proxied.render_as_string(hide_password=False), run_webhooks=False)
    try:
        with server.client("operator") as op, server.client("device") as device:
            created = post_incident(device, incident_json("inc-pg"))
            assert created.status_code == 201, created.text
            case_id = created.json()["case_id"]
            assert op.get("/api/cases").status_code == 200

            # the database goes away: every pooled connection cut, nothing listening on its port
            proxy.stop()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="api.http.app"):
                for _ in range(3):
                    down = op.get("/api/cases")
                    body = _error(down, 503, "database")
                    assert down.headers["retry-after"].isdigit()
                    assert "database:" in body["detail"]
                    assert down.headers["content-type"].startswith("application/json")
                # a write too, and a page: a readable page, not JSON
                assert _error(_transition(op, case_id, "filed"), 503, "database")
                with server.client(cookies={"gp_session": server.tokens["operator"]}) as browser:
                    page = browser.get("/cases", headers={"Accept": "text/html"})
                assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
                assert "<html" in page.text.lower() and "Traceback" not in page.text
            fault_lines = [r.getMessage() for r in caplog.records if r.name == "api.http.app"]
            assert fault_lines, "the fault is logged"
            assert (
                len([line for line in fault_lines if "GET /api/cases" in line]) == 1
            )  # once, not per request
            assert not any(f":{url.password}@" in line for line in fault_lines)
            assert not any(r.exc_info for r in caplog.records if r.name == "api.http.app")

            # it comes back on the same port: the service recovers by itself
            proxy.start()
            assert op.get("/api/cases").status_code == 200
            assert _transition(op, case_id, "filed").status_code == 200

            # a restart kills every backend: the next requests still succeed (dead connections are
            # found before use and replaced)
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = :a"
                    ),
                    {"a": app_name},
                ).scalar_one()
            admin.dispose()
            assert killed >= 1
            for _ in range(3):
                assert op.get("/api/cases").status_code == 200
            assert device.get("/api/jobs/999").status_code == 404
    finally:
        proxy.stop()


def test_nothing_listening_is_503(make_server: Any, tmp_path: Path) -> None:
    """A database URL whose port has nothing listening, after the service started: 503, no 500."""
    server: LiveServer = make_server(f"sqlite:///{tmp_path / 'test.db'}", run_webhooks=False)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(f"postgresql+psycopg://gp:secret-pw@127.0.0.1:{port}/none", pool_pre_ping=True)
    services = server.services
    old = services.read_factory
    services.read_factory = sessionmaker(engine, expire_on_commit=False)
    try:
        with server.client("operator") as op:
            r = op.get("/api/cases")
            _error(r, 503, "database")
            assert "secret-pw" not in r.text
    finally:
        services.read_factory = old
        engine.dispose()
    with server.client("operator") as op:
        assert op.get("/api/cases").status_code == 200


def test_sqlite_locked_beyond_timeout_is_503(make_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "test.db"
    server: LiveServer = make_server(f"sqlite:///{db}?timeout=0.5", run_webhooks=False)
    with server.client("operator") as op, server.client("device") as device:
        case_id = post_incident(device, incident_json("inc-lock")).json()["case_id"]
        other = sqlite3.connect(db, isolation_level=None, timeout=5)  # another process's writer
        other.execute("BEGIN IMMEDIATE")
        try:
            locked = _transition(op, case_id, "filed")
            _error(locked, 503, "database")
            assert locked.headers["retry-after"].isdigit()
            assert op.get(f"/api/cases/{case_id}").status_code == 200  # reads go on
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert _transition(op, case_id, "filed").status_code == 200


# --- a full disk -------------------------------------------------------------------------------


def test_sqlite_database_full_is_507_and_keeps_what_is_stored(make_server: Any, tmp_path: Path) -> None:
    """PRAGMA max_page_count: SQLite's own, real "database or disk is full"."""
    server: LiveServer = make_server(f"sqlite:///{tmp_path / 'test.db'}", run_webhooks=False)
    with server.client("operator") as op, server.client("device") as device:
        first = post_incident(device, incident_json("inc-kept")).json()
        engine = server.services.engine

        @event.listens_for(engine, "connect")
        def _cap(dbapi_conn: Any, _record: Any) -> None:
            count = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count={count}")

        engine.dispose()  # every connection from now on is capped at the pages it has
        try:
            full = None
            for i in range(300):  # until a page the file does not have is needed
                full = post_incident(device, incident_json(f"inc-full-{i}", plate=f"ZJ-A{i:05d}"))
                if full.status_code != 201:
                    break
            assert full is not None
            _error(full, 507, "database")
            assert "no space left" in full.json()["detail"]
            assert op.get(f"/api/cases/{first['case_id']}").status_code == 200  # nothing lost, reads go on
        finally:
            event.remove(engine, "connect", _cap)
            engine.dispose()
        assert post_incident(device, incident_json("inc-after")).status_code == 201


def test_evidence_store_write_to_full_device_is_storage_full(tmp_path: Path) -> None:
    """Runs everywhere with /dev/full: the real ENOSPC of a write, named, the temporary file gone."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    store = EvidenceStore(tmp_path / "evidence")
    kept = store.put_bytes(jpeg_bytes("kept"))
    incoming = store.open_incoming()
    os.close(incoming._fd)  # type: ignore[arg-type]
    incoming._fd = os.open("/dev/full", os.O_WRONLY)  # the write lands on a device that is full
    with pytest.raises(StorageFull) as caught:
        incoming.write(jpeg_bytes("lost"))
    assert caught.value.status == 507 and str(caught.value) == "evidence store: no space left on device"
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert [p.name for p in (tmp_path / "evidence").iterdir() if p.name.startswith(".incoming-")] == []
    assert store.verify(kept.sha256) is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs as the data folder (tmp_path/data, where make_server puts it): a disk that
    really fills (needs the right to mount; skipped otherwise)."""
    with tmpfs(tmp_path / "data", 6) as mount:
        yield mount


def _fill(path: Path, keep_bytes: int = 0) -> Path:
    """Fill the disk of `path` with one file (leaving about keep_bytes); returns the file."""
    filler = path / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if keep_bytes:
        os.truncate(filler, max(0, filler.stat().st_size - keep_bytes))
    return filler


def _raw_post(
    conn: http.client.HTTPConnection, path: str, token: str, fields: list[tuple[str, str, bytes]]
) -> Any:
    boundary = "gpfaults" + uuid.uuid4().hex
    body = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    conn.request(
        "POST",
        path,
        body=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_full_disk_is_507_on_the_same_connection(make_server: Any, small_disk: Path) -> None:
    """A real full disk (tmpfs): evidence and uploads answer 507 naming what filled, leave no
    half-written file, keep the connection open, lose nothing stored; a device's bookkeeping write
    that the full disk refuses at COMMIT does not fail its request."""
    data_dir = small_disk
    server: LiveServer = make_server(f"sqlite:///{data_dir / 'test.db'}", run_webhooks=False)
    with server.client("operator") as op, server.client("device") as device:
        first = post_incident(device, incident_json("inc-before"))
        assert first.status_code == 201, first.text
        stored_before = sorted(sha for sha, _ in server.services.store.iter_files())
        # the device's last use is recorded again (a write) on its next request
        with server.services.engine.begin() as conn:
            conn.execute(text("UPDATE devices SET last_used_at = NULL"))
        server.services.principals.clear()
        filler = _fill(small_disk)

        # a read by the device: its bookkeeping write fails at COMMIT, the read does not
        assert device.get("/api/jobs/999").status_code == 404
        # a move: SQLite's COMMIT finds no room for its journal
        case_id = first.json()["case_id"]
        refused = _transition(op, case_id, "filed")
        _error(refused, 507, "database")
        assert op.get(f"/api/cases/{case_id}").json()["status"] == "pending_review"

        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        conn = http.client.HTTPConnection(host, port, timeout=30)
        data = incident_json("inc-full", files={"annotated": jpeg_bytes("x") * 40_000})
        status, _, body = _raw_post(
            conn,
            "/api/incidents",
            server.tokens["device"],
            [
                ("incident", "", json.dumps(data).encode()),
                ("files", "inc-full-annotated.jpg", jpeg_bytes("x") * 40_000),
            ],
        )
        assert status == 507, body
        assert json.loads(body)["detail"] == "evidence store: no space left on device"
        sock = conn.sock
        assert sock is not None
        # the same connection answers the next request
        conn.request("GET", "/api/health")
        health = conn.getresponse()
        assert health.status == 200 and health.read()
        assert conn.sock is sock

        status, _, body = _raw_post(
            conn,
            "/api/uploads",
            server.tokens["operator"],
            [("file", "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 3_000_000)],
        )
        assert status == 507, body
        assert json.loads(body)["detail"] == "uploads: no space left on device"
        conn.close()

        leftovers = [p for p in data_dir.rglob(".incoming-*")]
        assert leftovers == []
        assert sorted(sha for sha, _ in server.services.store.iter_files()) == stored_before
        assert all(server.services.store.verify(sha) is None for sha in stored_before)
        assert op.get(f"/api/cases/{first.json()['case_id']}").status_code == 200

        filler.unlink()  # space again: the same incident is received
        again = post_incident(device, incident_json("inc-full"))
        assert again.status_code == 201, again.text
        assert _transition(op, case_id, "filed").status_code == 200


# --- a failed move's after-photo ----------------------------------------------------------------


def test_failed_move_leaves_no_after_photo(make_server: Any, db_url: str) -> None:
    server: LiveServer = make_server(db_url, run_webhooks=False)
    store = server.services.store
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.client("ziyang") as ziyang,
    ):
        case_id = post_incident(device, incident_json("inc-photo")).json()["case_id"]
        shared = jpeg_bytes("inc-other" + "a")  # the evidence of another case
        assert (
            post_incident(device, incident_json("inc-other", position=(30.2742, 120.1552))).status_code == 201
        )
        before = {sha for sha, _ in store.iter_files()}

        photo = jpeg_bytes("after-photo-of-an-illegal-move")
        # pending review -> handled is not allowed: 409, and the photo is not kept
        illegal = _transition(
            ziyang, case_id, "handled", note="towed", files={"photo": ("after.jpg", photo, "image/jpeg")}
        )
        assert illegal.status_code == 409, illegal.text
        assert {sha for sha, _ in store.iter_files()} == before

        # a failed move whose photo is the same bytes as another case's evidence: that file stays
        kept = _transition(
            ziyang, case_id, "handled", note="towed", files={"photo": ("after.jpg", shared, "image/jpeg")}
        )
        assert kept.status_code == 409
        assert {sha for sha, _ in store.iter_files()} == before
        assert all(store.verify(sha) is None for sha in before)

        # a legal move keeps its photo
        assert _transition(op, case_id, "filed").status_code == 200
        assert _transition(op, case_id, "dispatched").status_code == 200
        done = _transition(
            ziyang, case_id, "handled", note="towed", files={"photo": ("after.jpg", photo, "image/jpeg")}
        )
        assert done.status_code == 200, done.text
        sha = done.json()["case_evidence"][0]["sha256"]
        assert store.verify(sha) is None and sha not in before


# --- what a database error means ---------------------------------------------------------------


def _sqlite_error(sql: str) -> Exception:
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (sqlite3.OperationalError("database is locked"), 503),
        (sqlite3.OperationalError("database or disk is full"), 507),
        (sqlite3.OperationalError("unable to open database file"), 503),
        (_sqlite_error("SELEKT 1"), None),  # a bug: stays a 500
        (_sqlite_error("SELECT * FROM no_such_table"), None),
        (_sqlite_error("CREATE TABLE t(x UNIQUE); INSERT INTO t VALUES (1), (1)"), None),
    ],
)
def test_database_fault_names_the_database_state_not_bugs(error: Exception, status: int | None) -> None:
    from sqlalchemy.exc import DBAPIError

    from api.http.app import database_fault

    wrapped = DBAPIError.instance("SELECT 1", None, error, sqlite3.Error)  # type: ignore[arg-type]
    for exc in (error, wrapped):
        fault = database_fault(exc)
        assert (fault.status if fault else None) == status


def test_mask_credentials() -> None:
    from api.http.app import mask_credentials

    masked = mask_credentials(
        'connection to "postgresql://gp:s3cret@db:5432/x" failed; password=hunter2 user=gp'
    )
    assert "s3cret" not in masked and "hunter2" not in masked and "gp:***@db" in masked


def test_failed_move_from_the_task_page_leaves_no_after_photo(make_server: Any, sqlite_url: str) -> None:
    """The phone's "mark handled" form (POST /cases/{id}/move, as the task page sends it)."""
    from api.http.cookies import csrf_token_for

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    store = server.services.store
    token = server.tokens["ziyang"]
    with server.client("device") as device, server.client(cookies={"gp_session": token}) as phone:
        case_id = post_incident(device, incident_json("inc-page")).json()["case_id"]
        before = {sha for sha, _ in store.iter_files()}
        refused = phone.post(
            f"/cases/{case_id}/move",
            data={"to": "handled", "note": "towed", "back": "task", "csrf_token": csrf_token_for(token)},
            files={"photo": ("after.jpg", jpeg_bytes("page-photo"), "image/jpeg")},
            headers={"Origin": server.url},
        )
        assert refused.status_code == 409, refused.text[:300]
        assert {sha for sha, _ in store.iter_files()} == before


def test_a_change_the_database_refuses_is_a_409_naming_it_not_a_500(
    make_server: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A constraint or trigger refusing a request's change (a unique key another request stored a
    moment before, or here a trigger) was a 500 with a traceback; it is a 409 naming the refusal, on
    the API and on the pages, nothing of the change stored and what was stored kept."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        before = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
        conn.execute(
            text(
                "CREATE TRIGGER frozen BEFORE INSERT ON users "
                "BEGIN SELECT RAISE(ABORT, 'users are frozen'); END"
            )
        )
    new_user = {"username": "bob", "password": "a-long-password-1", "role": "viewer"}
    with caplog.at_level(logging.ERROR, logger="api.http.app"), server.client("admin") as admin:
        answer = admin.post("/api/users", json=new_user)
    assert answer.status_code == 409, answer.text
    assert answer.json()["errors"][0]["field"] == "database"
    assert (
        "users are frozen" in answer.json()["detail"]
        and "nothing of it was stored" in answer.json()["detail"]
    )
    assert any("answered 409" in r.getMessage() for r in caplog.records)

    with server.browser("admin") as browser:
        page = browser.post("/admin/users", data=new_user)
    assert page.status_code == 409, page.text[:500]
    assert "Change not made" in page.text and "users are frozen" in page.text
    assert "Traceback" not in page.text
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == before
    engine.dispose()
