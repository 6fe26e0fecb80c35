"""Digital chalking: a parked vehicle seen twice, on two passes of patrol cars, becomes a case.

A patrol car drives past a vehicle parked where it may not park; its camera sees it once, for a few
seconds. That single pass proves nothing (the driver may be back in a minute), so the pipeline sends
it as a *suspected* incident (IncidentPayload.suspected) and the service keeps it as a chalk mark,
the way a warden chalks a tyre: operators can see it (GET /api/chalk-marks), but no case is opened.

A later pass, by any car, from any upload or camera, that finds a vehicle at the same ground place
confirms the mark. Two passes match (`matches`) when they are of the same category, their positions
lie within `radius_m` metres of each other, the time between them (their last-seen wall times) is
at least `min_minutes` and at most `max_hours` (an older mark no longer counts: it has expired), and
their plates are equal when both passes read one (a plate read on one side only, or on neither,
leaves the place alone to decide). Passes arriving out of order (a late upload) match the same way.
Among several marks a pass matches, the one with the same plate read wins, then the earliest seen
(the longest stay shown), then the nearest, then the lowest id.

The marks of an upload's superseded runs (`superseded_runs`: footage sent again with a corrected start
time, camera or GPS track, api.jobs.superseding) confirm nothing: the corrected run passes the same
vehicle again under new incident ids, and would otherwise confirm its own earlier run's mark (one pass
taken for two, when the correction shifts the time by at least min_minutes), and the earlier run's
times and positions are the ones the resend corrected. Their open marks are listed as superseded
(as read, not stored: the same test, so from the moment the resend raised the upload's revision), so
that no listing counts them among the open ones; a mark confirmed before the correction stays confirmed
until its case is rejected (as api.jobs.superseding rejects an earlier run's case still under review).

A confirmed mark whose case was rejected since (by an operator: a false positive, a duplicate, not a
violation, exempt; or by the service, as superseded) is listed as rejected, with the case's status and
reason (as read, not stored, like expired and superseded): "confirmed" means its case stands. A case
closed after it was handled, or reopened since, stands: its marks stay confirmed. A rejected mark takes
no part in matching any more (the candidates' query leaves out the marks of a rejected case): it
confirms nothing and is never linked to another case, so a later pass of the vehicle files nothing
from it, but is a mark of its own, open, that the pass after confirms as usual. Otherwise the later
pass confirmed it, and, as merging passes rejected cases by, a new case was filed with the rejected
pass's evidence and the mark moved onto it, reading confirmed again: the operator's decision undone.
Whatever the reason: a false positive or an exempt vehicle is no better evidence the second time; a
duplicate's vehicle is the standing case's, which the vehicle's next confirmed pair joins by the merge
rule; a case the service superseded keeps only the marks the corrected run's pass no longer matched
(one that matches is confirmed again, into the corrected run's case, before the earlier case is
rejected: api.jobs.superseding runs once the job is done).

A match makes a confirmed incident of the passes' category (`confirmed_incident`; a suspected
incident is an illegal_parking one, api.cases.incident): its id derived from both passes' incident
ids (the same pair always gives the same id, whichever arrives first), first seen when the earlier
pass first saw the vehicle, seen at the later pass, at the mean of the two positions, with the
plate read with the higher confidence, and the evidence of both passes, the earlier's first. It is
ingested by api.cases.ingest.ingest like any incident (a new case, or a sighting of the case
api.cases.merge chooses; custody and history as always), and both marks are then confirmed with
that case's id. A third pass of the same vehicle matches again (while the case stands): its
confirmed incident merges into the same case by the merge rule (the mean of two matching pairs that
share a pass lies within `radius_m` of the case's position, so within the merge radius when radius_m
is at most that, as by default: 10 m against 15 m).

Evidence roles: each pass keeps the roles its own incident gave its files; the confirmed incident's
evidence list holds both passes' files, so a role may appear twice in one sighting (the evidence
links allow it, and the custody entry lists every (role, SHA-256) pair). Which pass a file came
from is recorded in the sighting's incident JSON, under "chalk".passes[].evidence, with each pass's
incident id, times, position, plate and the SHA-256 of the incident as the mark stored it; the
custody entry of the sighting hashes that JSON, so the suspected passes are under custody from the
moment they are confirmed. Before that a mark's evidence files are stored as evidence blobs (kept by
`gridpatrol evidence orphans` like any case's) linked to the mark (chalk_evidence); custody entries
belong to cases, and a mark has none yet.

Concurrency: two passes of one vehicle arriving at once must not both miss each other. On PostgreSQL
`chalk` first takes transaction-level advisory locks on the merge buckets (api.cases.merge.bucket_of)
that the radius around the pass meets, in one order: two passes within the radius of each other
share at least one such bucket, so the second waits for the first to commit and then sees its mark.
A pass whose radius meets too many buckets locks its whole category instead, which waits for and
holds off every bucket lock of that category (bucketed passes hold their category's lock shared).
SQLite serialises writers already (api.storage.db begins every write transaction IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import Principal
from api.cases.grids import GridCache, GridIndex
from api.cases.incident import IncidentInputError
from api.cases.ingest import (
    IncidentIn,
    IngestResult,
    check_same,
    committed,
    find_received,
    hold_place_locks,
    incident_json_text,
    ingest,
    place_lock_keys,
)
from api.cases.merge import MergePolicy, bucket_of, distance_m
from api.cases.reading import SEALED_ROLES, EvidenceFile, Position
from api.cases.workflow import REJECTED as CASE_REJECTED
from api.errors import NotFound
from api.storage.db import as_utc, utcnow
from api.storage.db import table_of as _table
from api.storage.evidence_store import EvidenceFiles, StoredFile
from api.storage.models import Case, ChalkEvidence, ChalkMark, EvidenceBlob, Job, Upload

if TYPE_CHECKING:
    from api.settings import Settings

log = logging.getLogger(__name__)

OPEN = "open"
CONFIRMED = "confirmed"
EXPIRED = "expired"  # an open mark seen longer than max_hours ago (as read; not stored)
SUPERSEDED = "superseded"  # an open mark of a superseded run, whatever its age (as read; not stored)
REJECTED = "rejected"  # a confirmed mark whose case was rejected since (as read; not stored)
MARK_STATUSES = (OPEN, CONFIRMED, REJECTED, EXPIRED, SUPERSEDED)
# evidence api.cases.reading seals (the unblurred original): a mark lists it to admins only and never
# serves it; once the mark is confirmed it is the case's, unsealed there (and recorded) by an admin


@dataclass(frozen=True, slots=True)
class ChalkPolicy:
    """radius_m: metres between the two passes' ground positions; min_minutes, max_hours: the least
    and the most time between them (their last-seen wall times)."""

    radius_m: float = 10.0
    min_minutes: float = 15.0
    max_hours: float = 12.0

    @classmethod
    def of(cls, settings: Settings) -> ChalkPolicy:
        return cls(settings.chalk_radius_m, settings.chalk_min_minutes, settings.chalk_max_hours)

    @property
    def min_gap(self) -> timedelta:
        return timedelta(minutes=self.min_minutes)

    @property
    def max_gap(self) -> timedelta:
        return timedelta(hours=self.max_hours)

    def buckets_near(self, lat: float, lon: float) -> list[int] | None:
        """The merge buckets the radius around (lat, lon) meets (None: too many, see MergePolicy)."""
        return MergePolicy(radius_m=self.radius_m).buckets_near(lat, lon)


# --- the rule: pure, over passes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pass:
    """What matching needs of a pass (a chalk mark, or the suspected incident just received).
    seen_at: its last-seen wall time, naive UTC; lat, lon: WGS84 degrees."""

    id: int
    category: str
    seen_at: datetime
    lat: float
    lon: float
    plate: str | None


def matches(new: Pass, mark: Pass, policy: ChalkPolicy) -> bool:
    """Whether two passes are the same vehicle parked on: same category, within radius_m metres,
    min_minutes to max_hours apart (either order), and equal plates when both read one."""
    if new.category != mark.category:
        return False
    gap = abs(new.seen_at - mark.seen_at)
    if gap < policy.min_gap or gap > policy.max_gap:
        return False
    if new.plate is not None and mark.plate is not None and new.plate != mark.plate:
        return False
    return distance_m(new.lat, new.lon, mark.lat, mark.lon) <= policy.radius_m


def choose_mark(new: Pass, marks: Iterable[Pass], policy: ChalkPolicy) -> int | None:
    """The id of the mark a pass confirms, or None: among those it matches, the one with the same
    plate read first, then the earliest seen, then the nearest, then the lowest id."""
    best: tuple[int, datetime, float, int] | None = None
    for mark in marks:
        if mark.id == new.id or not matches(new, mark, policy):
            continue
        same_plate = new.plate is not None and new.plate == mark.plate
        metres = distance_m(new.lat, new.lon, mark.lat, mark.lon)
        rank = (0 if same_plate else 1, mark.seen_at, metres, mark.id)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[3]


def confirmed_id(first_incident_id: str, second_incident_id: str) -> str:
    """The confirmed incident's id: the same for the same two passes, whichever arrived first."""
    pair = "\n".join(sorted((first_incident_id, second_incident_id)))
    return "chalk-" + hashlib.sha256(pair.encode()).hexdigest()[:40]


# --- what chalking answers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChalkResult:
    """What became of a suspected incident: its chalk mark (`duplicate`: the incident id was received
    before, this is the first answer again), and `confirmed`, the ingest of the confirmed incident
    when this pass confirmed an earlier one (None: a mark alone, no case)."""

    mark_id: int
    duplicate: bool
    confirmed: IngestResult | None = None


# --- storing and confirming ------------------------------------------------------------------------

_MARKS = _table(ChalkMark)
_EVIDENCE = _table(ChalkEvidence)
_BLOBS = _table(EvidenceBlob)
_CASES = _table(Case)
_FIND_MARK = select(_MARKS).where(_MARKS.c.incident_id == bindparam("incident_id"))
_CANDIDATES = select(
    _MARKS.c.id,
    _MARKS.c.category,
    _MARKS.c.seen_at,
    _MARKS.c.lat,
    _MARKS.c.lon,
    _MARKS.c.plate,
    _MARKS.c.job_id,
).where(
    _MARKS.c.category == bindparam("category"),
    _MARKS.c.seen_at >= bindparam("seen_lo"),
    _MARKS.c.seen_at <= bindparam("seen_hi"),
    _MARKS.c.lat.between(bindparam("lat_lo"), bindparam("lat_hi")),
    _MARKS.c.lon.between(bindparam("lon_lo"), bindparam("lon_hi")),
    # a mark whose case was rejected takes no part (EXISTS by the case's key; an open mark has none)
    ~select(_CASES.c.id).where(_CASES.c.id == _MARKS.c.case_id, _CASES.c.status == CASE_REJECTED).exists(),
)
_INSERT_MARK = insert(_MARKS).returning(_MARKS.c.id)
_INSERT_EVIDENCE = insert(_EVIDENCE)
_INSERT_BLOB_SQLITE = sqlite_insert(_BLOBS).on_conflict_do_nothing(index_elements=["sha256"])
_INSERT_BLOB_PG = pg_insert(_BLOBS).on_conflict_do_nothing(index_elements=["sha256"])
_MARK_EVIDENCE = (
    select(_EVIDENCE.c.role, _BLOBS.c.sha256, _BLOBS.c.size, _BLOBS.c.media_type)
    .join(_BLOBS, _BLOBS.c.sha256 == _EVIDENCE.c.sha256)
    .where(_EVIDENCE.c.mark_id == bindparam("mark_id"))
    .order_by(_EVIDENCE.c.id)
)


def _candidates(buckets: list[int] | None) -> Select:
    """The marks near a pass: the box around it, narrowed to its buckets (through ix_chalk_marks_bucket)."""
    return _CANDIDATES if buckets is None else _CANDIDATES.where(_MARKS.c.bucket.in_(buckets))


# the jobs that are superseded runs: queued for a lower revision of their upload than the upload's now
_SUPERSEDED_JOBS = (
    select(Job.id).join(Upload, Upload.id == Job.upload_id).where(Job.revision < Upload.revision)
)


def superseded_runs(conn: Connection, job_ids: set[int]) -> set[int]:
    """Of these jobs, the superseded runs: each ran for a lower revision of its upload than the upload's
    now (a resend corrected it since; the test api.cases.ingest.earlier_runs_cases makes). Their chalk
    marks hold the times and positions the resend corrected (and a corrected run is the same pass
    again, under new incident ids), so they confirm nothing, neither with the corrected run's passes (a
    case of one pass seen "twice") nor with anyone else's; the corrected run's marks stand for them. A
    plain retry of a failed run keeps its revision: the failed attempt's marks are the retry's own."""
    if not job_ids:
        return set()
    return set(conn.scalars(_SUPERSEDED_JOBS.where(Job.id.in_(sorted(job_ids)))))


def _lock_place(session: Session, category: str, buckets: list[int] | None) -> None:
    """PostgreSQL: hold (until commit) the chalk locks of these buckets (the category's shared), or
    of the whole category exclusively when the radius meets too many (api.cases.ingest's
    place_lock_keys: the two kinds meet); SQLite's writers are serialised already."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    hold_place_locks(conn, place_lock_keys("gridpatrol-chalk", category, buckets))


def chalk(
    session: Session,
    inc: IncidentIn,
    *,
    grid: GridIndex,
    policy: MergePolicy,
    chalk_policy: ChalkPolicy,
    actor: Principal,
    job_id: int | None = None,
) -> ChalkResult:
    """Keep a suspected incident as a chalk mark and, when it matches an earlier mark (see the
    module's docstring), ingest the confirmed incident of the two; commits nothing itself. The same
    incident id again returns the first answer (IncidentConflict when its content is not the first
    mark's). IncidentInputError when the incident has no position
    (a mark is found again by its place)."""
    if inc.lat is None or inc.lon is None:
        raise IncidentInputError(
            "incident.position", "a suspected sighting needs the parked vehicle's ground position (lat, lon)"
        )
    buckets = chalk_policy.buckets_near(inc.lat, inc.lon)
    _lock_place(session, inc.category, buckets)
    conn = session.connection()
    known = conn.execute(_FIND_MARK, {"incident_id": inc.id}).first()
    if known is not None:
        check_same(inc, known.incident_json, known.camera_id, stored_as=f"chalk mark {known.id}")
        return _answer_again(session, known)
    now = utcnow()
    plate_confidence = inc.raw.get("plate_confidence") if inc.plate is not None else None
    mark_row = {
        "incident_id": inc.id,
        "category": inc.category,
        "object_kind": str(inc.raw.get("object_kind") or "") or None,
        "camera_id": inc.camera_id,
        "device_id": actor.device_id,
        "job_id": job_id,
        "first_seen": inc.first_seen,
        "seen_at": inc.seen_at,
        "lat": inc.lat,
        "lon": inc.lon,
        "bucket": bucket_of(inc.lat, inc.lon),
        "plate": inc.plate,
        "plate_confidence": plate_confidence,
        "incident_json": incident_json_text(inc.raw),
        "status": OPEN,
        "case_id": None,
        "confirmed_as": None,
        "confirmed_at": None,
        "created_at": now,
    }
    dlat, dlon = MergePolicy(radius_m=chalk_policy.radius_m).box_deg(inc.lat)
    rows = conn.execute(
        _candidates(buckets),
        {
            "category": inc.category,
            "seen_lo": inc.seen_at - chalk_policy.max_gap,
            "seen_hi": inc.seen_at + chalk_policy.max_gap,
            "lat_lo": inc.lat - dlat,
            "lat_hi": inc.lat + dlat,
            "lon_lo": inc.lon - dlon,
            "lon_hi": inc.lon + dlon,
        },
    )
    marks = list(rows)
    stale = superseded_runs(conn, {row.job_id for row in marks if row.job_id is not None})
    new = Pass(0, inc.category, inc.seen_at, inc.lat, inc.lon, inc.plate)
    chosen = choose_mark(new, (Pass(*row[:6]) for row in marks if row.job_id not in stale), chalk_policy)
    mark_id = int(conn.execute(_INSERT_MARK, mark_row).scalar_one())
    _store_evidence(session, mark_id, inc.evidence, now)
    if chosen is None:
        log.debug("incident %s: chalk mark %d, nothing to confirm", inc.id, mark_id)
        return ChalkResult(mark_id, False, None)
    earlier_row = conn.execute(select(_MARKS).where(_MARKS.c.id == chosen)).one()
    later_row = conn.execute(select(_MARKS).where(_MARKS.c.id == mark_id)).one()
    if earlier_row.seen_at > later_row.seen_at:  # a late upload of the earlier pass
        earlier_row, later_row = later_row, earlier_row
    confirmed = confirmed_incident(
        earlier_row._mapping,
        later_row._mapping,
        earlier_evidence=_evidence_of(session, earlier_row.id),
        later_evidence=_evidence_of(session, later_row.id),
        chalk_policy=chalk_policy,
    )
    result = ingest(session, confirmed, grid=grid, policy=policy, actor=actor, job_id=job_id)
    conn.execute(
        update(_MARKS)
        .where(_MARKS.c.id.in_([chosen, mark_id]))
        .values(status=CONFIRMED, case_id=result.case_id, confirmed_at=now)
    )
    conn.execute(update(_MARKS).where(_MARKS.c.id == mark_id).values(confirmed_as=confirmed.id))
    log.info("incident %s confirms chalk mark %d: case %s", inc.id, chosen, result.case_number)
    return ChalkResult(mark_id, False, result)


def _answer_again(session: Session, mark: Any) -> ChalkResult:
    """The first answer to a suspected incident received before: its mark, and the confirmed
    incident's ingest (as a duplicate) when its arrival confirmed an earlier mark."""
    confirmed = None
    if mark.confirmed_as is not None:
        confirmed = find_received(session, incident_id=mark.confirmed_as)
    return ChalkResult(int(mark.id), True, confirmed)


def _store_evidence(
    session: Session, mark_id: int, evidence: list[tuple[str, StoredFile]], now: datetime
) -> None:
    """The mark's files as evidence blobs (once per SHA-256, as case evidence) linked to the mark."""
    if not evidence:
        return
    conn = session.connection()
    blobs = {
        stored.sha256: {
            "sha256": stored.sha256,
            "size": stored.size,
            "media_type": stored.media_type,
            "created_at": now,
        }
        for _, stored in evidence
    }
    insert_blob = _INSERT_BLOB_PG if conn.dialect.name == "postgresql" else _INSERT_BLOB_SQLITE
    conn.execute(insert_blob, list(blobs.values()))
    conn.execute(
        _INSERT_EVIDENCE,
        [{"mark_id": mark_id, "sha256": stored.sha256, "role": role} for role, stored in evidence],
    )


def _evidence_of(session: Session, mark_id: int) -> list[tuple[str, StoredFile]]:
    rows = session.connection().execute(_MARK_EVIDENCE, {"mark_id": mark_id})
    return [(row.role, StoredFile(row.sha256, int(row.size), row.media_type)) for row in rows]


def _raw_of(mark: Any) -> dict[str, Any]:
    try:
        data = json.loads(mark["incident_json"])
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _pass_record(mark: Any, evidence: list[tuple[str, StoredFile]]) -> dict[str, Any]:
    """One pass as the confirmed incident's JSON records it (hashed into the sighting's custody entry)."""
    return {
        "mark": int(mark["id"]),
        "incident_id": mark["incident_id"],
        "incident_sha256": hashlib.sha256(mark["incident_json"].encode()).hexdigest(),
        "first_seen": mark["first_seen"].isoformat() + "Z",
        "seen_at": mark["seen_at"].isoformat() + "Z",
        "position": [mark["lat"], mark["lon"]],
        "plate": mark["plate"],
        "plate_confidence": mark["plate_confidence"],
        "camera_id": mark["camera_id"],
        "device_id": mark["device_id"],
        "job_id": mark["job_id"],
        "evidence": [{"role": role, "sha256": stored.sha256} for role, stored in evidence],
    }


def confirmed_incident(
    earlier: Any,
    later: Any,
    *,
    earlier_evidence: list[tuple[str, StoredFile]],
    later_evidence: list[tuple[str, StoredFile]],
    chalk_policy: ChalkPolicy,
) -> IncidentIn:
    """The illegal_parking incident two matching passes (chalk mark rows, by column name, the earlier
    seen first) confirm: see the module's docstring. Its JSON is the later pass's incident with the
    times, position, plate and evidence of both, and a "chalk" record of the two passes."""
    lat = (earlier["lat"] + later["lat"]) / 2
    lon = (earlier["lon"] + later["lon"]) / 2
    reads = [m for m in (later, earlier) if m["plate"] is not None]
    best_read = max(reads, key=lambda m: m["plate_confidence"] or 0.0) if reads else None
    plate = best_read["plate"] if best_read is not None else None
    incident_id = confirmed_id(earlier["incident_id"], later["incident_id"])
    first_raw, last_raw = _raw_of(earlier), _raw_of(later)
    raw = dict(last_raw)
    raw.update(
        id=incident_id,
        category=later["category"],
        suspected=False,
        first_seen_wall=first_raw.get("first_seen_wall") or earlier["first_seen"].isoformat() + "Z",
        last_seen_wall=last_raw.get("last_seen_wall") or later["seen_at"].isoformat() + "Z",
        position=[lat, lon],
        plate=plate,
        plate_confidence=best_read["plate_confidence"] if best_read is not None else None,
        evidence=[
            e for data in (first_raw, last_raw) for e in (data.get("evidence") or []) if isinstance(e, dict)
        ],
        chalk={
            "radius_m": chalk_policy.radius_m,
            "min_minutes": chalk_policy.min_minutes,
            "max_hours": chalk_policy.max_hours,
            "distance_m": round(distance_m(earlier["lat"], earlier["lon"], later["lat"], later["lon"]), 2),
            "gap_s": (later["seen_at"] - earlier["seen_at"]).total_seconds(),
            "passes": [_pass_record(earlier, earlier_evidence), _pass_record(later, later_evidence)],
        },
    )
    return IncidentIn(
        id=incident_id,
        category=later["category"],
        seen_at=later["seen_at"],
        first_seen=min(earlier["first_seen"], later["first_seen"]),
        lat=lat,
        lon=lon,
        plate=plate,
        camera_id=later["camera_id"],
        raw=raw,
        evidence=earlier_evidence + later_evidence,
    )


def chalk_committed(
    factory: sessionmaker[Session],
    inc: IncidentIn,
    *,
    grid_cache: GridCache,
    policy: MergePolicy,
    chalk_policy: ChalkPolicy,
    actor: Principal,
    job_id: int | None = None,
) -> ChalkResult:
    """chalk() in its own transaction; a concurrent insert of the same incident id returns the winner's
    answer."""
    return committed(
        factory,
        lambda session: chalk(
            session,
            inc,
            grid=grid_cache.get(session),
            policy=policy,
            chalk_policy=chalk_policy,
            actor=actor,
            job_id=job_id,
        ),
    )


def find_chalked(session: Session, *, incident_id: str, sent: IncidentIn | None = None) -> ChalkResult | None:
    """The first answer to a suspected incident id already received, or None; IncidentConflict when
    `sent`, the incident sent again, differs from what was received first."""
    known = session.connection().execute(_FIND_MARK, {"incident_id": incident_id}).first()
    if known is None:
        return None
    if sent is not None:
        check_same(sent, known.incident_json, known.camera_id, stored_as=f"chalk mark {known.id}")
    return _answer_again(session, known)


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarkEvidence:
    """An evidence file of a mark: served by GET /api/chalk-marks/{mark_id}/evidence/{sha256}."""

    mark_id: int
    role: str
    sha256: str


@dataclass(frozen=True, slots=True)
class MarkView:
    """A chalk mark as GET /api/chalk-marks shows it; times naive UTC. status: open, confirmed,
    rejected (confirmed, and its case rejected since), expired (open, and seen more than max_hours
    ago) or superseded (open, of a superseded run: it confirms nothing, see superseded_runs).
    case_status, case_reject_reason: the linked case's, as it is now (None: no case)."""

    id: int
    incident_id: str
    category: str
    object_kind: str | None
    status: str
    case_id: int | None
    case_number: str | None
    case_status: str | None
    case_reject_reason: str | None
    position: Position
    plate: str | None
    plate_confidence: float | None
    camera_id: str | None
    device_id: int | None
    job_id: int | None
    first_seen: datetime
    seen_at: datetime
    confirmed_at: datetime | None
    created_at: datetime
    evidence: list[MarkEvidence]


@dataclass(frozen=True, slots=True)
class MarkPage:
    total: int
    page: int
    per_page: int
    items: list[MarkView]


@dataclass(frozen=True, slots=True)
class MarkFilter:
    since: datetime | None = None  # seen_at >= since
    until: datetime | None = None  # first_seen <= until
    status: str | None = None  # one of MARK_STATUSES
    plate: str | None = None

    def apply(self, stmt: Select, *, expired_before: datetime) -> Select:
        if self.since is not None:
            stmt = stmt.where(ChalkMark.seen_at >= as_utc(self.since))
        if self.until is not None:
            stmt = stmt.where(ChalkMark.first_seen <= as_utc(self.until))
        # (EXISTS, not IN: a mark of no job, a device's, is of no superseded run)
        of_superseded_run = _SUPERSEDED_JOBS.where(Job.id == ChalkMark.job_id).exists()
        # (a confirmed mark of no case, deleted since, is not rejected: nothing says its case was)
        case_rejected = (
            select(Case.id).where(Case.id == ChalkMark.case_id, Case.status == CASE_REJECTED).exists()
        )
        if self.status == CONFIRMED:
            stmt = stmt.where(ChalkMark.status == CONFIRMED, ~case_rejected)
        elif self.status == REJECTED:
            stmt = stmt.where(ChalkMark.status == CONFIRMED, case_rejected)
        elif self.status == OPEN:
            stmt = stmt.where(
                ChalkMark.status == OPEN, ChalkMark.seen_at >= expired_before, ~of_superseded_run
            )
        elif self.status == EXPIRED:
            stmt = stmt.where(
                ChalkMark.status == OPEN, ChalkMark.seen_at < expired_before, ~of_superseded_run
            )
        elif self.status == SUPERSEDED:
            stmt = stmt.where(ChalkMark.status == OPEN, of_superseded_run)
        if self.plate:
            stmt = stmt.where(ChalkMark.plate == self.plate.strip().upper())
        return stmt


def mark_page(
    session: Session,
    *,
    filters: MarkFilter,
    chalk_policy: ChalkPolicy,
    page: int = 1,
    per_page: int = 50,
    sealed_too: bool = False,
    now: datetime | None = None,
) -> MarkPage:
    """One page of chalk marks matching the filters, latest seen first, with the total; their sealed
    evidence (SEALED_ROLES) listed only when sealed_too (an admin)."""
    expired_before = (now or utcnow()) - chalk_policy.max_gap
    base = filters.apply(select(ChalkMark), expired_before=expired_before)
    total = session.scalar(select(func.count()).select_from(base.with_only_columns(ChalkMark.id).subquery()))
    marks = list(
        session.scalars(
            base.order_by(ChalkMark.seen_at.desc(), ChalkMark.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    ids = [m.id for m in marks]
    stale = superseded_runs(
        session.connection(), {m.job_id for m in marks if m.status == OPEN and m.job_id is not None}
    )
    evidence: dict[int, list[MarkEvidence]] = {}
    cases: dict[int, tuple[str | None, str, str | None]] = {}  # case id -> number, status, reason
    if ids:
        links = (
            select(ChalkEvidence.mark_id, ChalkEvidence.role, ChalkEvidence.sha256)
            .where(ChalkEvidence.mark_id.in_(ids))
            .order_by(ChalkEvidence.id)
        )
        if not sealed_too:
            links = links.where(ChalkEvidence.role.not_in(SEALED_ROLES))
        for mark_id, role, sha in session.execute(links):
            evidence.setdefault(mark_id, []).append(MarkEvidence(mark_id, role, sha))
        case_ids = {m.case_id for m in marks if m.case_id is not None}
        if case_ids:
            found = session.execute(
                select(Case.id, Case.number, Case.status, Case.reject_reason).where(Case.id.in_(case_ids))
            )
            cases = {case_id: (number, status, reason) for case_id, number, status, reason in found}
    items = []
    for m in marks:
        no_case = (None, None, None)
        number, case_status, reason = no_case if m.case_id is None else cases.get(m.case_id, no_case)
        items.append(
            _view(
                m,
                status=_status_as_read(
                    m, expired_before=expired_before, stale=stale, case_status=case_status
                ),
                case_number=number,
                case_status=case_status,
                case_reject_reason=reason,
                evidence=evidence.get(m.id, []),
            )
        )
    return MarkPage(total=int(total or 0), page=page, per_page=per_page, items=items)


def _view(
    m: ChalkMark,
    *,
    status: str,
    case_number: str | None,
    case_status: str | None,
    case_reject_reason: str | None,
    evidence: list[MarkEvidence],
) -> MarkView:
    return MarkView(
        id=m.id,
        incident_id=m.incident_id,
        category=m.category,
        object_kind=m.object_kind,
        status=status,
        case_id=m.case_id,
        case_number=case_number,
        case_status=case_status,
        case_reject_reason=case_reject_reason,
        position=Position(m.lat, m.lon),
        plate=m.plate,
        plate_confidence=m.plate_confidence,
        camera_id=m.camera_id,
        device_id=m.device_id,
        job_id=m.job_id,
        first_seen=m.first_seen,
        seen_at=m.seen_at,
        confirmed_at=m.confirmed_at,
        created_at=m.created_at,
        evidence=evidence,
    )


def _status_as_read(
    mark: ChalkMark, *, expired_before: datetime, stale: set[int], case_status: str | None
) -> str:
    """A mark's status as listed: an open one of a superseded run (its job in `stale`) is superseded
    whatever its age, else expired when seen before `expired_before`; a confirmed one is rejected
    when its case (`case_status`, None: none now) was rejected, else stays confirmed."""
    if mark.status == CONFIRMED:
        return REJECTED if case_status == CASE_REJECTED else CONFIRMED
    if mark.status != OPEN:
        return mark.status
    if mark.job_id in stale:
        return SUPERSEDED
    return EXPIRED if mark.seen_at < expired_before else OPEN


def mark_evidence_file(session: Session, *, mark_id: int, sha256: str, store: EvidenceFiles) -> EvidenceFile:
    """An evidence file of a chalk mark, opened, and its media type; NotFound when the mark has no such
    file (or only sealed: see SEALED_ROLES) or it is missing from the store. Before a mark is confirmed
    its files are linked to no case, so the case evidence route does not serve them."""
    media_type = session.scalar(
        select(EvidenceBlob.media_type)
        .join(ChalkEvidence, ChalkEvidence.sha256 == EvidenceBlob.sha256)
        .where(
            ChalkEvidence.mark_id == mark_id,
            ChalkEvidence.sha256 == sha256,
            ChalkEvidence.role.not_in(SEALED_ROLES),
        )
        .limit(1)
    )
    if media_type is None:
        raise NotFound("sha256", f"chalk mark {mark_id} has no evidence {sha256}")
    content = store.open_content(sha256)
    if content is None:
        missing = f"evidence {sha256} is missing from the store (run gridpatrol evidence verify)"
        raise NotFound("sha256", missing)
    return EvidenceFile(content, media_type)
