"""Digital chalking (api.cases.chalking), on SQLite and PostgreSQL: a suspected sighting (one pass of a
parked vehicle) is a chalk mark and opens no case; a second pass at the same place, far enough apart
in time, with compatible plates, confirms both as one illegal_parking incident filed through the
normal ingest. Table tests for the radius, the time window and the plates; repeats, a third pass,
late uploads, two passes at once; every path that files incidents (POST /api/incidents from two
devices, a runner's job, the in-process worker) routes suspected incidents to chalking."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from api.accounts.accounts import SYSTEM, Principal, create_device
from api.cases.audit import audit
from api.cases.chalking import (
    ChalkPolicy,
    ChalkResult,
    Pass,
    chalk_committed,
    choose_mark,
    confirmed_id,
    matches,
)
from api.cases.incident import IncidentInputError, IncidentPayload
from api.cases.ingest import IncidentIn, file_committed, ingest
from api.cases.merge import bucket_of
from api.jobs.worker import Worker
from api.services import Services
from api.settings import Settings, SettingsError
from api.storage.db import _alembic_config, current_revision, make_engine, migrate
from api.storage.evidence_store import StoredFile
from api.storage.models import (
    Base,
    Case,
    ChalkEvidence,
    ChalkMark,
    EvidenceLink,
    Job,
    Sighting,
    Upload,
)
from tests.api.api_testkit import LiveServer, evidence_files, import_demo_grid, incident_json, jpeg_bytes

LAT, LON = 30.2741, 120.1551  # in the demo grid
T0 = datetime(2026, 11, 20, 9, 0)  # local time (+08:00)
POLICY = ChalkPolicy()  # 10 m, 15 min, 12 h


def north(metres: float) -> float:
    return LAT + metres / 111_195.0


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat() + "+08:00"


def suspected_json(
    incident_id: str,
    *,
    metres: float = 0.0,
    minutes: float = 0.0,
    plate: str | None = None,
    confidence: float | None = None,
    files: dict[str, bytes] | None = None,
    source_id: str = "demo-cam-01",
) -> dict[str, Any]:
    """One pass: seen for 5 s at T0 + minutes, `metres` north of (LAT, LON)."""
    data = incident_json(
        incident_id,
        position=(north(metres), LON),
        when=at(minutes),
        until=(T0 + timedelta(minutes=minutes, seconds=5)).isoformat() + "+08:00",
        plate=plate,
        files=files,
        source_id=source_id,
    )
    return dict(data, suspected=True, plate_confidence=confidence)


def suspected(
    incident_id: str, *, evidence: list[tuple[str, StoredFile]] | None = None, **kw: Any
) -> IncidentIn:
    payload = IncidentPayload.model_validate(suspected_json(incident_id, files={}, **kw))
    return IncidentIn.from_payload(payload, evidence=evidence or [])


def file(
    svc: Services, inc: IncidentIn, policy: ChalkPolicy = POLICY, actor: Principal = SYSTEM
) -> ChalkResult:
    result = chalk_committed(
        svc.factory, inc, grid_cache=svc.grid_cache, policy=svc.policy, chalk_policy=policy, actor=actor
    )
    return result


def counts(svc: Services) -> tuple[int, int, int]:
    """(cases, sightings, chalk marks)."""
    with svc.read_factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Case)) or 0,
            session.scalar(select(func.count()).select_from(Sighting)) or 0,
            session.scalar(select(func.count()).select_from(ChalkMark)) or 0,
        )


@pytest.fixture
def svc(services: Services) -> Services:
    import_demo_grid(services)
    return services


# --- the rule, pure ---------------------------------------------------------------------------------


def _pass(id: int, metres: float = 0.0, minutes: float = 0.0, plate: str | None = None) -> Pass:
    return Pass(id, "illegal_parking", T0 + timedelta(minutes=minutes), north(metres), LON, plate)


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (_pass(2, metres=9, minutes=20), True),
        (_pass(2, metres=11, minutes=20), False),
        (_pass(2, minutes=14), False),
        (_pass(2, minutes=15), True),
        (_pass(2, minutes=12 * 60), True),
        (_pass(2, minutes=12 * 60 + 1), False),
        (_pass(2, minutes=-20), True),  # a late upload of the earlier pass
        (Pass(2, "street_vending", T0 + timedelta(minutes=20), LAT, LON, None), False),
    ],
)
def test_the_rule(second: Pass, expected: bool) -> None:
    assert matches(second, _pass(1), POLICY) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("ZJA12345", "ZJA12345", True),
        ("ZJA12345", "ZJB99999", False),
        ("ZJA12345", None, True),
        (None, None, True),
    ],
)
def test_plates(first: str | None, second: str | None, expected: bool) -> None:
    assert matches(_pass(2, minutes=20, plate=second), _pass(1, plate=first), POLICY) is expected


def test_the_same_plate_wins_then_the_earliest_then_the_nearest() -> None:
    new = _pass(9, minutes=60, plate="ZJA12345")
    assert choose_mark(new, [_pass(1, 5), _pass(2, 1, plate="ZJA12345", minutes=20)], POLICY) == 2
    assert choose_mark(new, [_pass(1, 5, minutes=10), _pass(2, 1, minutes=20)], POLICY) == 1
    assert choose_mark(new, [_pass(1, 5, minutes=10), _pass(2, 1, minutes=10)], POLICY) == 2
    assert choose_mark(new, [_pass(1, 5, minutes=50)], POLICY) is None  # 10 min: too soon


def test_the_confirmed_id_is_the_pair_s_either_way() -> None:
    assert confirmed_id("a", "b") == confirmed_id("b", "a") != confirmed_id("a", "c")
    assert len(confirmed_id("x" * 128, "y" * 128)) <= 128


# --- through the database ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metres", "minutes", "plates", "confirmed"),
    [
        (9, 20, (None, None), True),
        (11, 20, (None, None), False),
        (0, 14, (None, None), False),
        (0, 15, (None, None), True),
        (0, 12 * 60 + 1, (None, None), False),
        (3, 30, ("ZJA12345", "zja12345"), True),  # plates are compared as read, upper case
        (3, 30, ("ZJA12345", "ZJB99999"), False),
        (3, 30, ("ZJA12345", None), True),
        (3, 30, (None, "ZJB99999"), True),
    ],
)
def test_two_passes(
    svc: Services, metres: float, minutes: float, plates: tuple[str | None, str | None], confirmed: bool
) -> None:
    first = file(svc, suspected("p1", plate=plates[0], confidence=0.6 if plates[0] else None))
    assert first == ChalkResult(first.mark_id, False, None)
    assert counts(svc) == (0, 0, 1)  # a suspected sighting opens no case
    second = file(
        svc,
        suspected(
            "p2", metres=metres, minutes=minutes, plate=plates[1], confidence=0.9 if plates[1] else None
        ),
    )
    assert second.duplicate is False and second.mark_id != first.mark_id
    if not confirmed:
        assert second.confirmed is None
        assert counts(svc) == (0, 0, 2)
        with svc.read_factory() as session:
            assert set(session.scalars(select(ChalkMark.status))) == {"open"}
        return
    assert second.confirmed is not None and second.confirmed.created
    with svc.read_factory() as session:
        marks = {m.incident_id: m for m in session.scalars(select(ChalkMark))}
        case = session.get(Case, second.confirmed.case_id)
        assert case is not None and case.category == "illegal_parking"
        assert case.first_seen == T0 - timedelta(hours=8)  # the earlier pass, UTC
        assert case.last_seen == T0 + timedelta(minutes=minutes, seconds=5) - timedelta(hours=8)
        assert case.plate == next((p.upper() for p in (plates[1], plates[0]) if p), None)  # the surer read
        assert case.lat == pytest.approx((LAT + north(metres)) / 2)
        assert {(m.status, m.case_id) for m in marks.values()} == {("confirmed", case.id)}
        assert marks["p2"].confirmed_as == confirmed_id("p1", "p2") and marks["p1"].confirmed_as is None
        sighting = session.scalars(select(Sighting)).one()
        assert sighting.incident_id == confirmed_id("p1", "p2")
        record = json.loads(sighting.incident_json)
        assert record["suspected"] is False
        assert [p["incident_id"] for p in record["chalk"]["passes"]] == ["p1", "p2"]
        assert record["chalk"]["gap_s"] == minutes * 60
    assert counts(svc) == (1, 1, 2)


def test_a_repeat_is_the_first_answer(svc: Services) -> None:
    first = file(svc, suspected("p1"))
    again = file(svc, suspected("p1"))
    assert again == ChalkResult(first.mark_id, True, None)
    second = file(svc, suspected("p2", minutes=20))
    assert second.confirmed is not None
    repeat = file(svc, suspected("p2", minutes=20))
    assert repeat.duplicate and repeat.mark_id == second.mark_id
    assert repeat.confirmed is not None and repeat.confirmed.duplicate
    assert repeat.confirmed.case_id == second.confirmed.case_id
    assert repeat.confirmed.sighting_id == second.confirmed.sighting_id
    assert file(svc, suspected("p1")) == ChalkResult(
        first.mark_id, True, None
    )  # confirmed since: same answer
    assert counts(svc) == (1, 1, 2)


def test_a_third_pass_merges_into_the_same_case(svc: Services) -> None:
    file(svc, suspected("p1"))
    second = file(svc, suspected("p2", metres=4, minutes=20))
    third = file(svc, suspected("p3", metres=-4, minutes=40))
    assert second.confirmed is not None and third.confirmed is not None
    assert third.confirmed.case_id == second.confirmed.case_id and not third.confirmed.created
    with svc.read_factory() as session:
        case = session.get(Case, second.confirmed.case_id)
        assert case is not None and case.sightings_count == 2
        marks = session.scalars(select(ChalkMark).order_by(ChalkMark.id)).all()
        assert [(m.status, m.case_id) for m in marks] == [("confirmed", case.id)] * 3
        # the third pass confirmed the earliest mark it matched: the longest stay shown
        assert marks[2].confirmed_as == confirmed_id("p1", "p3")
    assert counts(svc) == (1, 2, 3)


@pytest.mark.parametrize("reason", ["false_positive", "duplicate", "exempt"])
def test_a_rejected_case_s_marks_confirm_nothing_again(svc: Services, reason: str) -> None:
    """Two passes confirm a case; an operator rejects it (not a vehicle, one filed already, allowed to
    park there). The vehicle's third pass confirms nothing: it is a mark of its own, open, the rejected
    marks keep their case (and read rejected), and no case is filed again. Its fourth pass confirms the
    third's mark, a new case of those two. Before, the third pass confirmed the rejected case's first
    mark into a new case carrying the rejected pass's evidence, and moved that mark onto it."""
    from api.cases.acting import transition
    from api.cases.chalking import MarkFilter, mark_page
    from api.cases.workflow import REJECTED, Move, RejectReason

    operator = Principal(kind="user", name="op", role="operator")
    file(svc, suspected("p1", plate="ZJA12345", confidence=0.8))
    second = file(svc, suspected("p2", metres=4, minutes=20, plate="ZJA12345", confidence=0.8))
    assert second.confirmed is not None
    rejected_case = second.confirmed.case_id
    with svc.factory() as session:
        move = Move(target=REJECTED, reason=RejectReason(reason))
        transition(session, principal=operator, case_id=rejected_case, move=move)
        session.commit()

    third = file(svc, suspected("p3", metres=-4, minutes=40, plate="ZJA12345", confidence=0.8))
    assert third.confirmed is None
    assert counts(svc) == (1, 1, 3)
    fourth = file(svc, suspected("p4", minutes=60, plate="ZJA12345", confidence=0.8))
    assert fourth.confirmed is not None and fourth.confirmed.created
    assert fourth.confirmed.case_id != rejected_case
    assert counts(svc) == (2, 2, 4)
    with svc.read_factory() as session:
        page = mark_page(session, filters=MarkFilter(), chalk_policy=POLICY, now=T0)
        marks = {m.incident_id: (m.status, m.case_id) for m in page.items}
        assert marks == {
            "p1": ("rejected", rejected_case),
            "p2": ("rejected", rejected_case),
            "p3": ("confirmed", fourth.confirmed.case_id),
            "p4": ("confirmed", fourth.confirmed.case_id),
        }
        rejected = session.get(Case, rejected_case)
        assert rejected is not None and rejected.status == "rejected" and rejected.sightings_count == 1
        record = json.loads(
            session.scalars(
                select(Sighting.incident_json).where(Sighting.case_id == fourth.confirmed.case_id)
            ).one()
        )
        assert [p["incident_id"] for p in record["chalk"]["passes"]] == ["p3", "p4"]


def test_a_late_upload_of_the_earlier_pass(svc: Services) -> None:
    file(svc, suspected("later", minutes=30, plate="ZJA12345", confidence=0.7))
    result = file(svc, suspected("earlier", minutes=0))
    assert result.confirmed is not None
    with svc.read_factory() as session:
        case = session.get(Case, result.confirmed.case_id)
        assert case is not None and case.plate == "ZJA12345"
        assert case.first_seen == T0 - timedelta(hours=8)
        assert case.last_seen == T0 + timedelta(minutes=30, seconds=5) - timedelta(hours=8)
        record = json.loads(session.scalars(select(Sighting.incident_json)).one())
        assert [p["incident_id"] for p in record["chalk"]["passes"]] == ["earlier", "later"]


def test_the_window_and_radius_come_from_the_settings(svc: Services) -> None:
    policy = ChalkPolicy.of(Settings(chalk_radius_m=30, chalk_min_minutes=5, chalk_max_hours=1))
    file(svc, suspected("p1"), policy)
    assert file(svc, suspected("p2", metres=25, minutes=6), policy).confirmed is not None
    file(svc, suspected("q1", metres=500), policy)
    assert file(svc, suspected("q2", metres=500, minutes=61), policy).confirmed is None


def test_open_marks_expire_by_the_clock(svc: Services) -> None:
    from api.cases.chalking import MarkFilter, mark_page

    file(svc, suspected("p1"))
    file(svc, suspected("p2", plate="ZJA12345"))  # the same minute: no match
    utc = T0 - timedelta(hours=8)
    with svc.read_factory() as session:

        def listed(status: str | None, hours: float, **kw: Any) -> list[str]:
            page = mark_page(
                session,
                filters=MarkFilter(status=status, **kw),
                chalk_policy=POLICY,
                now=utc + timedelta(hours=hours),
            )
            return [(m.incident_id, m.status) for m in page.items]  # type: ignore[misc]

        assert listed(None, 1) == [("p2", "open"), ("p1", "open")]
        assert listed("open", 1, plate=" zja12345") == [("p2", "open")]
        assert listed("expired", 1) == []
        assert listed("expired", 13) == [("p2", "expired"), ("p1", "expired")]
        assert listed("open", 13) == []


def test_settings_are_checked() -> None:
    assert ChalkPolicy.of(Settings.from_env({})) == ChalkPolicy(10.0, 15.0, 12.0)
    env = {
        "GRIDPATROL_CHALK_RADIUS_M": "25",
        "GRIDPATROL_CHALK_MIN_MINUTES": "30",
        "GRIDPATROL_CHALK_MAX_HOURS": "4",
    }
    assert ChalkPolicy.of(Settings.from_env(env)) == ChalkPolicy(25.0, 30.0, 4.0)
    for key, value in [
        ("GRIDPATROL_CHALK_RADIUS_M", "0"),
        ("GRIDPATROL_CHALK_RADIUS_M", "ten"),
        ("GRIDPATROL_CHALK_MIN_MINUTES", "-1"),
        ("GRIDPATROL_CHALK_MAX_HOURS", "0"),
    ]:
        with pytest.raises(SettingsError, match=key):
            Settings.from_env({key: value})
    with pytest.raises(SettingsError, match="GRIDPATROL_CHALK_MAX_HOURS.*at least"):
        Settings.from_env({"GRIDPATROL_CHALK_MIN_MINUTES": "120", "GRIDPATROL_CHALK_MAX_HOURS": "1"})


def test_a_suspected_sighting_needs_a_position(svc: Services) -> None:
    payload = IncidentPayload.model_validate(dict(suspected_json("p1", files={}), position=None))
    with pytest.raises(IncidentInputError) as caught:
        file(svc, IncidentIn.from_payload(payload, evidence=[]))
    assert caught.value.field == "incident.position"


def test_ingest_refuses_a_suspected_incident(svc: Services) -> None:
    with svc.factory() as session, pytest.raises(ValueError, match="suspected"):
        ingest(session, suspected("p1"), grid=svc.grid_cache.get(session), policy=svc.policy, actor=SYSTEM)


def test_two_passes_at_once_confirm(svc: Services) -> None:
    """Passes of one car by two patrol cars written at the same moment: the second to get the place's
    lock sees the first's mark (PostgreSQL: advisory locks; SQLite: one writer at a time)."""
    for round_ in range(3):
        gate = threading.Barrier(2)
        results: list[ChalkResult] = []

        def post(
            incident_id: str,
            minutes: float,
            metres: float = round_ * 100.0,
            gate: threading.Barrier = gate,
            results: list[ChalkResult] = results,
        ) -> None:
            gate.wait()
            results.append(file(svc, suspected(incident_id, metres=metres, minutes=minutes)))

        threads = [
            threading.Thread(target=post, args=(f"r{round_}-a", 0)),
            threading.Thread(target=post, args=(f"r{round_}-b", 20)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2
        assert sum(r.confirmed is not None for r in results) == 1
    assert counts(svc) == (3, 3, 6)


def test_a_whole_category_lock_meets_the_bucket_locks(svc: Services) -> None:
    """PostgreSQL: a pass whose radius meets too many buckets locks its whole category; a pass holding
    a bucket of that category waits for it, and one of another category does not."""
    if svc.engine.dialect.name != "postgresql":
        return  # SQLite serialises every writer by its write lock
    from api.cases.chalking import _lock_place

    wide = svc.factory()
    done: dict[str, threading.Event] = {name: threading.Event() for name in ("same", "other")}

    def bucketed(name: str, category: str) -> None:
        with svc.factory() as session:
            _lock_place(session, category, [bucket_of(30.2741, 120.1551)])
            done[name].set()
            session.rollback()

    try:
        _lock_place(wide, "illegal_parking", None)
        threads = {
            "same": threading.Thread(target=bucketed, args=("same", "illegal_parking")),
            "other": threading.Thread(target=bucketed, args=("other", "street_vending")),
        }
        for thread in threads.values():
            thread.start()
        assert done["other"].wait(10)  # another category's place is not held
        assert not done["same"].wait(1.0)  # the same category's bucket waits for the whole category
    finally:
        wide.rollback()
        wide.close()
    for thread in threads.values():
        thread.join(10)
    assert done["same"].is_set()


def test_the_migration_makes_what_the_models_say(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        command.downgrade(_alembic_config(engine), "0008")
        assert current_revision(engine) == "0008"
        assert not {"chalk_marks", "chalk_evidence"} & set(inspect(engine).get_table_names())
        migrate(engine)
        assert {"chalk_marks", "chalk_evidence"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- the paths that file incidents ------------------------------------------------------------------


def test_the_worker_chalks_a_suspected_incident(svc: Services, tmp_path: Path) -> None:
    worker = Worker(svc.factory, svc.settings, pipeline=lambda *a, **k: iter(()), grid_cache=svc.grid_cache)
    out_dir = tmp_path / "job"
    out_dir.mkdir()
    upload = Upload(camera_id="patrol-van-7", device_id=None)
    actor = Principal(kind="worker", name="w", role="system")
    for incident_id, minutes in [("job:1", 0), ("job:2", 20)]:
        image = jpeg_bytes(incident_id)
        (out_dir / f"{incident_id}.jpg").write_bytes(image)
        data = suspected_json(incident_id, minutes=minutes, files={})
        data["evidence"] = [
            {"role": "crop", "path": f"{incident_id}.jpg", "sha256": hashlib.sha256(image).hexdigest()}
        ]
        worker._ingest(IncidentPayload.model_validate(data), out_dir, actor, upload, job_id=7)
        if minutes == 0:
            assert counts(svc) == (0, 0, 1)
    with svc.read_factory() as session:
        marks = session.scalars(select(ChalkMark).order_by(ChalkMark.id)).all()
        assert [(m.camera_id, m.job_id, m.status) for m in marks] == [("patrol-van-7", 7, "confirmed")] * 2
        assert session.scalar(select(func.count()).select_from(ChalkEvidence)) == 2
        sighting = session.scalars(select(Sighting)).one()
        assert sighting.job_id == 7 and sighting.camera_id == "patrol-van-7"
        roles = session.execute(select(EvidenceLink.role, EvidenceLink.sighting_id)).all()
        assert roles == [("crop", sighting.id), ("crop", sighting.id)]  # both passes' files


def test_a_runner_job_chalks_a_suspected_incident(svc: Services) -> None:
    from api.http.routes.runner_jobs import ingest_job_incident

    upload = Upload(camera_id="patrol-van-8", device_id=None)
    result = ingest_job_incident(
        svc,
        upload=upload,
        job_id=3,
        lease="runner:r:1",
        payload=IncidentPayload.model_validate(suspected_json("rj:1", files={})),
        files=[],
    )
    assert isinstance(result, ChalkResult) and result.confirmed is None
    assert counts(svc) == (0, 0, 1)


def chalk_for_job(svc: Services, incident_id: str, minutes: float, job_id: int | None) -> ChalkResult:
    """A suspected pass `minutes` after the first, chalked as job `job_id`'s (None: a device's post)."""
    return chalk_committed(
        svc.factory,
        suspected(incident_id, minutes=minutes),
        grid_cache=svc.grid_cache,
        policy=svc.policy,
        chalk_policy=POLICY,
        actor=SYSTEM,
        job_id=job_id,
    )


def a_van_confirms_the_current_run_s_mark(svc: Services) -> None:
    """Another van passes 40 min after the first run's pass: it confirms the current run's mark
    (rev1:pass, seen at 20 min) into a case of those two passes, and the earlier run's (rev0:pass) stays
    open as stored (listed as superseded: test_an_earlier_run_s_open_marks_are_listed_as_superseded)."""
    later = chalk_for_job(svc, "van-9:pass", 40, None).confirmed
    assert later is not None and later.created
    with svc.read_factory() as session:
        marks = {m.incident_id: m.status for m in session.scalars(select(ChalkMark))}
        raw = json.loads(session.scalars(select(Sighting.incident_json)).one())
    assert marks == {"rev0:pass": "open", "rev1:pass": "confirmed", "van-9:pass": "confirmed"}
    assert [p["incident_id"] for p in raw["chalk"]["passes"]] == ["rev1:pass", "van-9:pass"]


def test_a_corrected_run_never_confirms_its_own_earlier_run(svc: Services) -> None:
    """Footage sent again with a corrected start time (the upload's revision raised, a new job): the
    corrected run's pass, 20 min after where the earlier run put it, is the same pass, not a second one.
    Before, it confirmed the earlier run's mark into a case of one pass. The earlier run's mark
    confirms nothing afterwards either: a patrol's later pass confirms the corrected run's mark."""
    upload_id, first_id = uploaded_and_run(svc, "1")
    assert chalk_for_job(svc, "rev0:pass", 0, first_id).confirmed is None
    corrected_id = corrected_run(svc, upload_id, "running")  # the resend corrects its start time
    assert chalk_for_job(svc, "rev1:pass", 20, corrected_id).confirmed is None
    assert counts(svc) == (0, 0, 2)
    # another van, 20 min after the corrected pass (40 min after the earlier run's, which won before)
    a_van_confirms_the_current_run_s_mark(svc)


def uploaded_and_run(svc: Services, digit: str) -> tuple[int, int]:
    """An upload (its sha256 `digit` * 64, revision 0) and its first job, done: their ids."""
    with svc.factory() as session:
        upload = Upload(sha256=digit * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d")
        session.add(upload)
        session.flush()
        job = Job(upload_id=upload.id, status="done")
        session.add(job)
        session.commit()
        return upload.id, job.id


def corrected_run(svc: Services, upload_id: int, status: str) -> int:
    """The upload corrected by a resend (its revision raised to 1, as api.jobs.uploads does) and the
    corrected run's job, in `status`: its id."""
    with svc.factory() as session:
        stored = session.get(Upload, upload_id)
        assert stored is not None
        stored.revision = 1
        job = Job(upload_id=upload_id, status=status, revision=1)
        session.add(job)
        session.commit()
        return job.id


def corrected_upload_s_jobs(svc: Services, digit: str, jobs: list[tuple[str, int]]) -> list[int]:
    """An upload a resend corrected (revision 1; its sha256 `digit` * 64) and its jobs (status, revision),
    made in this order; their ids."""
    with svc.factory() as session:
        upload = Upload(
            sha256=digit * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="d", revision=1
        )
        session.add(upload)
        session.flush()
        made = []
        for status, revision in jobs:
            made.append(Job(upload_id=upload.id, status=status, revision=revision))
            session.add(made[-1])
            session.flush()
        session.commit()
        return [job.id for job in made]


def test_a_failed_corrected_run_s_marks_are_its_plain_retry_s_own(svc: Services) -> None:
    """A corrected run (revision 1) chalked a pass and failed; the footage sent again unchanged is a plain
    retry at revision 1 (api.jobs.uploads), its passes the same incident ids, answered with the failed
    attempt's marks. Those marks are the current run's: a patrol's later pass confirms them. Before,
    any job with a later job of the upload was a superseded run once the upload was corrected, so the
    mark confirmed nothing, and the retry's pass (its first answer) filed none in its place."""
    first_id, failed_id, retry_id = corrected_upload_s_jobs(
        svc, "2", [("failed", 0), ("failed", 1), ("running", 1)]
    )

    assert chalk_for_job(svc, "rev0:pass", 0, first_id).confirmed is None
    assert chalk_for_job(svc, "rev1:pass", 20, failed_id).confirmed is None
    # the retry's pass: the first answer
    assert chalk_for_job(svc, "rev1:pass", 20, retry_id).confirmed is None
    a_van_confirms_the_current_run_s_mark(svc)


def test_an_earlier_run_s_open_marks_are_listed_as_superseded(svc: Services) -> None:
    """A resend corrected the upload (revision 1): its earlier run's open mark, which confirms nothing
    (above), is listed as superseded, whatever its age, neither open nor expired, so the total of open
    marks leaves it out; the corrected run's mark and a device's (of no job) are open, then expired.
    Before, the earlier run's mark was listed, and counted, as open."""
    from api.cases.chalking import MarkFilter, mark_page

    earlier_id, corrected_id = corrected_upload_s_jobs(svc, "3", [("done", 0), ("done", 1)])
    chalk_for_job(svc, "rev0:pass", 0, earlier_id)
    assert chalk_for_job(svc, "rev1:pass", 20, corrected_id).confirmed is None
    file(svc, suspected("van-9:elsewhere", metres=500))
    utc = T0 - timedelta(hours=8)
    with svc.read_factory() as session:

        def listed(status: str | None, hours: float) -> tuple[int, list[tuple[str, str]]]:
            page = mark_page(
                session,
                filters=MarkFilter(status=status),
                chalk_policy=POLICY,
                now=utc + timedelta(hours=hours),
            )
            return page.total, [(m.incident_id, m.status) for m in page.items]

        assert listed(None, 1) == (
            3,
            [("rev1:pass", "open"), ("van-9:elsewhere", "open"), ("rev0:pass", "superseded")],
        )
        assert listed("open", 1) == (2, [("rev1:pass", "open"), ("van-9:elsewhere", "open")])
        assert listed("superseded", 1) == (1, [("rev0:pass", "superseded")])
        assert listed("expired", 13) == (2, [("rev1:pass", "expired"), ("van-9:elsewhere", "expired")])
        assert listed("superseded", 13) == (1, [("rev0:pass", "superseded")])
        assert listed("open", 13) == (0, [])


def test_a_mark_confirmed_by_an_earlier_run_reads_rejected_once_its_case_is_superseded(svc: Services) -> None:
    """An upload's first run chalks two passes 20 min apart (its own: they confirm each other into a
    case); a resend corrects the upload and its corrected run supersedes that case (api.jobs.superseding
    rejects it as a duplicate). Both marks now read rejected, with the case's status and reason, and
    neither the confirmed nor the open filter lists them. Before, they were listed, and filtered, as
    confirmed, pointing to a rejected case."""
    from api.cases.chalking import MarkFilter, mark_page
    from api.jobs.superseding import supersede_earlier_runs

    upload_id, first_id = uploaded_and_run(svc, "4")
    chalk_for_job(svc, "rev0:a", 0, first_id)
    confirmed = chalk_for_job(svc, "rev0:b", 20, first_id).confirmed
    assert confirmed is not None and confirmed.created
    corrected_id = corrected_run(svc, upload_id, "done")  # the resend corrects the upload
    with svc.factory() as session:
        assert supersede_earlier_runs(session, job_id=corrected_id, actor=SYSTEM).rejected == [
            confirmed.case_number
        ]
    with svc.read_factory() as session:

        def listed(
            status: str | None,
        ) -> tuple[int, list[tuple[str, str, int | None, str | None, str | None]]]:
            page = mark_page(session, filters=MarkFilter(status=status), chalk_policy=POLICY, now=T0)
            items = [
                (m.incident_id, m.status, m.case_id, m.case_status, m.case_reject_reason) for m in page.items
            ]
            return page.total, items

        statuses = mark_page(session, filters=MarkFilter(), chalk_policy=POLICY, now=T0).items
        assert [m.status for m in statuses] == ["rejected", "rejected"]  # neither reads confirmed
        rejected = [
            (name, "rejected", confirmed.case_id, "rejected", "duplicate") for name in ("rev0:b", "rev0:a")
        ]
        assert listed(None) == (2, rejected)
        assert listed("rejected") == (2, rejected)
        assert listed("confirmed") == (0, [])
        assert listed("open") == (0, [])


def test_file_committed_routes_by_suspicion(svc: Services) -> None:
    kw: dict[str, Any] = dict(grid_cache=svc.grid_cache, policy=svc.policy, chalk_policy=POLICY, actor=SYSTEM)
    assert isinstance(file_committed(svc.factory, suspected("s1"), **kw), ChalkResult)
    plain = IncidentIn.from_payload(
        IncidentPayload.model_validate(incident_json("c1", files={})), evidence=[]
    )
    assert not isinstance(file_committed(svc.factory, plain, **kw), ChalkResult)
    assert counts(svc) == (1, 1, 1)


# --- over HTTP --------------------------------------------------------------------------------------


@pytest.fixture
def server(make_server: Any, db_url: str) -> LiveServer:
    live: LiveServer = make_server(db_url, run_webhooks=False)
    with live.services.factory() as session:
        _, key = create_device(session, name="van-2", camera_id="demo-cam-02")
        session.commit()
    live.tokens["device2"] = key
    return live


def _post(client: Any, data: dict[str, Any], files: dict[str, bytes]) -> Any:
    return client.post(
        "/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data, files)
    )


def test_two_devices_over_http(server: LiveServer) -> None:
    files1 = {
        "annotated": jpeg_bytes("pass1-a"),
        "crop": jpeg_bytes("pass1-c"),
        "original": jpeg_bytes("pass1-o"),  # sealed: listed to admins only, never served with the mark
    }
    files2 = {"annotated": jpeg_bytes("pass2-a"), "crop": jpeg_bytes("pass2-c")}
    pass1 = suspected_json("van1:p1", plate="ZJA12345", confidence=0.55, files=files1)
    pass2 = suspected_json("van2:p1", metres=6, minutes=25, plate="ZJA12345", confidence=0.9, files=files2)
    with (
        server.client("device") as van1,
        server.client("device2") as van2,
        server.client("operator") as operator,
    ):
        first = _post(van1, pass1, files1)
        assert first.status_code == 201, first.text
        mark = first.json()
        assert mark == {
            "case_id": None,
            "case_number": None,
            "status": "suspected",
            "sighting_id": None,
            "created": False,
            "duplicate": False,
            "recurrence": False,
            "before_close": False,
            "chalk_mark": mark["chalk_mark"],
        }
        again = _post(van1, pass1, files1)
        assert again.status_code == 200 and again.json() == dict(mark, duplicate=True)
        retry = van1.post("/api/incidents", data={"incident": json.dumps(pass1)})  # a retry without its files
        assert retry.status_code == 200 and retry.json() == dict(mark, duplicate=True)
        assert operator.get("/api/cases").json()["total"] == 0

        listed = operator.get("/api/chalk-marks").json()
        assert listed["total"] == 1
        item = listed["items"][0]
        # footage of November 2026 is older than 12 h by the clock: its open mark shows as expired
        assert (item["id"], item["status"], item["plate"], item["camera_id"]) == (
            mark["chalk_mark"],
            "expired",
            "ZJA12345",
            "demo-cam-01",
        )
        url = f"/api/chalk-marks/{item['id']}/evidence/" + "{}"
        sha = {role: hashlib.sha256(body).hexdigest() for role, body in files1.items()}
        assert {e["role"]: e["url"] for e in item["evidence"]} == {
            role: url.format(sha[role]) for role in ("annotated", "crop")
        }
        picture = operator.get(item["evidence"][0]["url"])
        assert picture.status_code == 200 and picture.content == files1["annotated"]
        assert picture.headers["content-type"] == "image/jpeg"
        assert operator.get(url.format(sha["original"])).status_code == 404
        assert operator.get(f"/api/chalk-marks/{item['id'] + 1}/evidence/{sha['crop']}").status_code == 404

        second = _post(van2, pass2, files2)
        assert second.status_code == 201, second.text
        outcome = second.json()
        assert outcome["created"] and outcome["status"] == "pending_review" and outcome["chalk_mark"]
        case = operator.get(f"/api/cases/{outcome['case_id']}").json()
        assert case["number"] == outcome["case_number"] and case["plate"] == "ZJA12345"
        assert case["camera_id"] == "demo-cam-02"  # the later pass's
        (sighting,) = case["sightings_list"]
        shas = sorted(e["sha256"] for e in sighting["evidence"])
        both = [body for role, body in [*files1.items(), *files2.items()] if role != "original"]
        assert shas == sorted(hashlib.sha256(body).hexdigest() for body in both)  # both passes
        repeat = _post(van2, pass2, files2)
        assert repeat.status_code == 200
        assert repeat.json() == dict(outcome, duplicate=True, created=False)

        marks = operator.get("/api/chalk-marks", params={"status": "confirmed"}).json()
        assert marks["total"] == 2
        assert {(m["case_id"], m["case_number"]) for m in marks["items"]} == {
            (outcome["case_id"], outcome["case_number"])
        }
        assert operator.get("/api/chalk-marks", params={"status": "open"}).json()["total"] == 0
        assert operator.get("/api/chalk-marks", params={"status": "superseded"}).json()["total"] == 0
        assert _post(van1, suspected_json("van1:p2", metres=800, files={}), {}).status_code == 201
        expired = operator.get("/api/chalk-marks", params={"status": "expired"}).json()
        assert [m["incident_id"] for m in expired["items"]] == ["van1:p2"]
        by_plate = operator.get("/api/chalk-marks", params={"plate": "zja12345", "per_page": 1}).json()
        assert by_plate["total"] == 2 and len(by_plate["items"]) == 1
        window = {"since": "2026-11-20T09:20:00+08:00", "until": "2026-11-20T09:30:00+08:00"}
        assert [
            m["incident_id"] for m in operator.get("/api/chalk-marks", params=window).json()["items"]
        ] == ["van2:p1"]
        for params, field in [
            ({"status": "chalked"}, "status"),
            ({"since": "0.5"}, "since"),
            ({"until": "yesterday"}, "until"),
            ({"per_page": "0"}, "per_page"),
            ({"page": "x"}, "page"),
            ({"plate": "P" * 40}, "plate"),
        ]:
            bad = operator.get("/api/chalk-marks", params=params)
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field, bad.text
    with (
        server.client("ziyang") as enforcement,
        server.client("viewer") as viewer,
        server.client("admin") as admin,
    ):
        assert enforcement.get("/api/chalk-marks").status_code == 403
        assert viewer.get("/api/chalk-marks").status_code == 200
        first_mark = admin.get("/api/chalk-marks", params={"plate": "ZJA12345"}).json()["items"][-1]
        assert sorted(e["role"] for e in first_mark["evidence"]) == ["annotated", "crop", "original"]
        assert admin.get(url.format(sha["original"])).status_code == 404  # unsealed only from its case
    with server.services.read_factory() as session:
        assert audit(session).problems == []  # both passes' evidence under the case's custody


def test_an_operator_s_rejection_shows_on_the_case_s_marks(server: LiveServer) -> None:
    """Two vans confirm two vehicles into two cases; an operator rejects one as a false positive and
    files the other. Over HTTP the first case's marks are listed as rejected (with the case's status
    and reason, still linked to it), the other's as confirmed (its case filed); the status filters part
    them, and the open and expired counts are untouched. Before, all four read confirmed."""
    passes = [  # (van, incident id, metres north, minutes)
        ("device", "van1:a", 0, 0),
        ("device2", "van2:a", 4, 25),
        ("device", "van1:b", 800, 0),
        ("device2", "van2:b", 804, 25),
        ("device", "van1:c", 1600, 0),  # alone: open, and (footage of November 2026) expired by the clock
    ]
    with server.client("operator") as operator:
        cases = []
        for van, incident_id, metres, minutes in passes:
            with server.client(van) as client:
                data = suspected_json(incident_id, metres=metres, minutes=minutes, files={})
                answer = _post(client, data, {})
            assert answer.status_code == 201, answer.text
            if answer.json()["case_id"] is not None:
                cases.append(answer.json()["case_id"])
        false_case, real_case = cases
        for case_id, move in (
            (false_case, {"to": "rejected", "reason": "false_positive"}),
            (real_case, {"to": "filed"}),
        ):
            moved = operator.post(f"/api/cases/{case_id}/transitions", json=move)
            assert moved.status_code == 200, moved.text

        def listed(**params: Any) -> tuple[int, dict[str, tuple[str, int | None, str | None, str | None]]]:
            found = operator.get("/api/chalk-marks", params=params)
            assert found.status_code == 200, found.text
            body = found.json()
            items = {
                m["incident_id"]: (m["status"], m["case_id"], m["case_status"], m["case_reject_reason"])
                for m in body["items"]
            }
            return body["total"], items

        statuses = {m["incident_id"]: m["status"] for m in operator.get("/api/chalk-marks").json()["items"]}
        assert statuses == dict.fromkeys(["van1:a", "van2:a"], "rejected") | {
            "van1:b": "confirmed",
            "van2:b": "confirmed",
            "van1:c": "expired",
        }
        rejected = ("rejected", false_case, "rejected", "false_positive")
        confirmed = ("confirmed", real_case, "filed", None)
        total, marks = listed()
        assert total == 5 and marks == {
            "van1:a": rejected,
            "van2:a": rejected,
            "van1:b": confirmed,
            "van2:b": confirmed,
            "van1:c": ("expired", None, None, None),
        }
        assert listed(status="rejected") == (2, {"van1:a": rejected, "van2:a": rejected})
        assert listed(status="confirmed") == (2, {"van1:b": confirmed, "van2:b": confirmed})
        assert listed(status="expired")[0] == 1 and listed(status="open")[0] == 0
        bad = operator.get("/api/chalk-marks", params={"status": "false_positive"})
        assert bad.status_code == 422 and "status" in bad.text
