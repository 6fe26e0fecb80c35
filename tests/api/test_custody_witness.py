"""Checkpoints taken by the server on a schedule and sent to an outside witness (a webhook), and
evidence files that no case references listed by verify and `evidence orphans` (issue 15)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from api.accounts.accounts import SYSTEM
from api.cases import checkpoints
from api.cases.ingest import ingest
from api.cases.merge import MergePolicy
from api.cli.main import main
from api.services import Services
from tests.api.api_testkit import LiveServer, import_demo_grid, incident_json, jpeg_bytes, post_incident
from tests.api.test_custody_ledger import _incident, _rewrite_everything
from tests.api.test_webhooks import Receiver


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI pointed at the server's data folder and database; returns the checkpoint folder."""
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    monkeypatch.delenv("GRIDPATROL_CHECKPOINT_DIR", raising=False)
    return tmp_path / "gridpatrol-checkpoints"


def _verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["evidence", "verify", *extra])
    return code, capsys.readouterr().out


def _schedule(services: Services, folder: Path) -> checkpoints.CheckpointSchedule:
    return checkpoints.CheckpointSchedule(
        services.factory, every_s=3600, folder=folder, data_dir=services.settings.data_dir
    )


def test_server_checkpoints_on_a_schedule_to_a_witness(
    make_server,  # type: ignore[no-untyped-def]
    db_url: str,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server: LiveServer = make_server(
        db_url,
        run_webhooks=True,
        settings={
            "checkpoint_every_min": 0.01,  # every 0.6 s
            "webhook_poll_s": 0.05,
            "webhook_allow_hosts": "127.0.0.1",
        },
    )
    witness, cases_only = Receiver(), Receiver()
    try:
        with server.client("admin") as admin:
            r = admin.post("/api/webhooks", json={"url": witness.url, "events": ["custody.checkpoint"]})
            assert r.status_code == 201, r.text
            r = admin.post("/api/webhooks", json={"url": cases_only.url})  # no events: the case events
            assert r.json()["events"] == ["case.filed", "case.dispatched", "case.closed"]
        with server.client("device") as device:
            post_incident(device, incident_json("w-1"))
        witness.wait(1)
        body = json.loads(witness.requests[0]["body"])
        assert body["event"] == "custody.checkpoint"
        assert body["checkpoint"]["ledger_seq"] == 1 and body["checkpoint"]["entries"] == 1
        written = sorted(cli_env.glob("checkpoint-*.json"))
        assert [json.loads(p.read_text())["ledger_hash"] for p in written] == [
            body["checkpoint"]["ledger_hash"]
        ]
        time.sleep(1.5)  # rounds with nothing new write nothing
        assert len(list(cli_env.glob("checkpoint-*.json"))) == 1 and len(witness.requests) == 1

        with server.client("device") as device:
            post_incident(device, incident_json("w-2", position=(30.29, 120.15)))
        witness.wait(2)
        assert json.loads(witness.requests[1]["body"])["checkpoint"]["ledger_seq"] == 2
        assert cases_only.requests == []  # a case-events webhook is not sent checkpoints

        copy = cli_env.parent / "witness-copy.json"  # what the witness kept: the body as received
        copy.write_bytes(witness.requests[0]["body"])
        assert _verify(capsys, "--against", str(copy))[0] == 0

        engine = create_engine(db_url)
        with engine.begin() as conn:
            _rewrite_everything(conn, case_id=1, seq=1)
        engine.dispose()
        caplog.set_level(logging.ERROR, logger="api.cases.checkpoints")
        with server.client("device") as device:
            post_incident(device, incident_json("w-3", position=(30.30, 120.15)))
        deadline = time.monotonic() + 10
        while "custody checkpoint not taken" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        # found by the round after the rewrite, or by the one after w-3 (depending on timing)
        assert (
            "does not match custody entry 2 as the last checkpoint recorded it" in caplog.text
            or "custody entry 3 (case 3 entry 1) does not follow the entry before" in caplog.text
        ), caplog.text
        assert len(witness.requests) == 2  # a rewritten ledger is never checkpointed
        code, out = _verify(capsys, "--against", str(copy))
        assert code == 1 and "the ledger was rewritten at or before custody entry 1" in out, out
    finally:
        witness.close()
        cases_only.close()


def test_schedule_runs_on_from_the_newest_checkpoint_across_restarts(
    services: Services, db_url: str, cli_env: Path
) -> None:
    import_demo_grid(services)

    def add(incident_id: str, lat: float) -> None:
        with services.factory() as session:
            ingest(
                session,
                _incident(services, incident_id, (lat, 120.15)),
                grid=services.grid_cache.get(session),
                policy=MergePolicy(),
                actor=SYSTEM,
            )
            session.commit()

    schedule = _schedule(services, cli_env)
    assert schedule.run_once() is None  # an empty ledger: nothing to anchor
    add("r-1", 30.27)
    first = schedule.run_once()
    assert first is not None and schedule.run_once() is None
    add("r-2", 30.28)
    restarted = _schedule(services, cli_env)  # a new server process finds the newest file
    assert restarted.last is not None and restarted.last.ledger_seq == 1
    engine = create_engine(db_url)
    with engine.begin() as conn:  # rewritten while "the server was down"
        _rewrite_everything(conn, case_id=1, seq=1)
    engine.dispose()
    with pytest.raises(checkpoints.CheckpointError, match="does not follow the entry before"):
        restarted.run_once()
    assert len(list(cli_env.glob("checkpoint-*.json"))) == 1


def test_orphan_evidence_files_are_listed_and_removed_when_old(
    services: Services, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = services.store.put_bytes(jpeg_bytes("no row: its incident's database write failed"))
    path = services.store.path_for(stored.sha256)
    code, out = _verify(capsys)
    assert code == 0, out  # an orphan is no evidence of any case: named, not a failure
    assert f"orphan: evidence file {path} is referenced by no case" in out
    assert "1 orphan file(s)" in out

    assert main(["evidence", "orphans", "--remove"]) == 0
    out = capsys.readouterr().out
    assert "younger than 60 min: may be in flight" in out and path.exists()
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    assert main(["evidence", "orphans", "--remove"]) == 0
    assert "removed 1" in capsys.readouterr().out and not path.exists()
    code, out = _verify(capsys)
    assert code == 0 and "orphan" not in out, out


def test_an_orphan_claimed_again_is_young_again_and_kept(
    services: Services, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device retrying after a 503 sends the same bytes again: the old orphan is what its case
    will reference, so the put makes it young again and `orphans --remove` leaves it be."""
    data = jpeg_bytes("sent twice: the first write failed after its file was stored")
    path = services.store.path_for(services.store.put_bytes(data).sha256)
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    again = services.store.put_bytes(data)  # the retry, its case not committed yet
    assert again.created is False and time.time() - path.stat().st_mtime < 60
    assert main(["evidence", "orphans", "--remove"]) == 0
    assert "younger than 60 min" in capsys.readouterr().out and path.exists()


def test_orphan_removal_checks_again_and_never_loses_a_file_being_claimed(services: Services) -> None:
    """Between the listing and the deletion: a put of the same bytes (young again) or a row naming
    the file keeps it; a put while it is being removed files its own copy, which stays."""
    store = services.store
    data = jpeg_bytes("orphan being claimed")
    path = store.path_for(store.put_bytes(data).sha256)
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    [entry] = list(store.entries())
    store.put_bytes(data)  # claimed again after the listing
    assert store.delete_entry(entry, min_age_s=3600) is False and path.exists()
    os.utime(path, (old, old))
    assert store.delete_entry(entry, min_age_s=3600, if_orphan=lambda: False) is False and path.exists()

    def claimed_meanwhile() -> bool:  # the retry's put lands while the file is checked, no row yet
        assert store.put_bytes(data).created is True  # it found no file: its own copy
        return True

    assert store.delete_entry(entry, min_age_s=3600, if_orphan=claimed_meanwhile) is True
    assert path.exists() and store.verify(entry.name) is None
    assert [e.name for e in store.entries()] == [entry.name]  # nothing left aside


@pytest.mark.parametrize("minutes", ["-5", "nan", "inf"])
def test_orphans_refuses_an_age_that_is_no_age(
    services: Services, cli_env: Path, capsys: pytest.CaptureFixture[str], minutes: str
) -> None:
    path = services.store.path_for(services.store.put_bytes(jpeg_bytes("kept")).sha256)
    assert main(["evidence", "orphans", "--remove", f"--older-than-min={minutes}"]) == 1
    err = capsys.readouterr().err
    assert f"error: --older-than-min: must be a number of minutes, 0 or more (not {minutes})" in err
    assert path.exists()
