"""Incidents become cases: the hot ingest path (a new case, or a new sighting of the case
api.cases.merge chooses), its evidence links, history and custody.

Receiving the same incident id twice is harmless: the second time (a retry, the same content) returns
the first sighting. The same id with other content (another camera, time, category, box, evidence...)
is refused (IncidentConflict, 409, naming what differs) and changes nothing: an id names one incident.
A stored JSON that cannot be read (damaged outside the service) proves no conflict (check_same).

`IngestWriter` is the HTTP path's group commit: one thread writes the incidents of every request of
the process, several in one transaction, each request still getting its own answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    column,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import RUNNER_ROLE, Principal
from api.cases import custody, workflow
from api.cases.grids import Assignment, GridCache, GridIndex
from api.cases.history_notes import created_note, reopened_note, seen_before_close_note
from api.cases.incident import IncidentConflict, IncidentInputError, IncidentPayload, changed_fields
from api.cases.merge import Candidate, MergeKey, MergePolicy, bucket_of, choose_case
from api.errors import ServiceFault
from api.storage.db import DatabaseBusy, as_utc, utcnow
from api.storage.db import table_of as _table
from api.storage.evidence_store import EvidenceFiles, StoredFile, StoreEntry
from api.storage.models import Camera, Case, CaseEvent, EvidenceBlob, EvidenceLink, Job, Sighting, Upload

if TYPE_CHECKING:
    from api.cases.chalking import ChalkPolicy, ChalkResult

log = logging.getLogger(__name__)

T = TypeVar("T")

EVIDENCE_ROLES = ("annotated", "crop", "raw", "dwell_first", "dwell_middle", "dwell_last", "original")


@dataclass(slots=True)
class IncidentIn:
    """What ingestion needs of an incident, plus where it came from."""

    id: str
    category: str
    seen_at: datetime  # naive UTC
    first_seen: datetime
    lat: float | None
    lon: float | None
    plate: str | None
    camera_id: str | None
    raw: dict[str, Any]
    evidence: list[tuple[str, StoredFile]] = field(default_factory=list)  # (role, stored file)
    # one pass of a parked vehicle: chalked (api.cases.chalking), never ingested as a case by itself
    suspected: bool = False

    @classmethod
    def from_payload(
        cls,
        incident: IncidentPayload,
        *,
        evidence: list[tuple[str, StoredFile]],
        camera_id: str | None = None,
        received_at: datetime | None = None,
    ) -> IncidentIn:
        """The incident as sent (over HTTP, or by the worker: the same payload type); camera_id, when
        given, is the sending device's camera and wins over the incident's own source id."""
        received_at = received_at or utcnow()
        first = as_utc(incident.first_seen_wall) or as_utc(incident.last_seen_wall) or received_at
        last = as_utc(incident.last_seen_wall) or first
        lat = lon = None
        if incident.position:
            lat, lon = float(incident.position[0]), float(incident.position[1])
        plate = (incident.plate or "").strip().upper() or None
        return cls(
            id=incident.id,
            category=incident.category,
            seen_at=last,
            first_seen=first,
            lat=lat,
            lon=lon,
            plate=plate,
            camera_id=camera_id or incident.source_id or None,
            raw=incident.to_json(),
            evidence=evidence,
            suspected=incident.suspected,
        )

    def merge_key(self) -> MergeKey:
        return MergeKey(self.category, self.seen_at, self.lat, self.lon, self.plate, self.camera_id)


@dataclass(frozen=True, slots=True)
class IngestResult:
    case: Case
    sighting_id: int
    created: bool  # a new case
    duplicate: bool  # the incident id was already known
    recurrence: bool  # a closed case was reopened
    before_close: bool = False  # a sighting of a closed case seen by the time it was closed: kept closed

    @property
    def case_id(self) -> int:
        return self.case.id

    @property
    def case_number(self) -> str | None:
        return self.case.number

    @property
    def status(self) -> str:
        return self.case.status


def case_number(case: Case) -> str:
    return case_number_of(case.id, case.first_seen)


def case_number_of(case_id: int, first_seen: datetime) -> str:
    return f"GP-{first_seen.year}-{case_id:06d}"


# what choose_case needs of a case, in api.cases.merge.Candidate's order
_CANDIDATE_COLUMNS = (
    Case.id,
    Case.category,
    Case.status,
    Case.last_seen,
    Case.merge_lat,
    Case.merge_lon,
    Case.plate,
    Case.camera_id,
)


def _candidate_statements() -> tuple[Select, Select, Select]:
    """The merge-candidate queries, built once with bound parameters (statement building and
    caching cost more than the query itself on this hot path). They narrow the cases with the merge
    rule's own conditions (api.cases.merge) and read only what choosing needs; choose_case decides,
    and the chosen case is then loaded by its id. A case's reach point (merge_lat, merge_lon) is its
    position as the rule measures it. `near` reads the merge buckets around the incident through
    ix_cases_merge_bucket (category, merge_bucket, last_seen): a few index ranges, however many
    cases the day holds; `near_unbucketed` (a box too wide for buckets, or buckets turned off)
    reads every case of the category in the window and keeps those in the box."""
    base = select(*_CANDIDATE_COLUMNS).where(
        Case.category == bindparam("category"),
        Case.status != workflow.REJECTED,
        Case.last_seen >= bindparam("seen_lo"),
        Case.last_seen <= bindparam("seen_hi"),
        or_(
            bindparam("plate", type_=Case.plate.type).is_(None),
            Case.plate.is_(None),
            Case.plate == bindparam("plate"),
        ),
    )
    near_unbucketed = base.where(
        Case.merge_lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
        Case.merge_lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    )
    near = near_unbucketed.where(Case.merge_bucket.in_(bindparam("buckets", expanding=True)))
    same_camera = (
        base.where(Case.merge_lat.is_(None))
        .where(
            or_(
                and_(bindparam("camera", type_=Case.camera_id.type).is_(None), Case.camera_id.is_(None)),
                Case.camera_id == bindparam("camera"),
            )
        )
        .order_by(Case.last_seen.desc(), Case.id.asc())
        .limit(_SAME_CAMERA_ROWS)
    )
    return near, near_unbucketed, same_camera


_SAME_CAMERA_ROWS = 8  # the latest few position-less cases of the camera; choose_case takes the latest
_NEARBY = select(*_CANDIDATE_COLUMNS).where(
    Case.category.in_(bindparam("categories", expanding=True)),
    Case.merge_bucket.in_(bindparam("buckets", expanding=True)),
    Case.last_seen >= bindparam("seen_lo"),
    Case.last_seen <= bindparam("seen_hi"),
    Case.status != workflow.REJECTED,
)
_NEAR_BY_COUNT: dict[int, Select] = {}
_NEAR, _NEAR_UNBUCKETED, _SAME_CAMERA = _candidate_statements()


def _near_statement(count: int) -> Select:
    """`near` with `count` bucket parameters (b0, b1, ...) in place of the expanding list: SQLAlchemy
    renders an expanding IN again at every execution, which costs more than the query; there are
    only a few counts (2 to 6 buckets at 15 m), each compiled once."""
    statement = _NEAR_BY_COUNT.get(count)
    if statement is None:
        statement = _NEAR_UNBUCKETED.where(Case.merge_bucket.in_([bindparam(f"b{i}") for i in range(count)]))
        _NEAR_BY_COUNT[count] = statement
    return statement


def earlier_runs_cases(
    conn: Connection | Session, *, job_id: int, case_ids: Iterable[int] | None = None
) -> set[int]:
    """Of `case_ids` (None: of all cases), those whose every sighting came from an earlier run of job
    `job_id`'s upload: a job of it that ran for a lower revision than the upload's now (a resend
    corrected it since; api.jobs.uploads records each job's revision). These are the earlier runs'
    cases, which api.jobs.superseding rejects as duplicates once the job is done (those still under
    review), and which the corrected run's incidents do not become sightings of. A plain retry of a
    failed run keeps its revision and sends the same incident ids: the failed attempt's cases are the
    retry's own, never an earlier run's."""
    upload = conn.execute(
        select(Upload.id, Upload.revision).join(Job, Job.upload_id == Upload.id).where(Job.id == job_id)
    ).one_or_none()
    if upload is None or not upload.revision:
        return set()
    earlier = (
        select(Job.id)
        .where(Job.upload_id == upload.id, Job.revision < upload.revision, Job.id != job_id)
        .scalar_subquery()
    )
    of_earlier = select(Sighting.case_id).where(Sighting.job_id.in_(earlier))
    if case_ids is not None:
        of_earlier = of_earlier.where(Sighting.case_id.in_(list(case_ids)))
    found = set(conn.scalars(of_earlier.distinct()))
    if not found:
        return found
    seen_elsewhere = select(Sighting.case_id).where(  # by this run, another upload or a device too
        Sighting.case_id.in_(found), or_(Sighting.job_id.is_(None), Sighting.job_id.not_in(earlier))
    )
    return found - set(conn.scalars(seen_elsewhere.distinct()))


def _best_candidate(
    session: Session, inc: IncidentIn, policy: MergePolicy, job_id: int | None = None
) -> Candidate | None:
    """The case this incident is a sighting of (see api.cases.merge), or None for a new case. In a
    batch whose nearby cases were read ahead (`_Nearby`), chosen among those without a query. A job's
    incident (`job_id`) is no sighting of the cases only its upload's earlier runs filed, when a resend
    corrected it (earlier_runs_cases): the corrected run files its own (with its times and positions)
    and the earlier ones are superseded, even where it places no frame either (a position-less
    incident merges with a position-less case of the same camera)."""
    key = inc.merge_key()
    batch: _Batch | None = session.info.get(_BATCH_KEY)
    if (
        batch is not None
        and batch.nearby is not None
        and (found := batch.nearby.candidates(inc, policy)) is not None
    ):
        found = _not_earlier_runs(session.connection(), found, job_id)
        chosen = choose_case(key, found.values(), policy)
        return None if chosen is None else found[chosen]
    conn = session.connection()  # Core rows: most incidents match nothing, so no ORM loading
    if batch is not None and batch.deferred:  # the query reads the cases as they are
        _flush_sightings(conn, batch)
    params: dict[str, Any] = {
        "category": inc.category,
        "seen_lo": inc.seen_at - policy.window,
        "seen_hi": inc.seen_at + policy.window,
        "plate": inc.plate,
    }
    if inc.lat is None or inc.lon is None:
        rows = conn.execute(_SAME_CAMERA, dict(params, camera=inc.camera_id))
    else:
        dlat, dlon = policy.box_deg(inc.lat)
        params.update(
            lat_lo=inc.lat - dlat, lat_hi=inc.lat + dlat, lon_lo=inc.lon - dlon, lon_hi=inc.lon + dlon
        )
        buckets = policy.buckets_near(inc.lat, inc.lon)
        if buckets is None:
            rows = conn.execute(_NEAR_UNBUCKETED, params)
        else:
            params.update((f"b{i}", bucket) for i, bucket in enumerate(buckets))
            rows = conn.execute(_near_statement(len(buckets)), params)
    candidates = _not_earlier_runs(conn, {row[0]: Candidate(*row) for row in rows}, job_id)
    chosen = choose_case(key, candidates.values(), policy)
    return None if chosen is None else candidates[chosen]


def _not_earlier_runs(
    conn: Connection, candidates: dict[int, Candidate], job_id: int | None
) -> dict[int, Candidate]:
    if job_id is None or not candidates:
        return candidates
    excluded = earlier_runs_cases(conn, job_id=job_id, case_ids=candidates)
    return {case_id: case for case_id, case in candidates.items() if case_id not in excluded}


def link_evidence(
    session: Session, case_id: int, sighting_id: int | None, evidence: list[tuple[str, StoredFile]]
) -> None:
    """Record evidence blobs (once per SHA-256) and link them to the case / sighting (Core inserts)."""
    if not evidence:
        return
    now = utcnow()
    blobs = {
        stored.sha256: {
            "sha256": stored.sha256,
            "size": stored.size,
            "media_type": stored.media_type,
            "created_at": now,
        }
        for _, stored in evidence
    }
    links = [
        {"case_id": case_id, "sighting_id": sighting_id, "sha256": stored.sha256, "role": role}
        for role, stored in evidence
    ]
    batch: _Batch | None = session.info.get(_BATCH_KEY)
    if batch is not None:  # written when the batch ends
        for sha, row in blobs.items():
            batch.blobs.setdefault(sha, row)
        batch.links += links
        return
    # one statement: a blob already known (the same image in another case) is left as it is
    conn = session.connection()
    dialect = conn.dialect.name
    conn.execute(_INSERT_BLOB_PG if dialect == "postgresql" else _INSERT_BLOB_SQLITE, list(blobs.values()))
    conn.execute(_INSERT_LINK, links)


_FIND_SIGHTING = select(
    _table(Sighting).c.id,
    _table(Sighting).c.case_id,
    _table(Sighting).c.incident_json,
    _table(Sighting).c.camera_id,
).where(_table(Sighting).c.incident_id == bindparam("incident_id"))
_FIND_SIGHTINGS = select(
    _table(Sighting).c.incident_id,
    _table(Sighting).c.id,
    _table(Sighting).c.case_id,
    _table(Sighting).c.incident_json,
    _table(Sighting).c.camera_id,
).where(_table(Sighting).c.incident_id.in_(bindparam("incident_ids", expanding=True)))
# An advisory lock's number: its key within the connection's schema (current_schema(), the first
# schema of its search_path, where its tables are). Advisory locks are per database, not per schema:
# without the schema, two services (or test runs) in two schemas of one database would queue for
# each other's places.
_LOCK_NUMBER = "hashtext(current_schema() || ':' || {key})"
# PostgreSQL advisory locks held until commit (hold_place_locks), taken in one statement and one
# order: rank 0 keys (whole categories) first, then rank 1 (buckets), each by its lock number; a key
# asked for exclusively by any caller's entry is taken exclusively
_PLACE_LOCKS = text(
    "SELECT count(CASE WHEN l.x THEN pg_advisory_xact_lock(l.k)::text "
    "ELSE pg_advisory_xact_lock_shared(l.k)::text END) FROM "
    f"(SELECT {_LOCK_NUMBER.format(key='key')} AS k, bool_or(x) AS x FROM "
    "unnest(CAST(:keys AS text[]), CAST(:exclusive AS boolean[]), CAST(:ranks AS int[])) AS t(key, x, r) "
    "GROUP BY 1 ORDER BY min(r), 1) AS l"
)
# the same locks taken without waiting (pg_try_advisory_xact_lock): whether each key was taken
_TRY_PLACE_LOCKS = text(
    f"SELECT l.key, CASE WHEN l.x THEN pg_try_advisory_xact_lock({_LOCK_NUMBER.format(key='l.key')}) "
    f"ELSE pg_try_advisory_xact_lock_shared({_LOCK_NUMBER.format(key='l.key')}) END AS got "
    "FROM unnest(CAST(:keys AS text[]), CAST(:exclusive AS boolean[])) AS l(key, x)"
)
_INSERT_CASE = insert(_table(Case))
_MAX_PLUS_ONE = select(func.coalesce(func.max(_table(Case).c.id), 0) + 1)
_INSERT_BLOB_SQLITE = sqlite_insert(_table(EvidenceBlob)).on_conflict_do_nothing(index_elements=["sha256"])
_INSERT_BLOB_PG = pg_insert(_table(EvidenceBlob)).on_conflict_do_nothing(index_elements=["sha256"])
_INSERT_EVENT = insert(_table(CaseEvent))
_INSERT_LINK = insert(_table(EvidenceLink))
_INSERT_SIGHTING = insert(_table(Sighting)).returning(_table(Sighting).c.id)
_INSERT_SIGHTINGS = insert(_table(Sighting))
_SIGHTING_IDS_PG = text(
    "SELECT nextval(pg_get_serial_sequence('sightings', 'id')) FROM generate_series(1, :n)"
)
_SIGHTING_MAX_PLUS_ONE = select(func.coalesce(func.max(_table(Sighting).c.id), 0) + 1)
_CASE_IDS_PG = text("SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, :n)")


def _lock_keys(incidents: list[IncidentIn], policy: MergePolicy) -> dict[str, tuple[bool, int]]:
    """The PostgreSQL ingest locks these incidents need: key -> (exclusive, rank; rank 0 before 1).

    An incident with a position takes its category's lock shared and, exclusively, the lock of
    every merge bucket its radius meets (MergePolicy.buckets_near: where every case it may become a
    sighting of has its reach point). Two incidents that could be sightings of one case, or of each
    other, meet in at least one such bucket (the reach point of a case either opened or moved by an
    incident is that incident's position, in its own buckets), so the second waits for the first to
    commit and then sees its case; incidents streets apart are written at once by two writers. An
    incident without a position (it merges with the position-less cases of its camera) or with a
    radius meeting too many buckets (its candidates are read unbucketed) takes its category's lock
    exclusively: it waits for, and holds off, every other writer of that category."""
    return _merged_keys([_incident_keys(inc, policy) for inc in incidents])


def _incident_keys(inc: IncidentIn, policy: MergePolicy) -> dict[str, tuple[bool, int]]:
    """One incident's ingest locks (_lock_keys)."""
    near = None if inc.lat is None or inc.lon is None else policy.buckets_near(inc.lat, inc.lon)
    return place_lock_keys("gridpatrol-ingest", inc.category, near)


def _merged_keys(each: list[dict[str, tuple[bool, int]]]) -> dict[str, tuple[bool, int]]:
    """Several incidents' locks as one set: a key any of them takes exclusively is taken so."""
    keys: dict[str, tuple[bool, int]] = {}
    for mine in each:
        for key, (exclusive, rank) in mine.items():
            keys[key] = (exclusive or keys.get(key, (False, rank))[0], rank)
    return keys


def place_lock_keys(prefix: str, category: str, buckets: list[int] | None) -> dict[str, tuple[bool, int]]:
    """The advisory locks (key -> (exclusive, rank)) of one place: `prefix:category` shared and each
    of `buckets` (`prefix:category:bucket`) exclusively, or, without buckets (a radius meeting too
    many, or no position), `prefix:category` exclusively, which waits for and holds off them all."""
    category_key = f"{prefix}:{category}"
    if buckets is None:
        return {category_key: (True, 0)}
    keys = {category_key: (False, 0)}
    keys.update((f"{category_key}:{bucket}", (True, 1)) for bucket in buckets)
    return keys


def hold_place_locks(conn: Connection, keys: dict[str, tuple[bool, int]]) -> None:
    """PostgreSQL: hold these advisory locks (place_lock_keys) until commit, taken in one order.
    They are the connection's schema's: another schema's same keys are other locks."""
    if keys:
        names = sorted(keys)
        conn.execute(
            _PLACE_LOCKS,
            {
                "keys": names,
                "exclusive": [keys[k][0] for k in names],
                "ranks": [keys[k][1] for k in names],
            },
        )


def _take_locks(conn: Connection, incidents: list[IncidentIn], policy: MergePolicy) -> None:
    """PostgreSQL: hold the ingest locks of these incidents (_lock_keys) until commit."""
    hold_place_locks(conn, _lock_keys(incidents, policy))


def _try_locks(conn: Connection, incidents: list[IncidentIn], policy: MergePolicy) -> list[bool]:
    """PostgreSQL: take the ingest locks of these incidents (_lock_keys) without waiting, in one
    statement; for each incident, whether it may be written now: all its keys taken, and none
    shared with an incident before it that may not (incidents that could become one case keep
    their order). Keys taken for an incident that may not be written stay held until the
    transaction ends; the caller writes the others, or rolls back to wait for them all."""
    per_incident = [_incident_keys(inc, policy) for inc in incidents]
    keys = _merged_keys(per_incident)
    names = sorted(keys)
    rows = conn.execute(_TRY_PLACE_LOCKS, {"keys": names, "exclusive": [keys[k][0] for k in names]})
    got = {row.key: bool(row.got) for row in rows}
    left: set[str] = set()  # the keys of the incidents left so far
    left_exclusive: set[str] = set()  # those of them taken exclusively (shared ones do not conflict)
    ready = []
    for mine in per_incident:
        exclusive = {key for key, (x, _rank) in mine.items() if x}
        ok = all(got[key] for key in mine) and left_exclusive.isdisjoint(mine) and left.isdisjoint(exclusive)
        if not ok:
            left.update(mine)
            left_exclusive.update(exclusive)
        ready.append(ok)
    return ready


def _take_sighting_ids(conn: Connection, count: int) -> list[int]:
    """`count` ids for the sightings a batch is about to make: PostgreSQL's sequence, SQLite's
    max + 1 onwards (this transaction holds the write lock)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        return [int(row[0]) for row in conn.execute(_SIGHTING_IDS_PG, {"n": count})]
    first = int(conn.scalar(_SIGHTING_MAX_PLUS_ONE))  # type: ignore[arg-type]
    return list(range(first, first + count))


def _take_case_ids(conn: Connection, count: int) -> list[int]:
    """PostgreSQL: `count` ids from the cases' sequence, for the cases a batch is sure to open
    (_sure_new). They come before the ids of the batch's other new cases, which the INSERT takes
    when each is opened: within a batch, case numbers follow the order of arrival only on SQLite
    (with two writers they never did on PostgreSQL; first_seen orders cases by time)."""
    if count <= 0:
        return []
    return [int(row[0]) for row in conn.execute(_CASE_IDS_PG, {"n": count})]


def _sure_new(
    incidents: list[IncidentIn], received: set[str], nearby: _Nearby, policy: MergePolicy
) -> list[str]:
    """The ids of the batch's incidents sure to open a case, in order: no case of the incident's
    category has its reach point in the merge buckets around it (`nearby` holds every such case the
    database has), and no incident before it in the batch is in them (a case that an incident opens,
    or moves, has its reach point at that incident's position). Their cases' rows can wait for the
    batch's end (`_Batch.pending`): no incident of the batch can become a sighting of them without
    being in those buckets itself, and one that is flushes them first. Received ids are not new."""
    seen = set(received)
    touched: set[tuple[str, int]] = set()
    sure: list[str] = []
    for inc in incidents:
        if inc.id in seen or inc.lat is None or inc.lon is None:
            continue
        seen.add(inc.id)
        near = policy.buckets_near(inc.lat, inc.lon)
        if near is None:
            continue
        if not any(nearby.buckets.get((inc.category, b)) or (inc.category, b) in touched for b in near):
            sure.append(inc.id)
        touched.add((inc.category, bucket_of(inc.lat, inc.lon)))
    return sure


def _flush_cases(conn: Connection, batch: _Batch) -> None:
    """Insert the cases the batch opened and has not written yet (one statement)."""
    if batch.pending:
        conn.execute(_INSERT_CASE, list(batch.pending.values()))
        batch.pending.clear()


def _insert_case_pg() -> Any:
    """PostgreSQL: a case's INSERT that takes its id from the table's sequence and writes its number
    (case_number_of: the `number_prefix` GP-<year>- and the id, 6 digits at least) in the same
    statement, returning both: one round trip instead of nextval and then the INSERT."""
    cases = _table(Case)
    new_id = select(func.nextval(func.pg_get_serial_sequence("cases", "id")).label("id")).subquery("n")
    as_text = cast(new_id.c.id, Text)
    digits = sql_case((new_id.c.id < 1_000_000, func.lpad(as_text, 6, "0")), else_=as_text)
    columns = [c.name for c in cases.columns if c.name not in ("id", "number")]
    values = [bindparam(name, type_=cases.c[name].type) for name in columns]
    chosen = select(new_id.c.id, bindparam("number_prefix", type_=Text) + digits, *values)
    return insert(cases).from_select(["id", "number", *columns], chosen).returning(cases.c.id, cases.c.number)


_INSERT_CASE_PG = _insert_case_pg()


# the incident's values a sighting's UPDATE reads (_sighting_values), with their columns' types
_SIGHTING_TYPES = {
    "inc_seen": _table(Case).c.last_seen.type,
    "inc_first": _table(Case).c.first_seen.type,
    "inc_plate": _table(Case).c.plate.type,
    "follows": Boolean(),
    "inc_lat": _table(Case).c.merge_lat.type,
    "inc_lon": _table(Case).c.merge_lon.type,
    "inc_bucket": _table(Case).c.merge_bucket.type,
}


def _sighting_values(inc: IncidentIn, policy: MergePolicy) -> dict[str, Any]:
    """The parameters of _SIGHTING_TYPES for this incident (`follows`: its category follows its
    latest sighting, and it has a position)."""
    follows = inc.category in policy.follow_last and inc.lat is not None and inc.lon is not None
    return {
        "inc_seen": inc.seen_at,
        "inc_first": inc.first_seen,
        "inc_plate": inc.plate,
        "follows": follows,
        "inc_lat": inc.lat,
        "inc_lon": inc.lon,
        "inc_bucket": bucket_of(inc.lat, inc.lon) if follows else None,  # type: ignore[arg-type]
    }


def _sighting_set(inc: Any, reopens: ColumnElement[bool]) -> dict[str, Any]:
    """The SET of a sighting's UPDATE, reading the case as it now is: one more sighting, the seen
    range widened, a plate kept or filled in, a closed case reopened (a recurrence) when `reopens`
    (decided by _reopens) and otherwise left as it was closed, its updated_at too (the closing time
    of a case closed outside the service, _closed_at), and the reach point moved to the incident's
    position when `follows` and it is the latest sighting (MergePolicy.reach_after). `inc`: the
    incident's values by the names of _SIGHTING_TYPES (bind parameters, or the columns of the
    batch's arrays)."""
    c = _table(Case).c
    seen, first = inc["inc_seen"], inc["inc_first"]
    moves = and_(inc["follows"], c.last_seen <= seen)
    reopens = and_(c.status == workflow.CLOSED, reopens)
    stays_closed = and_(c.status == workflow.CLOSED, not_(reopens))
    return {
        "sightings_count": c.sightings_count + 1,
        "last_seen": sql_case((c.last_seen < seen, seen), else_=c.last_seen),
        "first_seen": sql_case((c.first_seen > first, first), else_=c.first_seen),
        "plate": sql_case((or_(c.plate.is_(None), c.plate == ""), inc["inc_plate"]), else_=c.plate),
        "updated_at": sql_case((stays_closed, c.updated_at), else_=bindparam("now", type_=c.updated_at.type)),
        "status": sql_case((reopens, workflow.PENDING_REVIEW), else_=c.status),
        "recurrence_count": c.recurrence_count + sql_case((reopens, 1), else_=0),
        "merge_lat": sql_case((moves, inc["inc_lat"]), else_=c.merge_lat),
        "merge_lon": sql_case((moves, inc["inc_lon"]), else_=c.merge_lon),
        "merge_bucket": sql_case((moves, inc["inc_bucket"]), else_=c.merge_bucket),
    }


# the case's row locked until commit (PostgreSQL: FOR UPDATE, as a move locks it; SQLite: its one
# writer), with what deciding a sighting of it needs
_LOCK_CASE = (
    select(_table(Case).c.status, _table(Case).c.updated_at)
    .where(_table(Case).c.id == bindparam("case_id"))
    .with_for_update()
)
# the case's last move in its history (to a status), the latest first
_LAST_MOVE = (
    select(_table(CaseEvent).c.to_status, _table(CaseEvent).c.at)
    .where(_table(CaseEvent).c.case_id == bindparam("case_id"), _table(CaseEvent).c.to_status.is_not(None))
    .order_by(_table(CaseEvent).c.at.desc(), _table(CaseEvent).c.id.desc())
    .limit(1)
)


def _closed_at(conn: Connection, case_id: int, updated_at: datetime) -> datetime:
    """When a closed case was closed: the time of its closing in its history (case_events), when that
    is its last move; else (closed outside the service: an import, an edit in SQL, with no closing in
    its history, or one before a later move) its updated_at, the time of its last change, which a
    sighting that leaves it closed does not move (_sighting_set). Read after the case's row is locked
    (_LOCK_CASE), in a statement of its own: on PostgreSQL a close that held the row has committed by
    then, and this statement's snapshot sees its history row."""
    last = conn.execute(_LAST_MOVE, {"case_id": case_id}).first()
    if last is not None and last.to_status == workflow.CLOSED:
        return last.at
    return updated_at


def _reopens(conn: Connection, case_id: int, status: str, updated_at: datetime, seen: datetime) -> bool:
    """Whether a sighting last seen at `seen` reopens the case (its row locked, `status` and
    `updated_at` read with the lock): the case is closed and the sighting came after its closing
    (_closed_at). A sighting seen by then (footage uploaded late, a runner's queue drained late) is
    evidence of what was closed, not a recurrence: the case stays closed."""
    return status == workflow.CLOSED and seen > _closed_at(conn, case_id, updated_at)


def _add_sighting_statement() -> Any:
    """A sighting added to a case in one UPDATE (_sighting_set), returning the row as updated."""
    cases = _table(Case)
    c = cases.c
    values = _sighting_set(
        {name: bindparam(name, type_=kind) for name, kind in _SIGHTING_TYPES.items()},
        bindparam("reopens", type_=Boolean()),
    )
    return update(cases).where(c.id == bindparam("case_id", type_=c.id.type)).values(values).returning(*c)


_ADD_SIGHTING = _add_sighting_statement()


def _add_sightings_pg() -> Any:
    """PostgreSQL: the sightings a batch deferred (_defer_sighting), one case each, added in one
    UPDATE from arrays (unnest) with _sighting_set. Each row is updated only while its status is the
    one the batch decided on (`assumed`, from _Nearby): a reviewer's change that committed meanwhile
    leaves the row out (under READ COMMITTED the condition is checked again on the row's newest
    version after waiting for its lock), and the batch is then written again one incident at a time
    (_StaleCase). Returns the rows as updated."""
    cases = _table(Case)
    c = cases.c
    arrays = {"case_id": c.id.type, "assumed": c.status.type, **_SIGHTING_TYPES}
    v = (
        func.unnest(*(bindparam(name, type_=ARRAY(kind)) for name, kind in arrays.items()))
        .table_valued(*(column(name, kind) for name, kind in arrays.items()))
        .render_derived(name="v")
    )
    values = _sighting_set(v.c, false())  # never a closed case (`assumed`, _defer_sighting)
    return update(cases).where(c.id == v.c.case_id, c.status == v.c.assumed).values(values).returning(*c)


_ADD_SIGHTINGS_PG = _add_sightings_pg()


class _StaleCase(Exception):
    """A case the batch added a deferred sighting to changed status meanwhile (a reviewer's act):
    the batch is rolled back and its incidents written again one at a time (IngestWriter._write)."""


def _lock_chosen(
    session: Session, inc: IncidentIn, policy: MergePolicy, job_id: int | None, candidate: Candidate
) -> tuple[Candidate, Any] | None:
    """The chosen case with its row locked and read (_LOCK_CASE), so that a sighting and a move of
    the case (api.cases.acting.transition locks the row too) take their turns: a move that holds the
    row commits before this sighting is decided. A case rejected meanwhile takes no sightings
    (api.cases.merge): the incident is then decided again on the cases as they now are (the query
    no longer finds that one); None when it is a new case."""
    conn = session.connection()
    while True:
        locked = conn.execute(_LOCK_CASE, {"case_id": candidate.id}).one()
        if locked.status != workflow.REJECTED:
            return candidate, locked
        batch: _Batch | None = session.info.get(_BATCH_KEY)
        if batch is not None and batch.nearby is not None:  # its candidates read ahead: not that one
            batch.nearby.put(replace(candidate, status=workflow.REJECTED))
        chosen = _best_candidate(session, inc, policy, job_id)
        if chosen is None:
            return None
        candidate = chosen


def _add_sighting(
    conn: Connection, case_id: int, locked: Any, inc: IncidentIn, policy: MergePolicy, now: datetime
) -> tuple[str, Case]:
    """Add the incident to the case, its row locked and read (`locked`, _lock_chosen), in one UPDATE
    (_add_sighting_statement): its status before, and the case as it now is (detached: callers read
    it, never change it). The case's history is read after the lock, in statements of their own: a
    close that held the row is seen with its closing (_reopens). (On PostgreSQL one UPDATE that
    waited for the row itself read the history as it was before the close: a closed case with no
    closing, which it reopened.)"""
    was = locked.status
    reopens = _reopens(conn, case_id, was, locked.updated_at, inc.seen_at)
    params = {"case_id": case_id, "now": now, "reopens": reopens, **_sighting_values(inc, policy)}
    row = dict(conn.execute(_ADD_SIGHTING, params).one()._mapping)
    return was, Case(**row)


def _defer_sighting(
    batch: _Batch, candidate: Candidate, inc: IncidentIn, policy: MergePolicy, now: datetime
) -> tuple[str, Case, Candidate]:
    """PostgreSQL, in a batch whose merge candidates were read ahead: the incident's sighting of
    `candidate` left for one UPDATE when the batch ends (_flush_sightings), its effect on the case
    worked out here as the UPDATE will make it. Never a closed case: whether a sighting reopens one
    depends on its history (_reopens), so ingest adds those at once (_add_sighting). Returns the
    status before, the case (its other columns filled in by that UPDATE, before the caller reads
    them) and the case as the batch's next incidents see it."""
    assert candidate.status != workflow.CLOSED
    values = _sighting_values(inc, policy)
    moves = values["follows"] and candidate.last_seen <= inc.seen_at
    after = Candidate(
        candidate.id,
        candidate.category,
        candidate.status,
        max(candidate.last_seen, inc.seen_at),
        inc.lat if moves else candidate.lat,
        inc.lon if moves else candidate.lon,
        candidate.plate or inc.plate,
        candidate.camera_id,
    )
    case = Case(id=candidate.id, category=after.category, status=after.status, last_seen=after.last_seen)
    batch.deferred[candidate.id] = ({"case_id": candidate.id, "assumed": candidate.status, **values}, case)
    batch.now = now
    return candidate.status, case, after


def _flush_sightings(conn: Connection, batch: _Batch) -> None:
    """Add the sightings the batch deferred (one UPDATE, _add_sightings_pg), after the cases it
    opened, and fill in the cases returned to their callers; _StaleCase when a case's status is no
    longer the one the batch decided on."""
    if not batch.deferred:
        return
    _flush_cases(conn, batch)
    params: dict[str, Any] = {name: [] for name in next(iter(batch.deferred.values()))[0]}
    for row, _ in batch.deferred.values():
        for name, value in row.items():
            params[name].append(value)
    rows = {row.id: row for row in conn.execute(_ADD_SIGHTINGS_PG, dict(params, now=batch.now))}
    deferred, batch.deferred = batch.deferred, {}
    stale = sorted(set(deferred) - set(rows))
    if stale:
        raise _StaleCase(f"case(s) {stale} changed status while the batch added sightings to them")
    for case_id, (_, case) in deferred.items():
        for name, value in rows[case_id]._mapping.items():
            setattr(case, name, value)


def _next_case_id(conn: Connection) -> int:
    """SQLite: the id the next case gets (max + 1, safe because writers are serialised), so that its
    number can be written with it in one INSERT (PostgreSQL: _INSERT_CASE_PG)."""
    return int(conn.scalar(_MAX_PLUS_ONE))  # type: ignore[arg-type]


class _Nearby:
    """The merge candidates of a batch's incidents, read in one query when the batch begins and kept
    up to date as its incidents are decided (each new case added, each merged case's new state put
    in), so that deciding an incident needs no query. It holds, for the batch's categories and the
    merge buckets near its positioned incidents, every case not rejected whose last sighting is in
    the merge window of one of them: a superset of what `near` would read for each, which
    choose_case narrows exactly as it narrows the query's rows. No other writer changes those cases
    meanwhile: SQLite has one writer, and on PostgreSQL the batch holds its categories' ingest locks
    from before the read."""

    def __init__(self, rows: Iterator[Any]) -> None:
        self.cases: dict[int, Candidate] = {}
        self.buckets: dict[tuple[str, int], set[int]] = {}
        for row in rows:
            self.put(Candidate(*row))

    @classmethod
    def read(cls, conn: Connection, incidents: list[IncidentIn], policy: MergePolicy) -> _Nearby | None:
        """The cases near `incidents` (None when an incident has no position or its box is too wide
        for buckets: the batch then queries per incident)."""
        buckets: set[int] = set()
        for inc in incidents:
            near = None if inc.lat is None or inc.lon is None else policy.buckets_near(inc.lat, inc.lon)
            if near is None:
                return None
            buckets.update(near)
        if not incidents:
            return None
        rows = conn.execute(
            _NEARBY,
            {
                "categories": sorted({inc.category for inc in incidents}),
                "buckets": sorted(buckets),
                "seen_lo": min(inc.seen_at for inc in incidents) - policy.window,
                "seen_hi": max(inc.seen_at for inc in incidents) + policy.window,
            },
        )
        return cls(rows)

    def put(self, case: Candidate) -> None:
        """A case as it now is (a new one, or one whose reach point, last sighting or status changed)."""
        old = self.cases.get(case.id)
        if old is not None and old.lat is not None and old.lon is not None:
            self.buckets.get((old.category, bucket_of(old.lat, old.lon)), set()).discard(case.id)
        self.cases[case.id] = case
        if case.lat is not None and case.lon is not None:
            self.buckets.setdefault((case.category, bucket_of(case.lat, case.lon)), set()).add(case.id)

    def candidates(self, inc: IncidentIn, policy: MergePolicy) -> dict[int, Candidate] | None:
        """The cases in the merge buckets near the incident (None: not one this index can answer)."""
        if inc.lat is None or inc.lon is None:
            return None
        near = policy.buckets_near(inc.lat, inc.lon)
        if near is None:
            return None
        found: dict[int, Candidate] = {}
        for bucket in near:
            for case_id in self.buckets.get((inc.category, bucket), ()):
                found[case_id] = self.cases[case_id]
        return found


@dataclass
class _Batch:
    """Several incidents ingested in one transaction (see `batched`): what the statements of one
    incident need not repeat for the next (the ingest locks held, the next case id on SQLite, the
    cameras' fixed places), and the rows nothing reads back before the commit (the cases it is sure
    to open, sightings, evidence blobs and links, case events), inserted together when the batch
    ends."""

    locked: set[str] = field(default_factory=set)  # ids of the incidents whose ingest locks are held
    next_case_id: int | None = None
    places: dict[str, _FixedPlace | None] = field(default_factory=dict)
    blobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # incident id -> (sighting id, case id, incident JSON, camera id) of those received before or in
    # this batch; None: not read ahead (each incident is then looked up alone)
    received: dict[str, tuple[int, int, str, str | None]] | None = None
    nearby: _Nearby | None = None  # the merge candidates read ahead; None: a query per incident
    # the ids of the sightings this batch makes (one per incident not received before), taken ahead,
    # and those sightings' rows, inserted together when the batch ends
    sighting_ids: list[int] = field(default_factory=list)
    sightings: list[dict[str, Any]] = field(default_factory=list)
    # the incidents sure to open a case (_sure_new), those cases' ids on PostgreSQL (taken ahead, in
    # that order; SQLite's follow on as any case's), and their rows, inserted together when the batch
    # ends (or before an incident of the batch needs one)
    sure_new: set[str] = field(default_factory=set)
    case_ids: list[int] = field(default_factory=list)
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    # PostgreSQL: the sightings added to cases read ahead, by case id (one each: a second sighting of
    # the same case writes the first one's first), with the cases returned to their callers; all
    # written by one UPDATE when the batch ends (_flush_sightings), at the time `now`
    deferred: dict[int, tuple[dict[str, Any], Case]] = field(default_factory=dict)
    now: datetime | None = None


_BATCH_KEY = "gridpatrol_ingest_batch"


@contextmanager
def batched(
    session: Session,
    *,
    incident_ids: list[str] | None = None,
    incidents: list[IncidentIn] | None = None,
    policy: MergePolicy | None = None,
    locks_held: bool = False,
) -> Iterator[None]:
    """Ingest several incidents in this session's transaction with fewer statements: each incident
    is decided as `ingest` always does (so the next one sees its case), while the rows nothing reads
    back are written together at the end of the block: the cases it is sure to open (_sure_new),
    sightings, evidence rows and events, and last the custody entries and the ledger head
    (custody.batched), the last lock the transaction takes. `incident_ids`: the ids about to be
    ingested, looked up in one query instead of one each (an id another process inserts meanwhile
    still meets the unique index: the caller's error, IntegrityError). `incidents` (with the merge
    `policy`): the incidents about to be ingested; on PostgreSQL their ingest locks (_lock_keys) are
    taken here, in one statement and one order, before any case row or the custody ledger's head:
    two writers, or a writer and a single ingest, then wait for each other instead of deadlocking
    (`locks_held`: the caller holds them already, _try_locks). Their merge candidates (_Nearby)
    and cameras' fixed places are then read in one query each. The caller commits after the block,
    or rolls back on an error."""
    batch = _Batch()
    conn = session.connection()
    if incidents and policy is not None and conn.dialect.name == "postgresql":
        if not locks_held:
            _take_locks(conn, incidents, policy)
        batch.locked.update(inc.id for inc in incidents)
    if incident_ids:
        rows = conn.execute(_FIND_SIGHTINGS, {"incident_ids": sorted(set(incident_ids))})
        batch.received = {
            row.incident_id: (row.id, row.case_id, row.incident_json, row.camera_id) for row in rows
        }
    if incidents and policy is not None and batch.received is not None:
        batch.sighting_ids = _take_sighting_ids(
            conn, len({inc.id for inc in incidents} - set(batch.received))
        )
    if incidents and policy is not None:
        batch.nearby = _Nearby.read(conn, incidents, policy)
        if batch.nearby is not None and batch.received is not None:
            sure = _sure_new(incidents, set(batch.received), batch.nearby, policy)
            batch.sure_new = set(sure)
            if conn.dialect.name == "postgresql":
                batch.case_ids = _take_case_ids(conn, len(sure))
        cameras = sorted({inc.camera_id for inc in incidents if inc.camera_id is not None})
        if cameras:
            batch.places = dict.fromkeys(cameras)
            for row in conn.execute(_CAMERA_PLACES, {"camera_ids": cameras}):
                if row.grid_cell_id is not None or row.team is not None:
                    batch.places[row.id] = _FixedPlace(row.grid_cell_id, row.team)
    session.info[_BATCH_KEY] = batch
    with custody.batched(session):  # its entries and the ledger head are written when it ends, last
        try:
            yield
        finally:
            session.info.pop(_BATCH_KEY, None)
        conn = session.connection()
        _flush_cases(conn, batch)  # before the sightings, events and custody entries that name them
        _flush_sightings(conn, batch)  # takes the cases' row locks before custody reads their chains
        if batch.sightings:  # before the evidence links that name them
            conn.execute(_INSERT_SIGHTINGS, batch.sightings)
        if batch.blobs:
            insert_blob = _INSERT_BLOB_PG if conn.dialect.name == "postgresql" else _INSERT_BLOB_SQLITE
            conn.execute(insert_blob, list(batch.blobs.values()))
        if batch.links:
            conn.execute(_INSERT_LINK, batch.links)
        if batch.events:
            conn.execute(_INSERT_EVENT, batch.events)


def _current_case(session: Session, case_id: int) -> Case:
    """The case as the database now has it: ingest writes cases with Core statements, so a copy the
    session loaded earlier may be stale."""
    case = session.get(Case, case_id, populate_existing=True)
    assert case is not None  # a sighting's case (a foreign key)
    return case


def find_received(
    session: Session, *, incident_id: str, sent: IncidentIn | None = None
) -> IngestResult | None:
    """The first sighting of an incident id already received (as a duplicate), or None;
    IncidentConflict when `sent`, the incident sent again, differs from what was received first."""
    row = session.connection().execute(_FIND_SIGHTING, {"incident_id": incident_id}).first()
    if row is None:
        return None
    if sent is not None:
        check_same(sent, row.incident_json, row.camera_id, stored_as=f"sighting {row.id}")
    return IngestResult(_current_case(session, row.case_id), row.id, False, True, False)


def incident_json_text(raw: dict[str, Any]) -> str:
    """An incident's JSON as a sighting or chalk mark stores it."""
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False, default=str)


def check_same(inc: IncidentIn, stored_json: str, stored_camera_id: str | None, *, stored_as: str) -> None:
    """IncidentConflict naming what differs when an incident id received before (its stored JSON and
    the camera it was filed for) comes again with other content; a retry of the same passes. A stored
    JSON that cannot be read (damaged outside the service: no JSON object) proves no conflict: the
    resend is taken as the retry it most likely is (a warning names `stored_as`, the sighting or chalk
    mark, and the stored row is left as it is); only its camera is compared then."""
    if incident_json_text(inc.raw) == stored_json and inc.camera_id == stored_camera_id:
        return  # the same bytes: the usual retry, without reading either JSON
    try:
        first = json.loads(stored_json)
    except json.JSONDecodeError:
        first = None
    if isinstance(first, dict):
        changed = changed_fields(first, inc.raw)
    else:
        log.warning(
            "incident %s: the stored JSON of its %s cannot be read (not a JSON object); the incident "
            "sent again is answered as a retry, compared by its camera only, and the row is left as it is",
            inc.id,
            stored_as,
        )
        changed = []
    if inc.camera_id != stored_camera_id and "camera_id" not in changed:
        changed.append("camera_id")  # the sending device's camera (it wins over source_id)
    if changed:
        raise IncidentConflict(inc.id, changed)


def ingest(
    session: Session,
    inc: IncidentIn,
    *,
    grid: GridIndex,
    policy: MergePolicy,
    actor: Principal,
    job_id: int | None = None,
) -> IngestResult:
    """Record an incident as a new case or a sighting of an existing one; commits nothing itself.

    The hot path (one new case or sighting per incident) uses Core statements on the session's
    connection: the ORM's unit of work and its execute path cost more than the database does here.
    """
    if inc.suspected:  # a caller's bug: file_committed routes these to api.cases.chalking
        raise ValueError(f"incident {inc.id} is suspected: it is chalked, not ingested as a case")
    conn = session.connection()
    postgresql = conn.dialect.name == "postgresql"
    batch: _Batch | None = session.info.get(_BATCH_KEY)
    if postgresql and (batch is None or inc.id not in batch.locked):
        # two sightings of one violation arriving together cannot both open a case (_lock_keys;
        # SQLite serialises all writers anyway); held until commit
        _take_locks(conn, [inc], policy)
        if batch is not None:
            batch.locked.add(inc.id)
    if batch is not None and batch.received is not None:
        known = batch.received.get(inc.id)
        existing = None
        if known is not None:
            check_same(
                inc, known[2], known[3], stored_as=f"sighting {known[0]}"
            )  # before anything is written
            if known[1] in batch.pending:
                _flush_cases(conn, batch)
            if known[1] in batch.deferred:
                _flush_sightings(conn, batch)
            existing = IngestResult(_current_case(session, known[1]), known[0], False, True, False)
    else:
        existing = find_received(session, incident_id=inc.id, sent=inc)
    if existing is not None:
        return existing
    now = utcnow()
    evidence_detail = [{"role": r, "sha256": s.sha256} for r, s in inc.evidence]
    candidate = _best_candidate(session, inc, policy, job_id)
    if candidate is not None and batch is not None and candidate.id in batch.pending:
        _flush_cases(conn, batch)  # a case this batch opened, not written yet
    deferrable = batch is not None and batch.nearby is not None and batch.received is not None
    defer = postgresql and deferrable and candidate is not None and candidate.status != workflow.CLOSED
    locked = None
    if candidate is not None and not defer:  # at once; a closed case: its history decides (_reopens)
        chosen = _lock_chosen(session, inc, policy, job_id, candidate)
        candidate, locked = (None, None) if chosen is None else chosen
    case: Case | None = None
    created = recurrence = before_close = False
    events: list[dict[str, Any]] = []
    after: Candidate | None = None  # the case as the batch's next incidents see it, when deferred
    if candidate is not None:
        if locked is None:  # deferred: `assumed` in its UPDATE stands for the row lock (_add_sightings_pg)
            assert batch is not None
            if candidate.id in batch.deferred:
                _flush_sightings(conn, batch)
            was, case, after = _defer_sighting(batch, candidate, inc, policy, now)
        else:
            was, case = _add_sighting(conn, candidate.id, locked, inc, policy, now)
        before_close = was == workflow.CLOSED and case.status == workflow.CLOSED
        if before_close:  # seen by the time it was closed (_reopens): evidence, the case stays closed
            events.append(
                {
                    "action": "seen_before_close",
                    "from_status": None,
                    "to_status": None,
                    "reason": None,
                    "note": seen_before_close_note(inc.id),
                }
            )
        elif was == workflow.CLOSED:
            recurrence = True
            events.append(
                {
                    "action": "reopened",
                    "from_status": workflow.CLOSED,
                    "to_status": workflow.PENDING_REVIEW,
                    "reason": "recurrence",
                    "note": reopened_note(inc.id),
                }
            )
        case_id = case.id
    else:
        created = True
        cell = grid.lookup(inc.lat, inc.lon)
        if batch is None:
            fixed = _fixed_place(conn, inc.camera_id)
        elif inc.camera_id is None:
            fixed = None
        elif inc.camera_id in batch.places:
            fixed = batch.places[inc.camera_id]
        else:
            fixed = batch.places[inc.camera_id] = _fixed_place(conn, inc.camera_id)
        if fixed is not None:  # a registered camera's own cell and team (api.cameras) win
            cell = Assignment(fixed.grid_cell_id or cell.cell_id, fixed.team or cell.team)
        deferred = batch is not None and inc.id in batch.sure_new  # its row written when the batch ends
        if deferred and postgresql:  # its id taken ahead
            assert batch is not None
            case_id = batch.case_ids.pop(0)
        elif postgresql:  # the id (the table's sequence) and the number come back from the INSERT
            case_id = 0
        elif batch is None:
            case_id = _next_case_id(conn)
        else:  # SQLite: this transaction holds the write lock; ids follow on from the first
            case_id = batch.next_case_id or _next_case_id(conn)
            batch.next_case_id = case_id + 1
        case_row = {
            "id": case_id,
            "number": None,
            "category": inc.category,
            "status": workflow.PENDING_REVIEW,
            "grid_cell_id": cell.cell_id,
            "team": cell.team,
            "lat": inc.lat,
            "lon": inc.lon,
            "merge_lat": inc.lat,
            "merge_lon": inc.lon,
            "merge_bucket": None if inc.lat is None or inc.lon is None else bucket_of(inc.lat, inc.lon),
            "plate": inc.plate,
            "camera_id": inc.camera_id,
            "device_id": actor.device_id,
            "first_seen": inc.first_seen,
            "last_seen": inc.seen_at,
            "sightings_count": 1,
            "recurrence_count": 0,
            "reject_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        if deferred:
            assert batch is not None
            case_row["number"] = case_number_of(case_id, inc.first_seen)
            batch.pending[case_id] = case_row
        elif postgresql:
            prefix = f"GP-{inc.first_seen.year}-"
            row = conn.execute(_INSERT_CASE_PG, dict(case_row, number_prefix=prefix)).one()
            case_id, case_row["id"], case_row["number"] = row.id, row.id, row.number
        else:
            case_row["number"] = case_number_of(case_id, inc.first_seen)
            conn.execute(_INSERT_CASE, case_row)
        events.append(
            {
                "action": "created",
                "from_status": None,
                "to_status": workflow.PENDING_REVIEW,
                "reason": None,
                "note": created_note(inc.id),
            }
        )
    if events:
        event_rows = [dict(e, case_id=case_id, at=now, actor=actor.label) for e in events]
        if batch is None:
            conn.execute(_INSERT_EVENT, event_rows)
        else:
            batch.events += event_rows
    sighting = {
        "case_id": case_id,
        "incident_id": inc.id,
        "seen_at": inc.seen_at,
        "lat": inc.lat,
        "lon": inc.lon,
        "plate": inc.plate,
        "camera_id": inc.camera_id,
        "device_id": actor.device_id,
        "job_id": job_id,
        "incident_json": incident_json_text(inc.raw),
        "recurrence": recurrence,
        "created_at": now,
    }
    if batch is not None and batch.sighting_ids:  # its id taken ahead; the row written when the batch ends
        sighting_id = sighting["id"] = batch.sighting_ids.pop(0)
        batch.sightings.append(sighting)
    else:
        sighting_id = conn.execute(_INSERT_SIGHTING, sighting).scalar_one()
    if batch is not None and batch.received is not None:
        batch.received[inc.id] = (int(sighting_id), case_id, str(sighting["incident_json"]), inc.camera_id)
    link_evidence(session, case_id, sighting_id, inc.evidence)
    detail: dict[str, Any] = {
        "incident_id": inc.id,
        "evidence": evidence_detail,
        "recurrence": recurrence,
        "sighting": {"id": int(sighting_id), "sha256": custody.sighting_digest(sighting)},
    }
    if before_close:  # its history event (api.cases.audit replays it)
        detail["before_close"] = True
    if created:  # the case's first state, which api.cases.audit replays the later entries on
        detail["case"] = {k: case_row[k] for k in custody.CASE_FACTS}
    custody.append(
        session,
        case_id=case_id,
        actor=actor.label,
        action="case_created" if created else "sighting_added",
        detail=detail,
        new_chain=created,
    )
    if created:
        # the row as inserted, detached (no SELECT back): callers read it, never change it
        case = Case(**case_row)
    if after is not None:
        assert batch is not None and batch.nearby is not None
        batch.nearby.put(after)
    elif batch is not None and batch.nearby is not None:  # the next incidents of the batch see it
        assert case is not None
        batch.nearby.put(
            Candidate(
                case_id,
                case.category,
                case.status,
                case.last_seen,
                case.merge_lat,
                case.merge_lon,
                case.plate,
                case.camera_id,
            )
        )
    assert case is not None
    return IngestResult(case, int(sighting_id), created, False, recurrence, before_close)


_CAMERA_PLACE = select(Camera.grid_cell_id, Camera.team).where(Camera.id == bindparam("camera_id"))
_CAMERA_PLACES = select(Camera.id, Camera.grid_cell_id, Camera.team).where(
    Camera.id.in_(bindparam("camera_ids", expanding=True))
)


@dataclass(frozen=True, slots=True)
class _FixedPlace:
    grid_cell_id: str | None
    team: str | None


def _fixed_place(conn: Connection, camera_id: str | None) -> _FixedPlace | None:
    """The fixed grid cell and team a registered camera files its cases in (api.cameras), if any."""
    if camera_id is None:
        return None
    row = conn.execute(_CAMERA_PLACE, {"camera_id": camera_id}).first()
    if row is None or (row.grid_cell_id is None and row.team is None):
        return None
    return _FixedPlace(row.grid_cell_id, row.team)


def _check_runner_camera(read_factory: sessionmaker[Session], camera_id: str) -> None:
    """A runner posts only for cameras in the registry (api.cameras)."""
    with read_factory() as session:
        known = session.scalar(select(Camera.id).where(Camera.id == camera_id))
    if known is None:
        raise IncidentInputError(
            "incident.source_id",
            f"no registered camera '{camera_id}' (a runner posts for the registry's cameras)",
        )


def committed(factory: sessionmaker[Session], write: Callable[[Session], T]) -> T:
    """write(session) in its own transaction, committed; a concurrent insert of the same incident id
    (an IntegrityError) is tried again, up to three times, so that the retry finds the winner's row."""
    for attempt in range(3):
        session = factory()
        try:
            result = write(session)
            session.commit()
            return result
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
        finally:
            session.close()
    raise AssertionError("unreachable")


def ingest_committed(
    factory: sessionmaker[Session],
    inc: IncidentIn,
    *,
    grid_cache: GridCache,
    policy: MergePolicy,
    actor: Principal,
    job_id: int | None = None,
) -> IngestResult:
    """ingest() in its own transaction; a concurrent insert of the same incident id returns the winner."""
    return committed(
        factory,
        lambda session: ingest(
            session, inc, grid=grid_cache.get(session), policy=policy, actor=actor, job_id=job_id
        ),
    )


def file_committed(
    factory: sessionmaker[Session],
    inc: IncidentIn,
    *,
    grid_cache: GridCache,
    policy: MergePolicy,
    chalk_policy: ChalkPolicy,
    actor: Principal,
    job_id: int | None = None,
) -> IngestResult | ChalkResult:
    """An incident filed in its own transaction, whichever path brought it: a suspected one (a single
    pass of a parked vehicle) chalked (api.cases.chalking: a mark, or the confirmed incident of two
    passes ingested), any other ingested (ingest_committed)."""
    if inc.suspected:
        from api.cases.chalking import chalk_committed  # chalking builds on this module

        return chalk_committed(
            factory,
            inc,
            grid_cache=grid_cache,
            policy=policy,
            chalk_policy=chalk_policy,
            actor=actor,
            job_id=job_id,
        )
    return ingest_committed(factory, inc, grid_cache=grid_cache, policy=policy, actor=actor, job_id=job_id)


def match_evidence(
    payload: IncidentPayload, files: list[tuple[str | None, StoredFile]]
) -> list[tuple[str, StoredFile]]:
    """The stored files as the incident's evidence list names them: (role, file) in its order. Every
    listed file must have been sent and every sent file listed (IncidentInputError naming which)."""
    stored = {item.sha256: item for _, item in files}
    evidence: list[tuple[str, StoredFile]] = []
    for index, entry in enumerate(payload.evidence):
        match = stored.get(entry.sha256)
        if match is None:
            raise IncidentInputError(
                f"incident.evidence[{index}]",
                f"no uploaded file has SHA-256 {entry.sha256} ({entry.role} {entry.path})",
            )
        evidence.append((entry.role, match))
    listed = {e.sha256 for e in payload.evidence}
    extra = [sha for sha in stored if sha not in listed]
    if extra:
        raise IncidentInputError("files", f"file with SHA-256 {extra[0]} is not listed in incident.evidence")
    return evidence


def remove_refused_evidence(
    read_factory: sessionmaker[Session],
    store: EvidenceFiles,
    files: Iterable[StoredFile],
    *,
    placed_by: float,
) -> int:
    """Remove again the evidence files that an incident refused with a 4xx (a file not listed, an
    incident conflicting with the one first sent under its id, a camera the runner may not post for...)
    put into the store, so that a refusal leaves no file no case references; how many were removed.

    Only a file new to the store with this request (`created`) is removed, and only when no evidence
    row names it (the store is content-addressed: another case, sighting or chalk mark may share the
    bytes) and no other request claimed it since `placed_by` (Unix seconds, when this request's files
    were all placed): a put of the same bytes makes the file younger, and its request may be about to
    reference it. The file is moved aside while its rows are read (EvidenceFiles.delete_entry), so a
    put meanwhile files a copy of its own. One whose rows or file cannot be read now (the database or
    the store not answering) is kept and logged: `gridpatrol evidence orphans` finds it later."""
    removed = 0
    for sha256 in dict.fromkeys(f.sha256 for f in files if f.created):

        def unreferenced(sha256: str = sha256) -> bool:
            with read_factory() as session:
                named = select(EvidenceBlob.sha256).where(EvidenceBlob.sha256 == sha256).limit(1)
                return session.scalar(named) is None

        entry = StoreEntry(sha256, store.describe(sha256), placed_by)
        try:
            # a file written by the time placed_by is at least this old; one claimed since, younger
            gone = store.delete_entry(entry, min_age_s=time.time() - placed_by, if_orphan=unreferenced)
        except (SQLAlchemyError, OSError, ServiceFault) as exc:
            log.warning("evidence %s of a refused incident kept: %s", entry.where, exc)
            continue
        if gone:
            removed += 1
            log.info("evidence %s of a refused incident removed from the evidence store", sha256[:12])
    return removed


def prepare_payload(
    read_factory: sessionmaker[Session],
    *,
    payload: IncidentPayload,
    files: list[tuple[str | None, StoredFile]],
    actor: Principal,
) -> IncidentIn | IngestResult | ChalkResult:
    """An incident as a device sends it (POST /api/incidents), its evidence files already stored,
    matched to its evidence list: the IncidentIn to ingest (or, suspected, to chalk), or the first
    answer again for a retry without its files of an incident already received (IncidentConflict when
    its content is not the first's). A runner posts only
    for registered cameras; the device's camera wins over the incident's own source id. Reads the
    database only for those two cases (`needs_lookup`)."""
    if actor.role == RUNNER_ROLE:
        _check_runner_camera(read_factory, payload.source_id)
    if not files and payload.evidence:  # a retry without its files: nothing to store
        sent = IncidentIn.from_payload(payload, evidence=[], camera_id=actor.camera_id)
        with read_factory() as session:
            existing: IngestResult | ChalkResult | None
            if payload.suspected:
                from api.cases.chalking import find_chalked  # chalking builds on this module

                existing = find_chalked(session, incident_id=payload.id, sent=sent)
            else:
                existing = find_received(session, incident_id=payload.id, sent=sent)
        if existing is not None:
            return existing
    return IncidentIn.from_payload(
        payload, evidence=match_evidence(payload, files), camera_id=actor.camera_id
    )


def needs_lookup(
    payload: IncidentPayload, files: list[tuple[str | None, StoredFile]], actor: Principal
) -> bool:
    """Whether prepare_payload reads the database for this incident (else it is pure and quick)."""
    return actor.role == RUNNER_ROLE or (not files and bool(payload.evidence))


def ingest_payload(
    factory: sessionmaker[Session],
    *,
    read_factory: sessionmaker[Session],
    payload: IncidentPayload,
    files: list[tuple[str | None, StoredFile]],
    grid_cache: GridCache,
    policy: MergePolicy,
    chalk_policy: ChalkPolicy,
    actor: Principal,
) -> IngestResult | ChalkResult:
    """prepare_payload, then the incident filed in its own transaction (file_committed: ingested, or
    chalked when suspected)."""
    prepared = prepare_payload(read_factory, payload=payload, files=files, actor=actor)
    if not isinstance(prepared, IncidentIn):
        return prepared
    return file_committed(
        factory, prepared, grid_cache=grid_cache, policy=policy, chalk_policy=chalk_policy, actor=actor
    )


# --- group commit ---------------------------------------------------------------------------------

# faults of the database itself: every incident of a batch would meet them again, alone or not
_DATABASE_FAULTS = (OperationalError, InterfaceError, PoolTimeout, DatabaseBusy)

Outcome = tuple[IngestResult | None, BaseException | None]


@dataclass(slots=True)
class _Pending:
    inc: IncidentIn
    actor: Principal
    job_id: int | None
    loop: asyncio.AbstractEventLoop | None  # the caller's loop, with `future` on it
    future: asyncio.Future[IngestResult] | Future[IngestResult]
    held_back: bool = False  # left for the writer's next batch once already (IngestWriter._write)


_PHASES = ("begin", "ingest", "batch_rows", "commit", "alone", "answer")


@dataclass
class WriterStats:
    """What the writer has done since it was made: incidents, transactions (batches) and the
    seconds spent in each phase of a batch (for benchmarks/api.py's profile). Read without a lock:
    figures for a report, not for decisions."""

    incidents: int = 0
    batches: int = 0
    retried_alone: int = 0
    held_back: int = 0  # incidents left for the next batch: their places were another writer's
    waited: int = 0  # batches that waited for another writer's places
    largest_batch: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_PHASES, 0.0))

    def as_json(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "batches": self.batches,
            "retried_alone": self.retried_alone,
            "held_back": self.held_back,
            "waited": self.waited,
            "largest_batch": self.largest_batch,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


class IngestWriter:
    """Group commit for ingestion: one thread writes the incidents every request of this process
    hands it, as many in one transaction as are waiting (at most `max_batch`), so a burst of
    requests costs one BEGIN and one COMMIT (one fsync on PostgreSQL) instead of one each, and the
    statements of several incidents are sent together (`batched`).

    Each incident keeps its own semantics: it is decided after the ones before it in the batch (a
    second sighting of a case opened earlier in the batch merges into it; the same incident id
    twice is one case, answered as a duplicate the second time), and its caller gets its own
    result. When any incident of a batch fails, the whole transaction is rolled back and each
    incident is written again alone (ingest_committed, its own transaction), so a bad incident
    fails only itself, while a fault of the database (unreachable, locked beyond its timeout) is
    every caller's answer at once, without a retry that would meet it again.

    The thread starts with the first incident and ends after `idle_s` without one. Several
    processes may each have a writer. SQLite's write lock serialises them. On PostgreSQL two writers
    run at once where their incidents are streets apart (the ingest locks, _lock_keys, are per merge
    bucket) and queue only for the custody ledger's head row, taken last, just before the commit,
    so the custody ledger stays one chain. A writer does not wait for the other's places while it
    has other work: it takes its batch's locks without waiting (_try_locks), writes the incidents
    whose places it got, and leaves the others (and those after them that could join their cases)
    for its next batch, first in it; an incident is left once at most (the next batch waits for
    its places), and a batch that got none of its places rolls back and waits for them all, in
    order, as a single ingest does."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        grid_cache: GridCache,
        policy: MergePolicy,
        max_batch: int = 64,
        idle_s: float = 5.0,
    ) -> None:
        self._factory = factory
        self._grid_cache = grid_cache
        self._policy = policy
        self.max_batch = max_batch
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[list[_Pending]] = queue.SimpleQueue()  # a request's incidents
        self._held: list[_Pending] = []  # left by the last batch for the next (writer thread only)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()

    def _put(self, *items: _Pending) -> None:
        with self._lock:
            self._queue.put(list(items))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gridpatrol-ingest-writer", daemon=True
                )
                self._thread.start()

    async def ingest(self, inc: IncidentIn, *, actor: Principal, job_id: int | None = None) -> IngestResult:
        """Ingest in the writer's next batch; the result, or the error this incident met."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._put(_Pending(inc, actor, job_id, loop, future))
        return await future

    async def ingest_many(self, items: list[tuple[IncidentIn, Principal]]) -> list[Outcome]:
        """Several incidents (a batch request's) queued together, so that they share the writer's
        next transactions; each one's result or the error it met, in order."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[IngestResult]] = [loop.create_future() for _ in items]
        self._put(
            *(
                _Pending(inc, actor, None, loop, future)
                for (inc, actor), future in zip(items, futures, strict=True)
            )
        )
        outcomes: list[Outcome] = []
        for future in futures:
            try:
                outcomes.append((await future, None))
            except Exception as exc:  # noqa: BLE001 - handed to the caller with its incident
                outcomes.append((None, exc))
        return outcomes

    def ingest_blocking(
        self, inc: IncidentIn, *, actor: Principal, job_id: int | None = None
    ) -> IngestResult:
        """`ingest` for a caller in a thread: waits for the writer's answer."""
        future: Future[IngestResult] = Future()
        self._put(_Pending(inc, actor, job_id, None, future))
        return future.result()

    def _run(self) -> None:
        while True:
            if self._held:  # left by the last batch: first in this one
                batch, self._held = self._held, []
            else:
                try:
                    first = self._queue.get(timeout=self.idle_s)
                except queue.Empty:
                    with self._lock:
                        if self._queue.empty():
                            self._thread = None
                            self._report()
                            return
                    continue
                batch = list(first)  # a batch request's incidents stay together, even beyond max_batch
            while len(batch) < self.max_batch:
                try:
                    batch += self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                written = self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting forever
                log.exception("the ingest writer failed on a batch of %d", len(batch))
                written = [(None, exc)] * len(batch)
            answered: list[_Pending] = []
            outcomes: list[Outcome] = []
            for item, outcome in zip(batch, written, strict=True):
                if outcome is None:
                    item.held_back = True
                    self._held.append(item)
                else:
                    answered.append(item)
                    outcomes.append(outcome)
            t0 = time.perf_counter()
            _answer(answered, outcomes)
            self.stats.seconds["answer"] += time.perf_counter() - t0

    def _report(self) -> None:
        """Log what the writer did since it last went idle (benchmarks/api.py reads this line)."""
        stats, self.stats = self.stats, WriterStats()
        if stats.incidents:
            log.info("ingest writer idle; since it started: %s", json.dumps(stats.as_json()))

    def _write(self, batch: list[_Pending]) -> list[Outcome | None]:
        """Each incident's outcome, in order; None for one left for the next batch (_places)."""
        stats = self.stats
        stats.batches += 1
        seconds = stats.seconds
        if len(batch) == 1:
            stats.incidents += 1
            stats.largest_batch = max(stats.largest_batch, 1)
            t0 = time.perf_counter()
            outcome = self._alone(batch[0])
            seconds["alone"] += time.perf_counter() - t0
            return [outcome]
        session = self._factory()
        now = batch
        try:
            t0 = time.perf_counter()
            grid = self._grid_cache.get(session)
            conn = session.connection()  # BEGIN (SQLite: the write lock)
            ready = self._places(session, conn, batch)
            if ready is not None:
                now = [item for item, go in zip(batch, ready, strict=True) if go]
            t1 = time.perf_counter()
            results: list[Outcome] = []
            with batched(
                session,
                incident_ids=[item.inc.id for item in now],
                incidents=[item.inc for item in now],
                policy=self._policy,
                locks_held=ready is not None,
            ):
                for item in now:
                    try:
                        result = ingest(
                            session,
                            item.inc,
                            grid=grid,
                            policy=self._policy,
                            actor=item.actor,
                            job_id=item.job_id,
                        )
                    except IncidentConflict as exc:  # refused before any of its rows: the others go on
                        results.append((None, exc))
                    else:
                        results.append((result, None))
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            session.commit()
            t4 = time.perf_counter()
            seconds["begin"] += t1 - t0
            seconds["ingest"] += t2 - t1
            seconds["batch_rows"] += t3 - t2
            seconds["commit"] += t4 - t3
            stats.incidents += len(now)
            stats.largest_batch = max(stats.largest_batch, len(now))
            written = {id(item): outcome for item, outcome in zip(now, results, strict=True)}
            return [written.get(id(item)) for item in batch]
        except _DATABASE_FAULTS as exc:
            _quiet_rollback(session)
            stats.incidents += len(batch)
            return [(None, exc)] * len(batch)
        except Exception as exc:  # one incident's failure: the others are written again alone
            _quiet_rollback(session)
            log.info(
                "a batch of %d incidents failed (%s: %s); writing each alone",
                len(now),
                type(exc).__name__,
                exc,
            )
        finally:
            session.close()
        stats.incidents += len(batch)
        stats.retried_alone += len(batch)
        t0 = time.perf_counter()
        outcomes: list[Outcome | None] = [self._alone(item) for item in batch]
        seconds["alone"] += time.perf_counter() - t0
        return outcomes

    def _places(self, session: Session, conn: Connection, batch: list[_Pending]) -> list[bool] | None:
        """PostgreSQL: which of the batch's incidents to write now, their places' locks taken
        without waiting (_try_locks); the others are left for the next batch. None: write them all,
        `batched` waiting for their locks in order: on SQLite (one writer at a time), and when the
        batch got none of its places, or not those of an incident already left once (then this
        transaction is rolled back first, letting go of the keys it took out of order)."""
        if conn.dialect.name != "postgresql":
            return None
        ready = _try_locks(conn, [item.inc for item in batch], self._policy)
        if all(ready):
            return ready
        if any(ready) and all(go for item, go in zip(batch, ready, strict=True) if item.held_back):
            self.stats.held_back += ready.count(False)
            return ready
        session.rollback()
        self.stats.waited += 1
        return None

    def _alone(self, item: _Pending) -> Outcome:
        try:
            result = ingest_committed(
                self._factory,
                item.inc,
                grid_cache=self._grid_cache,
                policy=self._policy,
                actor=item.actor,
                job_id=item.job_id,
            )
        except Exception as exc:
            return None, exc
        return result, None


def _quiet_rollback(session: Session) -> None:
    try:
        session.rollback()
    except Exception as exc:  # the connection died: the pool replaces it
        log.warning("cannot roll back a failed ingest batch: %s", getattr(exc, "orig", None) or exc)


def _answer(batch: list[_Pending], outcomes: list[Outcome]) -> None:
    """Hand each caller its outcome: one wake-up of each event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[IngestResult], Outcome]]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.loop is None:
            assert isinstance(item.future, Future)
            _settle(item.future, outcome)
        else:
            assert isinstance(item.future, asyncio.Future)
            by_loop.setdefault(item.loop, []).append((item.future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # the loop is closed: nobody waits any more
            log.debug("an event loop closed before its ingest answers")


def _settle(future: asyncio.Future[IngestResult] | Future[IngestResult], outcome: Outcome) -> None:
    if future.cancelled():  # the request went away; what was written stays (a retry is a duplicate)
        return
    result, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future[IngestResult], Outcome]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)
