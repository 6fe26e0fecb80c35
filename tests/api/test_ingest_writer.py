"""Group commit (api.cases.ingest.IngestWriter): incidents waiting together are written in one
transaction, each still decided after the ones before it and answered on its own; a bad incident
fails only itself; the custody ledger stays one verified chain. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from api.accounts.accounts import SYSTEM
from api.cases import audit
from api.cases.incident import IncidentPayload
from api.cases.ingest import IncidentIn, IngestResult, IngestWriter, _Pending
from api.cases.merge import MergePolicy
from api.services import Services
from api.storage.models import Case, Sighting
from tests.api.api_testkit import (
    evidence_files,
    import_demo_grid,
    incident_json,
    jpeg_bytes,
    make_settings,
)

P = (30.2741, 120.1551)  # inside the demo grid
FAR = (30.2841, 120.1651)  # about 1.4 km away


def _incident(services: Services, incident_id: str, position: tuple[float, float], **kw: Any) -> IncidentIn:
    data = incident_json(incident_id, position=position, **kw)
    files = [services.store.put_bytes(jpeg_bytes(incident_id + r[0])) for r in ("annotated", "crop")]
    evidence = list(zip(("annotated", "crop"), files, strict=True))
    return IncidentIn.from_payload(IncidentPayload.model_validate(data), evidence=evidence)


@contextmanager
def writes_held(services: Services) -> Iterator[None]:
    """Every ingest waits while this is open: SQLite's write lock is held (a write transaction),
    on PostgreSQL the custody ledger's head row is locked (every append takes it)."""
    session = services.factory()
    try:
        if services.engine.dialect.name == "postgresql":
            session.execute(text("UPDATE custody_ledger_head SET seq = seq WHERE id = 1"))
        else:
            session.connection()  # BEGIN IMMEDIATE, under the process's write lock
        yield
    finally:
        session.rollback()
        session.close()


@contextmanager
def statements_starting(services: Services, prefix: str) -> Iterator[list[str]]:
    """The statements sent while the block runs that begin with `prefix` (upper case)."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            seen.append(statement)

    event.listen(services.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(services.engine, "before_cursor_execute", note)


def _wait_until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _batch_after_first(
    services: Services, writer: IngestWriter, first: IncidentIn, queued: list[IncidentIn]
) -> tuple[IngestResult, list[IngestResult | BaseException]]:
    """`first` taken by the writer and held up by `writes_held`, `queued` submitted meanwhile in
    this order (one event loop: tasks put their incidents in the order made), then let go: the
    writer writes `first` alone and `queued` as one batch. Returns their outcomes."""
    outcomes: dict[str, Any] = {}

    def first_alone() -> None:
        outcomes["first"] = writer.ingest_blocking(first, actor=SYSTEM)

    async def submit_queued() -> list[IngestResult | BaseException]:
        return await asyncio.gather(
            *(writer.ingest(inc, actor=SYSTEM) for inc in queued), return_exceptions=True
        )

    def queued_together() -> None:
        outcomes["queued"] = asyncio.run(submit_queued())

    with writes_held(services):
        alone = threading.Thread(target=first_alone)
        alone.start()
        _wait_until(lambda: writer.stats.batches == 1, "the writer to take the first incident")
        together = threading.Thread(target=queued_together)
        together.start()
        _wait_until(lambda: writer._queue.qsize() == len(queued), "the others to queue")
    alone.join(30)
    together.join(30)
    return outcomes["first"], outcomes["queued"]


def _clean_audit(services: Services) -> audit.Audit:
    with services.factory() as session:
        result = audit.audit(session)
    assert result.problems == []
    return result


def test_waiting_incidents_are_one_transaction_each_decided_in_turn(services: Services) -> None:
    import_demo_grid(services)
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy(), idle_s=0.3)
    first = _incident(services, "first", FAR, category="street_vending")
    b1 = _incident(services, "b1", P)
    b2 = _incident(services, "b2", (P[0] + 0.00003, P[1]), when="2026-11-20T09:30:00+08:00")  # ~3 m on
    c1 = _incident(services, "c1", FAR)
    first_result, results = _batch_after_first(services, writer, first, [b1, b2, b1, c1])

    assert writer.stats.batches == 2 and writer.stats.largest_batch == 4
    assert writer.stats.retried_alone == 0
    assert first_result.created
    r_b1, r_b2, r_b1_again, r_c1 = results
    assert isinstance(r_b1, IngestResult) and r_b1.created and not r_b1.duplicate
    assert isinstance(r_b2, IngestResult) and not r_b2.created and r_b2.case_id == r_b1.case_id  # merged
    assert isinstance(r_b1_again, IngestResult) and r_b1_again.duplicate  # the same id twice in a batch
    assert (r_b1_again.case_id, r_b1_again.sighting_id) == (r_b1.case_id, r_b1.sighting_id)
    assert isinstance(r_c1, IngestResult) and r_c1.created and r_c1.case_id != r_b1.case_id
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Sighting)) == 4
        assert session.get(Case, r_b1.case_id).sightings_count == 2  # type: ignore[union-attr]
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 4  # first, b1, b2, c1: the duplicate adds nothing
    _wait_until(lambda: writer._thread is None, "the idle writer thread to end")


def test_a_bad_incident_fails_alone_and_its_batch_mates_are_stored(services: Services) -> None:
    import_demo_grid(services)
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy())
    first = _incident(services, "first", FAR, category="street_vending")
    good1 = _incident(services, "good1", P)
    bad = replace(_incident(services, "bad", FAR), category=None)  # type: ignore[arg-type]  # NOT NULL
    good2 = _incident(services, "good2", FAR, category="piled_debris")
    _, results = _batch_after_first(services, writer, first, [good1, bad, good2])

    assert isinstance(results[0], IngestResult) and results[0].created
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[2], IngestResult) and results[2].created
    assert writer.stats.retried_alone == 3  # the batch rolled back, each written again alone
    with services.factory() as session:
        ids = set(session.scalars(select(Sighting.incident_id)))
    assert ids == {"first", "good1", "good2"}
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 3


def test_many_threads_through_one_writer_keep_one_chain(services: Services) -> None:
    """Threads ingesting at once through the writer, some sending the same incidents: every
    incident once, every caller answered, one ledger without a gap."""
    import_demo_grid(services)
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy())
    incidents = [_incident(services, f"t{i}", (30.2 + i * 0.001, 120.1)) for i in range(40)]
    answers: dict[int, list[IngestResult]] = {}
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            # each thread sends its own ten, and the first five of everyone's again
            mine = incidents[t * 10 : t * 10 + 10] + [inc for inc in incidents if int(inc.id[1:]) % 10 < 5]
            answers[t] = [writer.ingest_blocking(inc, actor=SYSTEM) for inc in mine]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Sighting)) == 40
        assert session.scalar(select(func.count(func.distinct(Sighting.incident_id)))) == 40
    assert sum(len(r) for r in answers.values()) == 4 * 10 + 4 * 20
    assert len({r.sighting_id for results in answers.values() for r in results}) == 40
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 40


def test_two_writers_and_single_ingests_at_once_neither_deadlock_nor_fork(services: Services) -> None:
    """Two writers (as two server processes would have) and a thread ingesting one incident a
    transaction, all at once, over every category and onto the same few places (so sightings merge
    and lock the same cases): every incident stored once, no error (a deadlock on PostgreSQL would
    be one), one ledger."""
    import_demo_grid(services)
    writers = [
        IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy()) for _ in range(2)
    ]
    categories = ("illegal_parking", "street_vending", "piled_debris")
    places = [(30.2741 + k * 0.001, 120.1551) for k in range(3)]
    errors: list[BaseException] = []

    def incidents(prefix: str) -> list[IncidentIn]:
        return [
            _incident(
                services,
                f"{prefix}-{i}",
                places[i % 3],
                category=categories[(i // 3) % 3],
                when=f"2026-11-20T09:{i:02d}:00+08:00",
            )
            for i in range(18)
        ]

    def through_writer(writer: IngestWriter, prefix: str) -> None:
        async def all_at_once() -> None:
            await asyncio.gather(*(writer.ingest(inc, actor=SYSTEM) for inc in incidents(prefix)))

        try:
            asyncio.run(all_at_once())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def one_by_one(prefix: str) -> None:
        from api.cases.ingest import ingest_committed

        try:
            for inc in incidents(prefix):
                ingest_committed(
                    services.factory, inc, grid_cache=services.grid_cache, policy=MergePolicy(), actor=SYSTEM
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [
        threading.Thread(target=through_writer, args=(writers[0], "w0")),
        threading.Thread(target=through_writer, args=(writers[1], "w1")),
        threading.Thread(target=one_by_one, args=("single",)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Sighting)) == 54
        assert session.scalar(select(func.count()).select_from(Case)) == 9  # 3 places x 3 categories
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 54


def test_the_same_incident_posted_at_once_is_one_case(make_server: Any, db_url: str) -> None:
    """Over HTTP, eight connections sending the same incident at the same moment (and eight others
    their own): one 201, seven 200s with the same answer; every other incident its own case."""
    server = make_server(db_url)
    shared = incident_json("shared-1", position=P)
    others = [incident_json(f"own-{i}", position=(30.27 + i * 0.002, 120.15)) for i in range(8)]
    replies: list[tuple[str, int, dict[str, Any]]] = []
    start = threading.Barrier(16)

    def post(data: dict[str, Any]) -> None:
        with server.client("device") as client:
            start.wait()
            r = client.post("/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data))
            replies.append((data["id"], r.status_code, r.json()))

    threads = [threading.Thread(target=post, args=(shared,)) for _ in range(8)]
    threads += [threading.Thread(target=post, args=(data,)) for data in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(replies) == 16
    shared_replies = [(status, body) for incident_id, status, body in replies if incident_id == "shared-1"]
    assert sorted(status for status, _ in shared_replies) == [200] * 7 + [201]
    assert len({(b["case_id"], b["sighting_id"]) for _, b in shared_replies}) == 1
    assert all(status == 201 and body["created"] for i, status, body in replies if i != "shared-1")
    with server.services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Sighting)) == 9
    _clean_audit(server.services)


def test_a_bad_field_is_still_a_4xx_naming_it(make_server: Any, db_url: str) -> None:
    """Input errors are answered before the writer: a clear 4xx naming the field, nothing stored."""
    server = make_server(db_url)
    data = incident_json("bad-evidence", position=P)
    data["evidence"][0]["sha256"] = "0" * 64  # no file has this hash
    with server.client("device") as client:
        r = client.post("/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "incident.evidence[0]"
    with server.services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Sighting)) == 0


def test_a_batch_opens_the_cases_it_is_sure_of_in_one_statement(services: Services) -> None:
    """Incidents streets apart, each sure to open a case (no case and no earlier incident of the
    batch near it): their cases are inserted together when the batch ends, one INSERT for all,
    and are the same cases, numbers and custody as one at a time."""
    import_demo_grid(services)
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy())
    apart = [
        _incident(services, f"apart-{i}", (30.2701 + (i // 4) * 0.002, 120.1501 + (i % 4) * 0.002))
        for i in range(8)
    ]
    with statements_starting(services, "INSERT INTO CASES") as inserts:
        outcomes = writer._write([_Pending(inc, SYSTEM, None, None, None) for inc in apart])  # type: ignore[arg-type]
    results = [result for result, error in outcomes if error is None and result is not None]
    assert len(results) == 8 and all(r.created for r in results)
    assert len(inserts) == 1  # one statement (an executemany) for the eight cases
    assert len({r.case_id for r in results}) == 8
    with services.factory() as session:
        for result in results:
            case = session.get(Case, result.case_id)
            assert case is not None and case.number == result.case_number
            assert case.number == f"GP-2026-{case.id:06d}"
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 8


def test_a_batch_adds_its_sightings_to_cases_in_one_statement_on_postgres(services: Services) -> None:
    """Second sightings of cases filed before the batch: on PostgreSQL the batch adds them when it
    ends, one UPDATE for all (the case seen twice in the batch written before its second sighting),
    and the cases, answers and custody are as one at a time: counts, last sightings, the numbers in
    the answers. SQLite adds each as it comes (two statements each; one writer at a time)."""
    import_demo_grid(services)
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=MergePolicy())
    places = [(30.2701 + (i // 4) * 0.002, 120.1501 + (i % 4) * 0.002) for i in range(8)]
    first = [_incident(services, f"first-{i}", p) for i, p in enumerate(places)]
    again = [
        _incident(services, f"again-{i}", (lat + 0.00003, lon), when="2026-11-20T09:10:00+08:00")
        for i, (lat, lon) in enumerate(places)
    ]
    third = _incident(services, "third-0", places[0], when="2026-11-20T09:20:00+08:00")
    opened = writer._write([_Pending(inc, SYSTEM, None, None, None) for inc in first])  # type: ignore[arg-type]
    cases = [result.case_id for result, _ in opened]  # type: ignore[union-attr]
    batch = [_Pending(inc, SYSTEM, None, None, None) for inc in [*again[:4], third, *again[4:]]]  # type: ignore[arg-type]
    with statements_starting(services, "UPDATE CASES") as updates:
        outcomes = writer._write(batch)
    assert [error for _, error in outcomes] == [None] * 9 and writer.stats.retried_alone == 0
    results = [result for result, _ in outcomes]
    assert [r.case_id for r in results] == [*cases[:4], cases[0], *cases[4:]]  # type: ignore[union-attr]
    assert not any(r.created or r.recurrence for r in results)  # type: ignore[union-attr]
    postgresql = services.engine.dialect.name == "postgresql"
    assert len(updates) == (2 if postgresql else 9)
    with services.factory() as session:
        for result in results:
            assert result is not None
            case = session.get(Case, result.case_id)
            assert case is not None and case.number == result.case_number == f"GP-2026-{case.id:06d}"
            assert result.status == case.status == "pending_review"
        counts = {c: session.get(Case, c).sightings_count for c in cases}  # type: ignore[union-attr]
        assert counts == {c: 3 if c == cases[0] else 2 for c in cases}
        last = session.get(Case, cases[0])
        assert last is not None and last.last_seen.isoformat().startswith("2026-11-20T01:20")  # UTC
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 17


def test_postgres_writers_streets_apart_do_not_wait_for_each_other(services: Services) -> None:
    """PostgreSQL's ingest locks are per merge bucket: while one writer's batch holds those around P
    (from its first statement until it commits; the custody ledger's head it takes last), an
    incident 1.4 km away is written at once, and one 3 m from P waits for that batch and then
    merges with the case it opened."""
    if services.engine.dialect.name != "postgresql":
        return  # SQLite serialises every writer by its write lock
    from api.cases.ingest import batched, ingest

    import_demo_grid(services)
    policy = MergePolicy()
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=policy)
    held = services.factory()
    near_done = threading.Event()
    outcome: dict[str, Any] = {}

    def near_p() -> None:
        outcome["near"] = writer.ingest_blocking(
            _incident(services, "near-p", (P[0] + 0.00003, P[1])), actor=SYSTEM
        )
        near_done.set()

    thread = threading.Thread(target=near_p)
    try:
        at_p = _incident(services, "held-at-p", P)
        far_away = _incident(services, "far-away", FAR)
        with batched(held, incident_ids=[at_p.id], incidents=[at_p], policy=policy):
            first = ingest(held, at_p, grid=services.grid_cache.get(held), policy=policy, actor=SYSTEM)
            far = threading.Thread(
                target=lambda: outcome.update(far=writer.ingest_blocking(far_away, actor=SYSTEM))
            )
            far.start()
            far.join(15)
            assert "far" in outcome and outcome["far"].created  # written and committed while P is held
            thread.start()
            assert not near_done.wait(1.0)  # waits for the batch holding P
        held.commit()
    finally:
        held.close()
    thread.join(30)
    assert near_done.is_set()
    assert not outcome["near"].created and outcome["near"].case_id == first.case_id  # merged, not forked
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 3


def test_postgres_ingest_locks_are_per_schema(
    services: Services, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two services in two schemas of one PostgreSQL database: while a batch in the first holds the
    places around P, the same incident at P is written at once in the second (its locks are its
    schema's), as is a batch of two there (its places tried without waiting), and an incident 3 m
    from P in the first still waits for that batch, then merges."""
    if services.engine.dialect.name != "postgresql":
        return  # SQLite: one database a file
    from api.cases.ingest import batched, ingest

    other = Services.build(make_settings(tmp_path / "other", request.getfixturevalue("other_postgres_url")))
    policy = MergePolicy()
    outcome: dict[str, Any] = {}
    held = services.factory()
    near_done = threading.Event()

    def near_p() -> None:
        outcome["near"] = writer.ingest_blocking(
            _incident(services, "near-p", (P[0] + 0.00003, P[1])), actor=SYSTEM
        )
        near_done.set()

    thread = threading.Thread(target=near_p)
    try:
        for svc in (services, other):
            import_demo_grid(svc)
        writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=policy)
        other_writer = IngestWriter(other.factory, grid_cache=other.grid_cache, policy=policy)
        at_p = _incident(services, "held-at-p", P)
        with batched(held, incident_ids=[at_p.id], incidents=[at_p], policy=policy):
            first = ingest(held, at_p, grid=services.grid_cache.get(held), policy=policy, actor=SYSTEM)
            elsewhere = threading.Thread(
                target=lambda: outcome.update(
                    other=other_writer.ingest_blocking(_incident(other, "held-at-p", P), actor=SYSTEM)
                ),
                daemon=True,
            )
            elsewhere.start()
            elsewhere.join(15)
            assert "other" in outcome and outcome["other"].created  # not held by the first schema's batch
            pair = [_incident(other, "near-p", (P[0] + 0.00003, P[1])), _incident(other, "far-away", FAR)]

            async def together() -> list[Any]:
                return await other_writer.ingest_many([(inc, SYSTEM) for inc in pair])

            batch = threading.Thread(target=lambda: outcome.update(pair=asyncio.run(together())), daemon=True)
            batch.start()  # a batch of two: its places taken without waiting (_try_locks), all of them
            batch.join(15)
            assert "pair" in outcome and [error for _, error in outcome["pair"]] == [None, None]
            assert (
                other_writer.stats.held_back == 0
                and outcome["pair"][0][0].case_id == outcome["other"].case_id
            )
            thread.start()
            assert not near_done.wait(1.0)  # the same schema still waits for the batch holding P
        held.commit()
    finally:
        held.close()
        if thread.ident is not None:  # started
            thread.join(30)
        other.close()
    assert near_done.is_set()
    assert not outcome["near"].created and outcome["near"].case_id == first.case_id


def test_postgres_writer_leaves_a_held_place_for_its_next_batch_and_writes_the_rest(
    services: Services,
) -> None:
    """PostgreSQL: while another writer's batch holds the places around P, this writer's batch of
    (3 m from P, 1.4 km away, 3 m from P again) writes the far one at once and leaves both near
    ones, in their order, for its next batch (_try_locks: it does not wait while it has other
    work); that batch waits for the places, then both merge with the case the other batch opened."""
    if services.engine.dialect.name != "postgresql":
        return  # SQLite serialises every writer by its write lock
    from api.cases.ingest import batched, ingest

    import_demo_grid(services)
    policy = MergePolicy()
    writer = IngestWriter(services.factory, grid_cache=services.grid_cache, policy=policy)
    near = [
        _incident(services, "near-1", (P[0] + 0.00003, P[1])),
        _incident(services, "far-away", FAR),
        _incident(services, "near-2", (P[0] + 0.00002, P[1]), when="2026-11-20T09:40:00+08:00"),
    ]
    answered: dict[str, IngestResult] = {}

    def send() -> None:
        async def together() -> list[Any]:
            return await writer.ingest_many([(inc, SYSTEM) for inc in near])

        for inc, (result, error) in zip(near, asyncio.run(together()), strict=True):
            assert error is None, error
            answered[inc.id] = result

    held = services.factory()
    sender = threading.Thread(target=send)
    try:
        at_p = _incident(services, "held-at-p", P)
        with batched(held, incident_ids=[at_p.id], incidents=[at_p], policy=policy):
            first = ingest(held, at_p, grid=services.grid_cache.get(held), policy=policy, actor=SYSTEM)
            sender.start()
            _wait_until(lambda: writer.stats.incidents == 1, "the far incident to be written")
            with services.factory() as other:  # committed while P is still held
                assert other.scalar(select(func.count()).select_from(Case)) == 1
            time.sleep(1.0)
            assert writer.stats.held_back == 2 and not answered  # the near ones wait
        held.commit()
    finally:
        held.close()
    sender.join(30)
    assert set(answered) == {"near-1", "far-away", "near-2"}
    assert answered["far-away"].created
    for name in ("near-1", "near-2"):
        assert not answered[name].created and answered[name].case_id == first.case_id  # merged, in order
    assert writer.stats.waited == 1 and writer.stats.batches == 2
    with services.factory() as session:
        seen = session.scalars(
            select(Sighting.incident_id).where(Sighting.case_id == first.case_id).order_by(Sighting.id)
        ).all()
    assert seen == ["held-at-p", "near-1", "near-2"]
    result = _clean_audit(services)
    assert result.head.seq == result.entries == 4
