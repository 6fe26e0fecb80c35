"""The S3 evidence backend against a real S3 API server on 127.0.0.1 (moto's server mode in a
subprocess): the store alone, the case service over HTTP with its evidence in a bucket, `gridpatrol
evidence verify` / `orphans` there, and the server gone (503 naming the evidence store) and back."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from api.cli.main import main
from api.errors import ServiceFault, Unavailable
from api.settings import Settings, SettingsError
from api.storage.evidence_store import EvidenceError
from api.storage.s3_store import S3EvidenceStore, S3Location
from tests.api.api_testkit import LiveServer, free_port, incident_json, jpeg_bytes, post_incident

pytestmark = pytest.mark.slow

KEY_ID = "gridpatrol-test-key"
SECRET = "gridpatrol-test-secret-do-not-log"
REGION = "us-east-1"


class MotoServer:
    """moto's S3 API server as a separate process on a loopback port; stop() and start() again on
    the same port (its buckets are kept in memory: a restarted server has none)."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {self.log_file.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def new_bucket(self, name: str | None = None) -> str:
        name = name or f"evidence-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A server of this test's own, to stop and start again."""
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


def s3_settings(moto: MotoServer, bucket: str) -> dict[str, Any]:
    return {
        "evidence_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": moto.url,
        "s3_region": REGION,
        "s3_access_key_id": KEY_ID,
        "s3_secret_access_key": SECRET,
    }


def make_store(moto: MotoServer, bucket: str, spool: Path, **kwargs: Any) -> S3EvidenceStore:
    return S3EvidenceStore(
        S3Location(bucket=bucket, endpoint_url=moto.url, region=REGION),
        spool_dir=spool,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        **kwargs,
    )


def key_of(sha: str) -> str:
    return f"evidence/{sha[:2]}/{sha[2:4]}/{sha}"


def test_store_round_trip(moto: MotoServer, tmp_path: Path) -> None:
    bucket = moto.new_bucket()
    spool = tmp_path / "spool"
    store = make_store(moto, bucket, spool, list_page_size=2)  # listing crosses pages
    client = moto.client()
    data = jpeg_bytes("round trip")
    sha = hashlib.sha256(data).hexdigest()

    stored = store.put_bytes(data, expected_sha256=sha)
    assert (stored.sha256, stored.size, stored.media_type, stored.created) == (
        sha,
        len(data),
        "image/jpeg",
        True,
    )
    assert client.get_object(Bucket=bucket, Key=key_of(sha))["Body"].read() == data
    assert store.exists(sha) and store.verify(sha) is None
    assert store.describe(sha) == f"s3://{bucket}/{key_of(sha)}"
    first_upload = client.head_object(Bucket=bucket, Key=key_of(sha))["ETag"]
    client.put_object(Bucket=bucket, Key=key_of(sha), Body=data + b"!")  # to see whether it is sent again
    assert store.put_bytes(data).created is False  # an existing key is not uploaded again
    assert client.head_object(Bucket=bucket, Key=key_of(sha))["ETag"] != first_upload
    assert store.verify(sha) == f"altered (content now hashes to {hashlib.sha256(data + b'!').hexdigest()})"
    client.put_object(Bucket=bucket, Key=key_of(sha), Body=data)

    with pytest.raises(EvidenceError, match="not the stated"):
        store.put_bytes(jpeg_bytes("other"), expected_sha256=sha)
    with pytest.raises(EvidenceError, match="not a JPEG"):
        store.put_bytes(b"plain text")
    with pytest.raises(EvidenceError, match="larger than"):
        store.put_stream(io.BytesIO(data), max_bytes=10)
    assert list(spool.iterdir()) == []  # no spool file stays, whatever the outcome

    others = [store.put_bytes(jpeg_bytes(f"more {i}")).sha256 for i in range(4)]
    client.put_object(Bucket=bucket, Key="evidence/not-evidence.txt", Body=b"x")  # not named like evidence
    client.put_object(Bucket=bucket, Key="elsewhere/" + key_of(sha), Body=data)  # outside the prefix
    listed = list(store.iter_files())
    assert listed == sorted((s, key_of(s)) for s in [sha, *others])
    entries = list(store.entries())
    assert [e.name for e in entries] == [s for s, _ in listed] and all(e.complete for e in entries)
    assert all(abs(e.mtime - time.time()) < 3600 for e in entries)

    content = store.open_content(sha)
    assert content is not None and content.path is None and content.size == len(data)
    assert content.chunks is not None and b"".join(content.chunks) == data

    assert store.remove(sha) is True and store.remove(sha) is False
    assert not store.exists(sha) and store.verify(sha) == "missing" and store.open_content(sha) is None
    assert sha not in {s for s, _ in store.iter_files()}


def test_an_object_claimed_again_is_young_again(moto: MotoServer, tmp_path: Path) -> None:
    """A put of bytes already stored (a device retrying: the old object an orphan so far) makes the
    object young again, so `evidence orphans --remove` leaves it be; the content stays as it was."""
    bucket = moto.new_bucket()
    store = make_store(moto, bucket, tmp_path / "spool")
    client = moto.client()
    data = jpeg_bytes("sent twice")
    sha = store.put_bytes(data).sha256
    first = client.head_object(Bucket=bucket, Key=key_of(sha))["LastModified"]
    [entry] = list(store.entries())
    time.sleep(1.1)  # LastModified counts whole seconds
    assert store.put_bytes(data).created is False
    assert client.head_object(Bucket=bucket, Key=key_of(sha))["LastModified"] > first
    assert store.delete_entry(entry, min_age_s=60) is False and store.verify(sha) is None
    assert store.delete_entry(entry, if_orphan=lambda: False) is False and store.exists(sha)
    assert store.delete_entry(entry) is True and not store.exists(sha)


def test_faults_of_the_s3_side_are_named(moto: MotoServer, tmp_path: Path) -> None:
    data = jpeg_bytes("faults")
    no_bucket = make_store(moto, "no-such-bucket-here", tmp_path / "spool")
    with pytest.raises(ServiceFault, match="^evidence store: bucket no-such-bucket-here does not exist$"):
        no_bucket.put_bytes(data)
    with pytest.raises(ServiceFault, match="does not exist"):
        no_bucket.verify(hashlib.sha256(data).hexdigest())
    nobody = make_store(moto, moto.new_bucket(), tmp_path / "spool", max_attempts=1)
    nobody_port = free_port()  # nothing listens there
    nobody._client.meta.events.register(  # the same store, pointed at a closed port
        "before-sign.s3.*",
        lambda request, **_: setattr(request, "url", request.url.replace(str(moto.port), str(nobody_port))),
    )
    with pytest.raises(Unavailable) as caught:
        nobody.put_bytes(data)
    assert caught.value.status == 503 and str(caught.value) == "evidence store: not reachable; retry"
    assert SECRET not in str(caught.value) and SECRET not in repr(nobody)
    assert list((tmp_path / "spool").iterdir()) == []


def test_settings_choose_the_backend(moto: MotoServer, tmp_path: Path) -> None:
    assert Settings().evidence_backend == "local"
    with pytest.raises(
        SettingsError, match="GRIDPATROL_S3_BUCKET: .*required when GRIDPATROL_EVIDENCE_BACKEND"
    ):
        Settings.from_env({"GRIDPATROL_EVIDENCE_BACKEND": "s3"})
    with pytest.raises(SettingsError, match="GRIDPATROL_EVIDENCE_BACKEND"):
        Settings.from_env({"GRIDPATROL_EVIDENCE_BACKEND": "ftp"})
    env = {"GRIDPATROL_" + k.upper(): v for k, v in s3_settings(moto, "bucket-x").items()}
    settings = Settings.from_env(env)
    assert settings.s3_bucket == "bucket-x" and SECRET not in repr(settings) and SECRET not in str(settings)


@pytest.fixture
def s3_server(make_server, db_url: str, moto: MotoServer) -> tuple[LiveServer, str]:  # type: ignore[no-untyped-def]
    bucket = moto.new_bucket()
    return make_server(db_url, run_webhooks=False, settings=s3_settings(moto, bucket)), bucket


def _cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, moto: MotoServer, bucket: str
) -> None:
    """The CLI's settings for the same service, with the credentials in AWS's own variables."""
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    monkeypatch.setenv("GRIDPATROL_EVIDENCE_BACKEND", "s3")
    monkeypatch.setenv("GRIDPATROL_S3_BUCKET", bucket)
    monkeypatch.setenv("GRIDPATROL_S3_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("GRIDPATROL_S3_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def test_case_service_keeps_evidence_in_the_bucket(
    s3_server: tuple[LiveServer, str],
    moto: MotoServer,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, bucket = s3_server
    client = moto.client()
    files = {"annotated": jpeg_bytes("s3-annotated"), "crop": jpeg_bytes("s3-crop")}
    data = incident_json("s3-inc-1", files=files)
    with server.client("device") as device, server.client("operator") as op:
        created = post_incident(device, data, files)
        assert created.status_code == 201, created.text
        case = op.get(f"/api/cases/{created.json()['case_id']}").json()
        links = {link["sha256"]: link["url"] for s in case["sightings_list"] for link in s["evidence"]}
        assert set(links) == {hashlib.sha256(body).hexdigest() for body in files.values()}
        for body in files.values():
            sha = hashlib.sha256(body).hexdigest()
            assert client.get_object(Bucket=bucket, Key=key_of(sha))["Body"].read() == body
            served = op.get(links[sha])  # the route the pages use
            assert served.status_code == 200 and served.content == body
            assert served.headers["content-type"] == "image/jpeg"
            assert served.headers["content-length"] == str(len(body))
            assert device.get(f"/api/evidence/{sha}").status_code == 403  # roles still checked
        assert not (tmp_path / "data" / "evidence").exists()  # nothing on the local disk
        assert list((tmp_path / "data" / "evidence-incoming").iterdir()) == []

    _cli_env(monkeypatch, tmp_path, db_url, moto, bucket)
    assert main(["evidence", "verify"]) == 0
    out = capsys.readouterr().out
    assert "checked 2 evidence files" in out and "0 problem(s)" in out and "orphan" not in out

    orphan = server.services.store.put_bytes(jpeg_bytes("no row: its database write failed")).sha256
    assert main(["evidence", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"orphan: evidence file s3://{bucket}/{key_of(orphan)} is referenced by no case" in out
    assert main(["evidence", "orphans", "--remove", "--older-than-min", "0"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert not server.services.store.exists(orphan)

    victim = hashlib.sha256(files["crop"]).hexdigest()
    client.put_object(Bucket=bucket, Key=key_of(victim), Body=jpeg_bytes("other bytes"))
    assert main(["evidence", "verify"]) == 1
    out = capsys.readouterr().out
    held = r"\(case GP-\d{4}-\d{6}\)"  # the case whose evidence it is
    assert re.search(rf"^evidence {victim} {held}: altered \(content now hashes to", out, re.M), out
    assert "1 problem(s)" in out
    client.delete_object(Bucket=bucket, Key=key_of(victim))
    assert main(["evidence", "verify"]) == 1
    assert re.search(rf"^evidence {victim} {held}: missing", capsys.readouterr().out, re.M)
    with server.client("operator") as op:
        assert op.get(f"/api/evidence/{victim}").status_code == 404


def test_s3_server_down_is_503_naming_the_evidence_store(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    own_moto: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = own_moto.new_bucket()
    server = make_server(db_url, run_webhooks=False, settings=s3_settings(own_moto, bucket))
    with server.client("device") as device, server.client("operator") as op:
        first = post_incident(device, incident_json("down-1"))
        assert first.status_code == 201, first.text
        sha = incident_json("down-1")["evidence"][0]["sha256"]

        own_moto.stop()
        down = post_incident(device, incident_json("down-2"))
        assert down.status_code == 503, down.text
        assert down.json()["errors"] == [{"field": "evidence store", "reason": "not reachable; retry"}]
        assert down.headers["retry-after"] == "5"
        served = op.get(f"/api/evidence/{sha}")
        assert served.status_code == 503 and served.json()["detail"].startswith("evidence store:")
        assert list((tmp_path / "data" / "evidence-incoming").iterdir()) == []
        _cli_env(monkeypatch, tmp_path, db_url, own_moto, bucket)
        assert main(["evidence", "verify"]) == 1
        assert "evidence store: not reachable" in capsys.readouterr().err

        own_moto.start()  # back, but empty (moto keeps its buckets in memory)
        own_moto.new_bucket(bucket)
        again = post_incident(device, incident_json("down-2"))
        assert again.status_code == 201, again.text
        assert op.get(f"/api/cases/{again.json()['case_id']}").status_code == 200
    assert SECRET not in caplog.text


def test_a_stalled_bucket_holds_up_only_its_own_incident(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    own_moto: MotoServer,
) -> None:
    """The S3 server stops answering (not refusing: a hung endpoint): the incident waiting on it is a
    503 naming the evidence store within the configured timeout's tries, and the rest of the service
    answers meanwhile (the upload runs in a worker thread, not on the event loop)."""
    bucket = own_moto.new_bucket()
    settings = {**s3_settings(own_moto, bucket), "s3_timeout_s": 1.0}
    server = make_server(db_url, run_webhooks=False, settings=settings)
    assert own_moto.process is not None
    with server.client("device") as device, server.client("operator") as op:
        assert post_incident(device, incident_json("stall-1")).status_code == 201
        answer: dict[str, Any] = {}

        def post() -> None:
            t0 = time.monotonic()
            answer["response"] = post_incident(device, incident_json("stall-2"))
            answer["s"] = time.monotonic() - t0

        os.kill(own_moto.process.pid, signal.SIGSTOP)
        try:
            waiting = threading.Thread(target=post)
            waiting.start()
            time.sleep(0.5)  # the incident is waiting on the bucket now
            t0 = time.monotonic()
            assert op.get("/api/health").status_code == 200
            assert op.get("/api/grids").status_code == 200
            assert time.monotonic() - t0 < 1.0
            waiting.join(60)
        finally:
            os.kill(own_moto.process.pid, signal.SIGCONT)
        assert answer["response"].status_code == 503, answer["response"].text
        assert answer["response"].json()["errors"][0]["field"] == "evidence store"
        assert answer["s"] < 20
        assert post_incident(device, incident_json("stall-2")).status_code == 201  # back


def test_local_store_speaks_the_same_interface(tmp_path: Path) -> None:
    """The default store gives verify/orphans the same entries: stored files and receiving files a
    killed request left (named by their temporary name, never verified as evidence)."""
    from api.storage.evidence_store import EvidenceStore

    store = EvidenceStore(tmp_path / "evidence")
    data = jpeg_bytes("local")
    sha = store.put_bytes(data).sha256
    left = store.open_incoming()
    left.write(b"half a file")  # a request killed here leaves this behind
    entries = list(store.entries())
    assert [(e.name, e.complete) for e in entries][0] == (sha, True)
    assert entries[0].where == store.describe(sha) == str(store.path_for(sha))
    assert entries[1].name.startswith(".incoming-") and entries[1].complete is False
    content = store.open_content(sha)
    assert content is not None and content.path == store.path_for(sha) and content.size == len(data)
    for entry in entries:
        assert store.delete_entry(entry) is True
    assert list(store.entries()) == [] and store.open_content(sha) is None
    left.discard()
