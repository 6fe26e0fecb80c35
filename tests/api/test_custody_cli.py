"""Evidence store, custody chains, `gridpatrol evidence verify` and the other service commands."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api.accounts.accounts import SYSTEM, create_user
from api.cases import custody
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, ingest
from api.cases.merge import MergePolicy
from api.cli.main import main
from api.services import Services
from api.settings import Settings, SettingsError
from api.storage.evidence_store import EvidenceError, EvidenceStore
from api.storage.models import CustodyEntry
from tests.api.api_testkit import DEMO_GRID, jpeg_bytes

REPO = Path(__file__).resolve().parents[2]


def _names_file(out: str, name: str, problem: str) -> bool:
    """verify's line for an evidence file: its SHA-256, the case holding it, the problem."""
    return (
        re.search(rf"^evidence {name} \(case GP-\d{{4}}-\d{{6}}\): {re.escape(problem)}", out, re.M)
        is not None
    )


def test_store_is_content_addressed_and_verified(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    data = jpeg_bytes("x")
    sha = hashlib.sha256(data).hexdigest()
    stored = store.put_bytes(data, expected_sha256=sha)
    assert stored.sha256 == sha and stored.media_type == "image/jpeg"
    assert store.path_for(sha) == tmp_path / sha[:2] / sha[2:4] / sha
    assert store.put_bytes(data).sha256 == sha  # same bytes, same file
    with pytest.raises(EvidenceError, match="not the stated"):
        store.put_bytes(jpeg_bytes("y"), expected_sha256=sha)
    with pytest.raises(EvidenceError, match="larger than"):
        store.put_stream(io.BytesIO(data), max_bytes=10)
    with pytest.raises(EvidenceError, match="not a JPEG"):
        store.put_bytes(b"plain text")
    assert [p.name for p in tmp_path.rglob(".incoming-*")] == []
    assert store.verify(sha) is None
    store.path_for(sha).write_bytes(data + b"!")
    assert store.verify(sha).startswith("altered")
    store.path_for(sha).unlink()
    assert store.verify(sha) == "missing"


def _ingest_some(services: Services, n: int = 3) -> None:
    store = services.store
    with services.factory() as session:
        for i in range(n):
            image = jpeg_bytes(f"ev{i}")
            stored = store.put_bytes(image)
            payload = IncidentPayload.model_validate(
                {
                    "id": f"i{i}",
                    "category": "illegal_parking",
                    "position": [30.27 + i * 0.01, 120.15],
                    "first_seen_wall": "2026-11-20T09:00:00+08:00",
                    "evidence": [{"role": "annotated", "path": "a.jpg", "sha256": stored.sha256}],
                }
            )
            inc = IncidentIn.from_payload(payload, evidence=[("annotated", stored)])
            ingest(session, inc, grid=services.grid_cache.get(session), policy=MergePolicy(), actor=SYSTEM)
        session.commit()


def test_custody_chain_detects_tampering(services: Services) -> None:
    _ingest_some(services, 1)
    with services.factory() as session:
        for i in range(3):
            custody.append(session, case_id=1, actor="user:op", action="note", detail={"i": i})
        session.commit()
        assert custody.verify_all(session) == (1, [])
        entry = session.query(CustodyEntry).filter_by(case_id=1, seq=3).one()
        entry.detail = '{"i":99}'
        session.commit()
        chains, problems = custody.verify_all(session)
        assert chains == 1 and [(p.seq, p.reason) for p in problems] == [
            (3, "entry altered (hash does not match its content)")
        ]
        session.query(CustodyEntry).filter_by(case_id=1, seq=2).delete()
        session.commit()
        _, problems = custody.verify_all(session)
        assert "entry 2 missing" in problems[0].reason


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Settings:
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", sqlite_url)
    return Settings.from_env()


def test_cli_user_device_grid_and_verify(
    env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pw\n"))
    assert main(["user", "add", "alice", "--role", "enforcement", "--team", "t1", "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["user", "add", "bob", "--role", "viewer", "--password-stdin"]) == 1
    assert "password: at least 8 characters" in capsys.readouterr().err
    assert main(["device", "add", "van-9", "--camera", "demo-cam-01"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("gpd_")
    assert main(["grid", "import", str(DEMO_GRID)]) == 0
    assert "imported 36 grid cells" in capsys.readouterr().out

    services = Services.build(env)
    try:
        _ingest_some(services)
        assert main(["evidence", "verify"]) == 0
        assert "0 problem(s)" in capsys.readouterr().out
        victim = next(services.store.iter_files())[1]
        victim.write_bytes(b"\xff\xd8\xff tampered")
        assert main(["evidence", "verify"]) == 1
        out = capsys.readouterr().out
        assert _names_file(out, victim.name, "altered") and "1 problem(s)" in out
        victim.unlink()
        assert main(["evidence", "verify"]) == 1
        assert _names_file(capsys.readouterr().out, victim.name, "missing")
    finally:
        services.close()


def test_cli_grid_import_names_bad_features(
    env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"X1","name":"n","team":"t"},'
        '"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]}'
    )
    assert main(["grid", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "feature 0 (id 'X1'): geometry must be a Polygon or MultiPolygon, got LineString" in err
    assert main(["grid", "import", str(tmp_path / "missing.geojson")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_settings_from_env_names_the_variable(tmp_path: Path) -> None:
    settings = Settings.from_env({"GRIDPATROL_DATA_DIR": str(tmp_path)})
    assert settings.url == f"sqlite:///{(tmp_path / 'gridpatrol.db').resolve()}"
    assert Settings.from_env({}).data_dir == Path("data")
    with pytest.raises(SettingsError, match="GRIDPATROL_MERGE_RADIUS_M"):
        Settings.from_env({"GRIDPATROL_MERGE_RADIUS_M": "far"})


def test_passwords_are_argon2(services: Services) -> None:
    with services.factory() as session:
        user = create_user(session, username="carol", password="correct horse", role="viewer")
        assert user.password_hash.startswith("$argon2id$") and "correct" not in user.password_hash


def test_gridpatrol_serve_runs_the_api(tmp_path: Path) -> None:
    import os
    import time

    import httpx

    from tests.api.api_testkit import free_port

    port = free_port()
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(tmp_path / "data"))
    env.pop("GRIDPATROL_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "-q", "serve", "--no-worker", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json() == {"status": "ok"}
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        assert (tmp_path / "data" / "gridpatrol.db").is_file()  # the embedded default
    finally:
        proc.terminate()
        proc.wait(30)


def _as_a_user(command: list[str]) -> list[str]:
    """`command` without the power to read what permissions forbid (root has it: setpriv drops it)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a file's permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *command]


def test_verify_names_an_evidence_file_it_cannot_read_or_that_is_no_file(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable file, a folder in a file's place and an unreadable store folder are each a
    problem line naming them, never a traceback; the other files are still checked."""
    services = Services.build(env)
    try:
        _ingest_some(services, 3)
        files = [path for _, path in services.store.iter_files()]
    finally:
        services.close()
    unreadable, replaced, hidden = files
    replaced.unlink()
    replaced.mkdir()
    assert main(["evidence", "verify"]) == 1
    out = capsys.readouterr().out
    assert _names_file(out, replaced.name, "not a file") and "1 problem(s)" in out
    replaced.rmdir()
    unreadable.chmod(0)
    hidden.parent.chmod(0)
    try:
        run = subprocess.run(
            _as_a_user([sys.executable, "-m", "api.cli.main", "evidence", "verify"]),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        orphans = subprocess.run(
            _as_a_user([sys.executable, "-m", "api.cli.main", "evidence", "orphans"]),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        unreadable.chmod(0o644)
        hidden.parent.chmod(0o755)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert _names_file(run.stdout, unreadable.name, "unreadable (permission denied)")
    assert _names_file(run.stdout, hidden.name, "unreadable (permission denied)")
    assert _names_file(run.stdout, replaced.name, "missing")
    assert (
        f"evidence folder {hidden.parent}: unreadable (permission denied); its files not checked for orphans"
        in run.stdout
    )
    assert "4 problem(s)" in run.stdout, run.stdout
    assert orphans.returncode == 1 and "Traceback" not in orphans.stderr, orphans.stderr
    assert f"evidence folder {hidden.parent}: unreadable (permission denied); its files are not listed" in (
        orphans.stderr
    )


def test_verify_names_a_missing_evidence_folder_once(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The evidence folder moved away (a data folder copied without it, another GRIDPATROL_DATA_DIR):
    one line naming the folder and how many files it held, instead of a 'missing' line per file of
    the store (a district's hundred thousand lines); nothing is created in its place."""
    services = Services.build(env)
    try:
        _ingest_some(services, 3)
    finally:
        services.close()
    env.evidence_dir.rename(env.data_dir / "evidence.moved")
    assert main(["evidence", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"evidence folder {env.evidence_dir}: missing (moved, or GRIDPATROL_DATA_DIR is not" in out
    assert "its 3 evidence file(s) not found" in out and ": missing\n" not in out
    assert "1 problem(s)" in out and not env.evidence_dir.exists()
