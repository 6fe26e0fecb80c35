"""`gridpatrol evidence verify` catches every alteration of what a case rests on (issue 15), and
`verify --against` a checkpoint kept outside the database catches a rewrite of the whole ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, select, text

from api.accounts.accounts import SYSTEM, Principal
from api.cases import audit, custody, workflow
from api.cases.acting import transition
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, ingest, ingest_committed
from api.cases.merge import MergePolicy
from api.cli.main import main
from api.services import Services
from api.storage.db import make_engine, make_sessionmaker, migrate, table_of
from api.storage.models import CustodyEntry
from tests.api.api_testkit import import_demo_grid, incident_json, jpeg_bytes

OPERATOR = Principal(kind="user", name="op", role="admin")
OFFICER = Principal(kind="user", name="officer", role="enforcement", team="t")


def _incident(services: Services, incident_id: str, position: tuple[float, float], **kw: Any) -> IncidentIn:
    data = incident_json(incident_id, position=position, **kw)
    files = [services.store.put_bytes(jpeg_bytes(incident_id + r[0])) for r in ("annotated", "crop")]
    evidence = list(zip(("annotated", "crop"), files, strict=True))
    return IncidentIn.from_payload(IncidentPayload.model_validate(data), evidence=evidence)


@dataclass
class World:
    services: Services
    numbers: dict[int, str]  # case id -> number
    tmp: Path


@pytest.fixture
def world(services: Services, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """Three cases: 1 with two sightings, 2 handled (with an after-photo), 3 filed."""
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_DATABASE_URL", db_url)
    monkeypatch.delenv("GRIDPATROL_CHECKPOINT_DIR", raising=False)
    import_demo_grid(services)
    with services.factory() as session:
        grid = services.grid_cache.get(session)
        for incident_id, position in (("a", (30.27, 120.15)), ("b", (30.28, 120.15)), ("c", (30.29, 120.15))):
            ingest(
                session,
                _incident(services, incident_id, position),
                grid=grid,
                policy=MergePolicy(),
                actor=SYSTEM,
            )
        ingest(
            session, _incident(services, "a2", (30.27, 120.15)), grid=grid, policy=MergePolicy(), actor=SYSTEM
        )
        session.commit()
        for case_id, target in ((2, workflow.FILED), (2, workflow.DISPATCHED), (3, workflow.FILED)):
            transition(session, principal=OPERATOR, case_id=case_id, move=workflow.Move(target))
        photo = services.store.put_bytes(jpeg_bytes("after"))
        transition(
            session,
            principal=OPERATOR,
            case_id=2,
            move=workflow.Move(workflow.HANDLED, note="towed", has_photo=True),
            photo=photo,
        )
        session.commit()
        numbers = {row.id: row.number for row in session.execute(text("SELECT id, number FROM cases"))}
    assert sorted(numbers) == [1, 2, 3]
    return World(services, numbers, tmp_path)


def _verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["evidence", "verify", *extra])
    return code, capsys.readouterr().out


def _one(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar_one()


def _last_entry_of_case(w: World, conn: Connection) -> list[str]:
    seq = _one(conn, "SELECT max(ledger_seq) FROM custody_entries WHERE case_id = 1")
    sighting = _one(conn, "SELECT id FROM sightings WHERE incident_id = 'a2'")
    conn.execute(text("DELETE FROM custody_entries WHERE ledger_seq = :s"), {"s": seq})
    return [
        f"custody entry {seq} missing",
        f"case {w.numbers[1]} sighting {sighting} is not in its custody chain",
    ]


def _last_entry_of_ledger(w: World, conn: Connection) -> list[str]:
    seq = _one(conn, "SELECT max(ledger_seq) FROM custody_entries")
    conn.execute(text("DELETE FROM custody_entries WHERE ledger_seq = :s"), {"s": seq})
    return [
        f"custody entry {seq} missing (the recorded head is entry {seq}",
        f"case {w.numbers[2]} status is handled but its custody chain says dispatched",
    ]


def _whole_chain(w: World, conn: Connection) -> list[str]:
    first = _one(conn, "SELECT min(ledger_seq) FROM custody_entries WHERE case_id = 3")
    conn.execute(text("DELETE FROM custody_entries WHERE case_id = 3"))
    return [f"custody entry {first} missing", f"case {w.numbers[3]} has no custody chain"]


def _link_repointed(w: World, conn: Connection) -> list[str]:
    link, sighting = conn.execute(
        text("SELECT id, sighting_id FROM evidence_links WHERE case_id = 3 AND role = 'annotated'")
    ).one()
    other = _one(conn, "SELECT sha256 FROM evidence_links WHERE case_id = 2 AND role = 'annotated'")
    conn.execute(text("UPDATE evidence_links SET sha256 = :o WHERE id = :i"), {"o": other, "i": link})
    return [
        f"case {w.numbers[3]} evidence link {link} (annotated of sighting {sighting}) points to another blob"
    ]


def _link_deleted(w: World, conn: Connection) -> list[str]:
    sha, sighting = conn.execute(
        text("SELECT sha256, sighting_id FROM evidence_links WHERE case_id = 3 AND role = 'crop'")
    ).one()
    conn.execute(text("DELETE FROM evidence_links WHERE case_id = 3 AND role = 'crop'"))
    return [f"case {w.numbers[3]} evidence link (crop of sighting {sighting}, blob {sha}) deleted"]


def _after_photo_deleted(w: World, conn: Connection) -> list[str]:
    conn.execute(text("DELETE FROM evidence_links WHERE case_id = 2 AND role = 'after_photo'"))
    return [f"case {w.numbers[2]} evidence link (after_photo of the case, blob"]


def _blob_removed(w: World, conn: Connection) -> list[str]:
    sha = _one(
        conn, "SELECT sha256 FROM evidence_links WHERE case_id = 1 AND role = 'crop' ORDER BY id LIMIT 1"
    )
    conn.execute(text("DELETE FROM evidence_links WHERE sha256 = :s"), {"s": sha})
    conn.execute(text("DELETE FROM evidence WHERE sha256 = :s"), {"s": sha})
    w.services.store.path_for(sha).unlink()
    return [f"blob {sha} missing from the evidence table", f"evidence {sha}: missing"]


def _status_closed(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET status = 'closed' WHERE id = 3"))
    return [f"case {w.numbers[3]} status is closed but its custody chain says filed"]


def _category_changed(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET category = 'street_vending' WHERE id = 1"))
    return [f"case {w.numbers[1]} category is street_vending but its custody chain says illegal_parking"]


def _team_changed(w: World, conn: Connection) -> list[str]:
    team = _one(conn, "SELECT team FROM cases WHERE id = 3")
    conn.execute(text("UPDATE cases SET team = 'elsewhere' WHERE id = 3"))
    return [f"case {w.numbers[3]} team is elsewhere but its custody chain says {team}"]


def _plate_set(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET plate = '浙A00001' WHERE id = 1"))
    return [f"case {w.numbers[1]} plate is 浙A00001 but its sightings say None"]


def _camera_changed(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET camera_id = 'other-cam' WHERE id = 2"))
    return [f"case {w.numbers[2]} camera_id is other-cam but its custody chain says demo-cam-01"]


def _position_moved(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET lat = 30.5 WHERE id = 3"))
    return [f"case {w.numbers[3]} lat is 30.5 but its custody chain says 30.29"]


def _last_seen_changed(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE cases SET last_seen = '2026-01-01 00:00:00' WHERE id = 1"))
    return [f"case {w.numbers[1]} last_seen is"]


def _event_forged(w: World, conn: Connection) -> list[str]:
    conn.execute(
        text(
            "INSERT INTO case_events (case_id, at, actor, action, from_status, to_status) "
            "VALUES (3, '2026-11-21 10:00:00', 'user:op', 'closed', 'verified', 'closed')"
        )
    )
    event = _one(conn, "SELECT max(id) FROM case_events")
    return [
        f"case {w.numbers[3]} history event {event} (closed: verified -> closed by user:op) is not in its"
    ]


def _event_deleted(w: World, conn: Connection) -> list[str]:
    conn.execute(text("DELETE FROM case_events WHERE case_id = 3 AND action = 'filed'"))
    return [f"case {w.numbers[3]} history event (filed: pending_review -> filed by user:op) deleted"]


def _sighting_deleted(w: World, conn: Connection) -> list[str]:
    sighting = _one(conn, "SELECT id FROM sightings WHERE incident_id = 'a2'")
    conn.execute(text("DELETE FROM sightings WHERE id = :i"), {"i": sighting})
    return [f"case {w.numbers[1]} sighting {sighting} deleted (incident a2)"]


def _sighting_altered(w: World, conn: Connection) -> list[str]:
    sighting = _one(conn, "SELECT id FROM sightings WHERE incident_id = 'b'")
    conn.execute(text("UPDATE sightings SET plate = 'ZJ-A12345' WHERE id = :i"), {"i": sighting})
    return [f"case {w.numbers[2]} sighting {sighting} altered (incident b)"]


def _evidence_bytes_flipped(w: World, conn: Connection) -> list[str]:
    sha = _one(conn, "SELECT sha256 FROM evidence_links WHERE case_id = 2 AND role = 'crop'")
    path = w.services.store.path_for(sha)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    return [f"evidence {sha} (case {w.numbers[2]}): altered"]


def _entry_edited(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE custody_entries SET actor = 'user:someone' WHERE case_id = 3 AND seq = 2"))
    return [f"case {w.numbers[3]} custody entry 2: entry altered (hash does not match its content)"]


def _head_deleted(w: World, conn: Connection) -> list[str]:
    conn.execute(text("DELETE FROM custody_ledger_head"))
    return ["ledger: the recorded head row is missing"]


def _and_case_1_closed(w: World, conn: Connection) -> str:
    """A second alteration, to show the check goes on past an unreadable entry."""
    conn.execute(text("UPDATE cases SET status = 'closed' WHERE id = 1"))
    return f"case {w.numbers[1]} status is closed but its custody chain says pending_review"


def _detail_not_json(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE custody_entries SET detail = '{not json' WHERE case_id = 3 AND seq = 1"))
    return [
        f"case {w.numbers[3]} custody entry 1 (case_created): its detail is not JSON",
        f"case {w.numbers[3]} custody entry 1: entry altered",
        _and_case_1_closed(w, conn),
    ]


def _detail_a_list(w: World, conn: Connection) -> list[str]:
    conn.execute(text("UPDATE custody_entries SET detail = '[1,2]' WHERE case_id = 3 AND seq = 1"))
    return [
        f"case {w.numbers[3]} custody entry 1 (case_created): its detail is not a JSON object",
        _and_case_1_closed(w, conn),
    ]


def _detail_misshapen(w: World, conn: Connection) -> list[str]:
    edit = text("UPDATE custody_entries SET detail = :d WHERE case_id = :c AND seq = :s")
    conn.execute(edit, {"d": '{"from":"pending_review"}', "c": 3, "s": 2})
    conn.execute(edit, {"d": '{"incident_id":"b","evidence":[{"role":1}]}', "c": 2, "s": 1})
    return [
        f"case {w.numbers[3]} custody entry 2 (transition): its to is missing",
        f"case {w.numbers[2]} custody entry 1 (case_created): its role is not a text",
        _and_case_1_closed(w, conn),
    ]


def _time_garbled(w: World, conn: Connection) -> list[str]:
    if conn.dialect.name != "sqlite":
        pytest.skip("only SQLite keeps a time as text that an edit can make anything")
    conn.execute(text("UPDATE custody_entries SET at = 'garbage' WHERE case_id = 3 AND seq = 1"))
    return [
        f"case {w.numbers[3]} custody entry 1: entry altered (its time 'garbage' is no time)",
        _and_case_1_closed(w, conn),
    ]


def _times_garbled(w: World, conn: Connection) -> list[str]:
    if conn.dialect.name != "sqlite":
        pytest.skip("only SQLite keeps a time as text that an edit can make anything")
    sighting = _one(conn, "SELECT min(id) FROM sightings WHERE case_id = 2")
    event = _one(conn, "SELECT min(id) FROM case_events WHERE case_id = 1")
    conn.execute(text("UPDATE cases SET last_seen = 'junk' WHERE id = 3"))
    conn.execute(text("UPDATE sightings SET seen_at = '2026-13-45 99:00:00' WHERE id = :i"), {"i": sighting})
    conn.execute(text("UPDATE case_events SET at = '' WHERE id = :i"), {"i": event})
    edited = "which is no time (the database was edited outside the service)"
    return [
        f"case {w.numbers[3]} last_seen reads 'junk', {edited}",
        f"case {w.numbers[2]} sighting {sighting} seen_at reads '2026-13-45 99:00:00', {edited}",
        f"case {w.numbers[2]} sighting {sighting} altered",
        f"case {w.numbers[1]} history event {event} at reads '', {edited}",
    ]


def _other_table_dropped(w: World, conn: Connection) -> list[str]:
    conn.execute(text("DROP TABLE case_events"))
    return ["table case_events is missing (dropped outside the service): nothing was checked"]


def _head_table_dropped(w: World, conn: Connection) -> list[str]:
    conn.execute(text("DROP TABLE custody_ledger_head"))
    return ["ledger: the recorded head's table (custody_ledger_head) is missing", _and_case_1_closed(w, conn)]


TAMPERING: dict[str, Callable[[World, Connection], list[str]]] = {
    "last entry of a case deleted": _last_entry_of_case,
    "last entry of the ledger deleted": _last_entry_of_ledger,
    "a case's whole chain deleted": _whole_chain,
    "evidence link repointed": _link_repointed,
    "evidence link deleted": _link_deleted,
    "after-photo link deleted": _after_photo_deleted,
    "blob row and file removed": _blob_removed,
    "status set to closed": _status_closed,
    "category changed": _category_changed,
    "team changed": _team_changed,
    "plate set": _plate_set,
    "camera changed": _camera_changed,
    "position moved": _position_moved,
    "last seen changed": _last_seen_changed,
    "history event forged": _event_forged,
    "history event deleted": _event_deleted,
    "sighting deleted": _sighting_deleted,
    "sighting altered": _sighting_altered,
    "evidence bytes flipped": _evidence_bytes_flipped,
    "custody entry edited": _entry_edited,
    "ledger head deleted": _head_deleted,
    "custody entry's detail not JSON": _detail_not_json,
    "custody entry's detail a list": _detail_a_list,
    "custody entry's detail misshapen": _detail_misshapen,
    "custody entry's time garbled": _time_garbled,
    "ledger head table dropped": _head_table_dropped,
    "case, sighting and event times garbled": _times_garbled,
    "history table dropped": _other_table_dropped,
}


@pytest.mark.parametrize("tamper", list(TAMPERING), ids=list(TAMPERING))
def test_verify_names_every_alteration(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str], tamper: str
) -> None:
    code, out = _verify(capsys)
    assert code == 0 and "0 problem(s)" in out, out
    engine = create_engine(db_url)
    with engine.begin() as conn:
        expected = TAMPERING[tamper](world, conn)
    engine.dispose()
    code, out = _verify(capsys)
    assert code == 1, out
    for line in expected:
        assert line in out, f"{line!r} not in:\n{out}"


def _rewrite_everything(conn: Connection, *, case_id: int, seq: int) -> None:
    """What someone with write access and this code can do: edit an entry, then recompute every
    case chain and the whole ledger and its head, so that nothing inside the database disagrees."""
    conn.execute(
        text("UPDATE custody_entries SET actor = 'user:someone' WHERE case_id = :c AND seq = :s"),
        {"c": case_id, "s": seq},
    )
    conn.execute(  # and the history row that entry vouches for
        text("UPDATE case_events SET actor = 'user:someone' WHERE case_id = :c AND action = 'filed'"),
        {"c": case_id},
    )
    entries = table_of(CustodyEntry)
    rows = conn.execute(select(entries).order_by(entries.c.ledger_seq)).mappings().all()
    case_prev: dict[int, str] = {}
    ledger_prev = custody.GENESIS
    for row in rows:
        prev = case_prev.get(row["case_id"], custody.GENESIS)
        fields = {k: row[k] for k in ("case_id", "seq", "at", "actor", "action", "detail")}
        entry_hash = custody.entry_digest(prev, **fields)
        ledger_hash = custody.ledger_digest(ledger_prev, row["ledger_seq"], entry_hash)
        conn.execute(
            text(
                "UPDATE custody_entries SET prev_hash = :p, entry_hash = :e, "
                "ledger_prev = :lp, ledger_hash = :lh "
                "WHERE id = :i"
            ),
            {"p": prev, "e": entry_hash, "lp": ledger_prev, "lh": ledger_hash, "i": row["id"]},
        )
        case_prev[row["case_id"]], ledger_prev = entry_hash, ledger_hash
    conn.execute(text("UPDATE custody_ledger_head SET hash = :h WHERE id = 1"), {"h": ledger_prev})


def test_rewritten_ledger_is_caught_against_an_earlier_checkpoint(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = world.tmp / "outside" / "cp.json"
    assert main(["evidence", "checkpoint", "--out", str(checkpoint)]) == 0
    saved = json.loads(checkpoint.read_text())
    assert saved["ledger_seq"] == saved["entries"] == 8 and len(saved["ledger_hash"]) == 64
    code, out = _verify(capsys, "--against", str(checkpoint))
    assert code == 0, out
    with world.services.factory() as session:  # the ledger runs on after the checkpoint
        grid = world.services.grid_cache.get(session)
        ingest(
            session,
            _incident(world.services, "d", (30.30, 120.15)),
            grid=grid,
            policy=MergePolicy(),
            actor=SYSTEM,
        )
        session.commit()
    code, out = _verify(capsys, "--against", str(checkpoint))
    assert code == 0, out

    engine = create_engine(db_url)
    with engine.begin() as conn:
        _rewrite_everything(conn, case_id=3, seq=2)
    engine.dispose()
    code, out = _verify(capsys)
    assert code == 0, out  # inside the database, an entire rewrite is consistent: what the README says
    code, out = _verify(capsys, "--against", str(checkpoint))
    assert code == 1
    assert "the ledger was rewritten at or before custody entry 8" in out, out


def test_checkpoint_is_kept_outside_the_data_folder(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evidence", "checkpoint"]) == 0
    written = list((world.tmp / "gridpatrol-checkpoints").glob("checkpoint-*.json"))
    assert len(written) == 1 and f"written to {written[0]}" in capsys.readouterr().out
    assert main(["evidence", "checkpoint", "--out", str(world.tmp / "data" / "cp.json")]) == 1
    assert "is inside the data folder" in capsys.readouterr().err
    assert main(["evidence", "verify", "--against", str(world.tmp / "nope.json")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_an_honest_history_verifies(services: Services) -> None:
    """Every kind of entry the service writes replays to the stored case: review decisions, undo,
    recategorisation, rejection, dispatch to a team, a sighting seen before its case was closed and a
    recurrence of the closed case (seen after its closing)."""
    from api.cases import review

    import_demo_grid(services)
    seen = datetime.now(UTC) - timedelta(hours=1)
    with services.factory() as session:
        grid = services.grid_cache.get(session)
        for incident_id, position in (("p", (30.27, 120.15)), ("q", (30.28, 120.15))):
            ingest(
                session,
                _incident(services, incident_id, position, when=seen.isoformat()),
                grid=grid,
                policy=MergePolicy(),
                actor=SYSTEM,
            )
        session.commit()
        review.change_category(session, principal=OPERATOR, case_id=1, category="street_vending")
        review.decide(session, principal=OPERATOR, case_id=1, decision="reject", reason="duplicate")
        session.commit()
        review.undo_last(session, principal=OPERATOR, case_id=1)
        review.decide(session, principal=OPERATOR, case_id=1, decision="confirm")
        team = session.execute(text("SELECT team FROM grid_cells ORDER BY id LIMIT 1")).scalar_one()
        transition(session, principal=OPERATOR, case_id=1, move=workflow.Move(workflow.DISPATCHED, team=team))
        photo = services.store.put_bytes(jpeg_bytes("done"))
        move = workflow.Move(workflow.HANDLED, note="gone", has_photo=True)
        transition(session, principal=OPERATOR, case_id=1, move=move, photo=photo)
        for target in (workflow.VERIFIED, workflow.CLOSED):
            transition(session, principal=OPERATOR, case_id=1, move=workflow.Move(target))
        session.commit()
        late = _incident(
            services, "p-late", (30.27, 120.15), category="street_vending", when=seen.isoformat()
        )
        assert ingest(session, late, grid=grid, policy=MergePolicy(), actor=SYSTEM).before_close
        session.commit()
        now = datetime.now(UTC).isoformat()  # after the closing
        again = _incident(services, "p-again", (30.27, 120.15), category="street_vending", when=now)
        assert ingest(session, again, grid=grid, policy=MergePolicy(), actor=SYSTEM).recurrence
        session.commit()
        result = audit.audit(session)
    assert result.problems == [] and result.cases == 2 and result.head.seq == 12


def test_concurrent_ingest_does_not_fork_the_ledger(services: Services) -> None:
    """Threads ingesting at once, each its own category (so the per-category lock does not order
    them): every entry takes the next ledger place, one chain, no gap."""
    import_demo_grid(services)
    errors: list[BaseException] = []
    per_thread = 12

    def run(category: str, t: int) -> None:
        try:
            for i in range(per_thread):
                inc = _incident(
                    services, f"{category}-{t}-{i}", (30.2 + i * 0.01, 120.1 + t * 0.01), category=category
                )
                ingest_committed(
                    services.factory, inc, grid_cache=services.grid_cache, policy=MergePolicy(), actor=SYSTEM
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    categories = ("illegal_parking", "street_vending", "piled_debris")
    threads = [threading.Thread(target=run, args=(c, t)) for t, c in enumerate(categories * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with services.factory() as session:
        result = audit.audit(session)
    assert result.problems == []
    assert result.head.seq == result.entries == per_thread * len(threads)


def test_migration_chains_existing_entries_into_the_ledger(empty_db_url: str) -> None:
    """Data written before the ledger (revision 0005, entries as the old code wrote them) verifies
    after the upgrade, and new entries continue the ledger."""
    engine = make_engine(empty_db_url)
    migrate(engine, "0005")
    at = "2026-11-20 01:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO evidence (sha256, size, media_type, created_at) "
                "VALUES (:s, 10, 'image/jpeg', :a)"
            ),
            {"s": "ab" * 32, "a": at},
        )
        for case_id in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO cases (id, number, category, status, grid_cell_id, team, first_seen, "
                    "last_seen, sightings_count, recurrence_count, created_at, updated_at) "
                    "VALUES (:i, :n, 'illegal_parking', "
                    ":st, 'unassigned', NULL, :a, :a, 1, 0, :a, :a)"
                ),
                {
                    "i": case_id,
                    "n": f"GP-2026-{case_id:06d}",
                    "st": "filed" if case_id == 2 else "pending_review",
                    "a": at,
                },
            )
            sighting = conn.execute(
                text(
                    "INSERT INTO sightings (case_id, incident_id, seen_at, incident_json, recurrence, "
                    "created_at) "
                    "VALUES (:c, :inc, :a, '{}', false, :a) RETURNING id"
                ),
                {"c": case_id, "inc": f"old-{case_id}", "a": at},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO evidence_links (case_id, sighting_id, sha256, role) "
                    "VALUES (:c, :s, :h, 'annotated')"
                ),
                {"c": case_id, "s": sighting, "h": "ab" * 32},
            )
            conn.execute(
                text(
                    "INSERT INTO case_events (case_id, at, actor, action, to_status, note) "
                    "VALUES (:c, :a, 'system:gridpatrol', 'created', 'pending_review', 'x')"
                ),
                {"c": case_id, "a": at},
            )
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, at, actor, action, from_status, to_status) "
                "VALUES (2, :a, 'user:op', 'filed', 'pending_review', 'filed')"
            ),
            {"a": at},
        )
        # the old code's entries: case 1, case 2, case 2 again, interleaved as written
        prev: dict[int, str] = {}
        for case_id, action, detail in (
            (
                1,
                "case_created",
                {
                    "incident_id": "old-1",
                    "evidence": [{"role": "annotated", "sha256": "ab" * 32}],
                    "recurrence": False,
                },
            ),
            (
                2,
                "case_created",
                {
                    "incident_id": "old-2",
                    "evidence": [{"role": "annotated", "sha256": "ab" * 32}],
                    "recurrence": False,
                },
            ),
            (2, "transition", {"from": "pending_review", "to": "filed", "reason": None, "note": None}),
        ):
            seq = 2 if case_id in prev else 1
            detail_text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
            when = datetime(2026, 11, 20, 1, 0, seq)
            actor = "user:op" if action == "transition" else "system:gridpatrol"
            p = prev.get(case_id, custody.GENESIS)
            digest = custody.entry_digest(
                p, case_id=case_id, seq=seq, at=when, actor=actor, action=action, detail=detail_text
            )
            conn.execute(
                text(
                    "INSERT INTO custody_entries (case_id, seq, at, actor, action, detail, prev_hash, "
                    "entry_hash) "
                    "VALUES (:c, :s, :a, :ac, :act, :d, :p, :h)"
                ),
                {
                    "c": case_id,
                    "s": seq,
                    "a": when,
                    "ac": actor,
                    "act": action,
                    "d": detail_text,
                    "p": p,
                    "h": digest,
                },
            )
            prev[case_id] = digest
    migrate(engine)
    factory = make_sessionmaker(engine)
    try:
        with factory() as session:
            result = audit.audit(session)
            assert result.problems == [] and result.head.seq == 3
            custody.append(session, case_id=1, actor="user:op", action="note", detail={})
            session.commit()
            result = audit.audit(session)
            assert result.problems == [] and result.head.seq == 4
            session.execute(text("UPDATE cases SET status = 'closed' WHERE id = 2"))
            session.commit()
            assert audit.audit(session).problems == [
                "case GP-2026-000002 status is closed but its custody chain says filed"
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("out", "error"),
    [
        ("/proc/cp.json", "out: cannot write /proc/cp.json: no such file or directory"),
        ("{tmp}/a-file/cp.json", "out: cannot write {tmp}/a-file/cp.json: {tmp}/a-file is not a folder"),
        ("{tmp}/a-file/x/cp.json", "out: cannot write {tmp}/a-file/x/cp.json: {tmp}/a-file is not a folder"),
        ("{tmp}/a-folder", "out: {tmp}/a-folder is a folder: name the checkpoint's file"),
        ("{tmp}/new/", "out: '{tmp}/new/' is no file name: name the checkpoint's file"),
    ],
)
def test_checkpoint_to_a_path_it_cannot_write_is_named_and_leaves_nothing(
    world: World, capsys: pytest.CaptureFixture[str], out: str, error: str
) -> None:
    tmp = world.tmp / "outside"
    tmp.mkdir()
    (tmp / "a-file").write_text("not a folder")
    (tmp / "a-folder").mkdir()
    before = sorted(tmp.rglob("*")), sorted(tmp.parent.glob(".*partial"))
    capsys.readouterr()
    assert main(["evidence", "checkpoint", "--out", out.format(tmp=tmp)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"gridpatrol evidence: error: {error.format(tmp=tmp)}", err
    assert (sorted(tmp.rglob("*")), sorted(tmp.parent.glob(".*partial"))) == before


def test_checkpoint_to_a_read_only_folder_is_named_and_leaves_nothing(world: World) -> None:
    from tests.api.test_custody_cli import _as_a_user

    read_only = world.tmp / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        run = subprocess.run(
            _as_a_user(
                [
                    sys.executable,
                    "-m",
                    "api.cli.main",
                    "evidence",
                    "checkpoint",
                    "--out",
                    f"{read_only}/d/cp.json",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        read_only.chmod(0o755)
    assert run.returncode == 1 and run.stderr.strip() == (
        f"gridpatrol evidence: error: out: cannot write {read_only}/d/cp.json: permission denied"
    ), run.stderr
    assert list(read_only.iterdir()) == []


def test_checkpoint_refuses_what_verify_rejects(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry edited (its case chain broken, the ledger over the hashes intact) or a fact altered:
    `verify` says so, and no checkpoint vouches for it."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        _entry_edited(world, conn)
        _status_closed(world, conn)
    engine.dispose()
    capsys.readouterr()
    out = world.tmp / "outside" / "cp.json"
    assert main(["evidence", "checkpoint", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: not checkpointed: `gridpatrol evidence verify` finds 4 problem(s)" in err, err
    assert f"(the first: case {world.numbers[3]} custody entry 2: entry altered" in err
    assert not out.parent.exists()
    code, verified = _verify(capsys)
    assert code == 1 and ": 4 problem(s)" in verified, verified
