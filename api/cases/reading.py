"""Reading cases: filters, visibility by role (enforcement sees its team's cases only), a page of
cases, one case with its sightings, evidence links and history, and the summary every response and
webhook carries. What a reader gets back are the frozen values below (CaseSummary, CaseDetail,
CasePage, EvidenceFile); api.http.schemas gives them their JSON shape.

Sealed evidence (issue 12): an incident's "original" (its best frame before privacy blurring: faces, the
plates of vehicles not involved) is stored, hashed and chained like any evidence, but only admins see it
listed, and no one gets it from the evidence route: an admin fetches it with `unseal_original`, which
records each fetch in the case's custody chain (action "evidence_unsealed").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, selectinload

from api.accounts.accounts import Principal, Role, RoleNotAllowed
from api.cases import custody, workflow
from api.errors import InputError, NotFound
from api.storage.db import as_utc, iso_utc, table_of
from api.storage.evidence_store import EvidenceContent, EvidenceFiles
from api.storage.models import (
    MAX_ID,
    UNASSIGNED,
    Case,
    CaseEvent,
    CustodyEntry,
    EvidenceBlob,
    EvidenceLink,
    Job,
    Sighting,
)

_CASES = table_of(Case)

# a case's number is GP-<year>-<its id, 6 digits at least> (api.cases.ingest.case_number_of), the year
# that of its first sighting when it was filed: footage of last year filed after this year's cases has
# a later id and an earlier number, so number order is the number's year, then the id (its digits;
# the list's last key), never the id alone nor the text (GP-2026-1000000 sorts before GP-2026-999999)
_NUMBER_YEAR = func.substr(_CASES.c.number, 4, 4)

# the list's orders: each its columns of the cases table, then the id
SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "last_seen": (_CASES.c.last_seen,),
    "first_seen": (_CASES.c.first_seen,),
    "created_at": (_CASES.c.created_at,),
    "number": (_NUMBER_YEAR,),
    "sightings": (_CASES.c.sightings_count,),
}


def visible(stmt: Select, principal: Principal) -> Select:
    """Enforcement users see only their team's cases."""
    if principal.role == Role.ENFORCEMENT:
        return stmt.where(Case.team == principal.team)
    return stmt


# the actor label of the service's own moves (an accounts.Principal of kind "worker"): its one move is
# the rejection of a superseded case (workflow.SYSTEM_MOVES, api.jobs.superseding)
SERVICE_ACTOR_PREFIX = "worker:"


def not_superseded() -> ColumnElement[bool]:
    """The case (correlated with Case) is not one the service itself rejected as superseded by a
    corrected resend (api.jobs.superseding): such a case was no finding, and its rejection no review
    decision, so the counts leave it out, the same in the periodic report (api.cases.period_report)
    and in /api/stats (api.cases.stats)."""
    by_service = (
        select(CaseEvent.id)
        .where(
            CaseEvent.case_id == Case.id,
            CaseEvent.to_status == workflow.REJECTED.value,
            CaseEvent.actor.startswith(SERVICE_ACTOR_PREFIX),
        )
        .exists()
    )
    return or_(Case.status != workflow.REJECTED.value, ~by_service)


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: list[str] | None = None
    category: str | None = None
    grid_cell: str | None = None
    team: str | None = None
    since: datetime | None = None  # last_seen >= since
    until: datetime | None = None  # first_seen <= until
    camera: str | None = None
    device_id: int | None = None
    number: str | None = None  # the whole number as stored (number_query)
    plate: str | None = None
    case_id: int | None = None
    first_seen_since: datetime | None = None  # first_seen >= (the days /api/stats counts by)
    first_seen_until: datetime | None = None  # first_seen <= (the same)
    superseded: bool | None = None  # False: leave out what /api/stats leaves out; True: only those
    upload_id: int | None = None  # a sighting filed by a job of this upload (any of its runs)

    def apply(self, stmt: Select) -> Select:
        if self.status:
            stmt = (
                stmt.where(Case.status.in_(self.status))
                if len(self.status) > 1
                else stmt.where(Case.status == self.status[0])
            )
        if self.category:
            stmt = stmt.where(Case.category == self.category)
        if self.grid_cell:
            stmt = stmt.where(Case.grid_cell_id == self.grid_cell)
        if self.team:
            stmt = stmt.where(Case.team == self.team)
        if self.since:
            stmt = stmt.where(Case.last_seen >= as_utc(self.since))
        if self.until:
            stmt = stmt.where(Case.first_seen <= as_utc(self.until))
        if self.camera:
            stmt = stmt.where(Case.camera_id == self.camera)
        if self.device_id is not None:
            stmt = stmt.where(Case.device_id == self.device_id)
        if self.number:
            stmt = stmt.where(Case.number == self.number.strip().upper())
        if self.plate:
            stmt = stmt.where(Case.plate == self.plate.strip().upper())
        if self.case_id is not None:
            stmt = stmt.where(Case.id == self.case_id)
        if self.first_seen_since:
            stmt = stmt.where(Case.first_seen >= as_utc(self.first_seen_since))
        if self.first_seen_until:
            stmt = stmt.where(Case.first_seen <= as_utc(self.first_seen_until))
        if self.superseded is not None:
            stmt = stmt.where(~not_superseded() if self.superseded else not_superseded())
        if self.upload_id is not None:
            jobs = select(Job.id).where(Job.upload_id == self.upload_id)
            stmt = stmt.where(Case.id.in_(select(Sighting.case_id).where(Sighting.job_id.in_(jobs))))
        return stmt


def list_cases(
    session: Session,
    *,
    principal: Principal,
    filters: CaseFilter,
    page: int = 1,
    per_page: int = 50,
    sort: str = "last_seen",
    descending: bool = True,
) -> tuple[list[Row[Any]], int]:
    """The cases on one page (sorted, then by id) and how many match in all. The cases are rows of
    the cases table (attributes named as Case's), read only: no ORM objects to build for a list.
    One statement: the count is a scalar subquery beside each row of the page (one round trip and
    one snapshot instead of two). An empty first page is a count of 0 from that same snapshot (a
    second statement in autocommit would count cases filed since: a total beside no rows); a page
    past the end counts on its own, a moment later."""
    base = visible(filters.apply(select(*_CASES.columns)), principal)
    count = select(func.count()).select_from(base.with_only_columns(_CASES.c.id).subquery())
    keys = (*SORTS[sort], _CASES.c.id)
    order = [key.desc() if descending else key.asc() for key in keys]
    page_rows = base.add_columns(count.scalar_subquery().label("matching_total"))
    rows = session.execute(page_rows.order_by(*order).limit(per_page).offset((page - 1) * per_page)).all()
    if not rows:
        return [], 0 if page == 1 else int(session.scalar(count) or 0)
    return list(rows), int(rows[0].matching_total)


def dispatched_tasks(
    session: Session,
    *,
    principal: Principal,
    page: int = 1,
    per_page: int = 50,
    near: Position | None = None,
) -> tuple[list[Row[Any]], int]:
    """One page of the dispatched cases the caller may see (an enforcement team's task list) and how
    many there are, ordered in the database as the list shows them, so that no page leaves out work
    that comes before what it shows: the cases sent back (verification found the problem still there)
    first, then the others; each group oldest dispatch first, then by id. Each row has the cases
    table's columns, `dispatched_at`: when the case was sent out (its dispatch from filed, not the
    send-back: a case sent back keeps its place by when the work first came; None for a case with no
    such event, which sorts by its updated_at), `sent_back_at`: when it was last sent back since
    it was sent out, else None, and `last_dispatched_at`: when it was last dispatched to the team,
    the send-back for a case sent back, else `dispatched_at` (what the list and the task page show).

    near: the phone's position; then each group (the cases sent back still first) is nearest first,
    over all the team's cases before paging, the cases without a position last, ties oldest dispatch
    first (nearness_to says how near is measured)."""

    def dispatch_time(*from_status: str, other_than: bool = False) -> Any:
        came_from: ColumnElement[bool] = CaseEvent.from_status.in_(from_status)
        if other_than:
            came_from = or_(CaseEvent.from_status.is_(None), CaseEvent.from_status.not_in(from_status))
        return (
            select(func.max(CaseEvent.at))
            .where(CaseEvent.case_id == Case.id, CaseEvent.to_status == workflow.DISPATCHED, came_from)
            .scalar_subquery()
        )

    base = visible(select(*_CASES.columns).where(Case.status == workflow.DISPATCHED), principal)
    inner = base.add_columns(
        dispatch_time(workflow.DISPATCHED, workflow.HANDLED, other_than=True).label("sent_out"),
        dispatch_time(workflow.HANDLED).label("sent_back"),
    ).subquery()
    out, back = inner.c.sent_out, inner.c.sent_back
    sent_back_at = sql_case((and_(back.is_not(None), or_(out.is_(None), back >= out)), back), else_=None)
    dispatched_at = func.coalesce(out, back)
    tasks: Select = select(
        *(inner.c[column.key] for column in _CASES.columns),
        dispatched_at.label("dispatched_at"),
        sent_back_at.label("sent_back_at"),
        func.coalesce(sent_back_at, dispatched_at).label("last_dispatched_at"),
    )
    order: tuple[Any, ...] = (func.coalesce(dispatched_at, inner.c.updated_at), inner.c.id)
    if near is not None:
        no_position = or_(inner.c.lat.is_(None), inner.c.lon.is_(None))
        order = (no_position, nearness_to(near, inner.c.lat, inner.c.lon), *order)
    order = (sent_back_at.is_(None), *order)
    counted = base.with_only_columns(_CASES.c.id).subquery()
    total = int(session.scalar(select(func.count()).select_from(counted)) or 0)
    rows = session.execute(tasks.order_by(*order).limit(per_page).offset((page - 1) * per_page)).all()
    return list(rows), total


def nearness_to(near: Position, lat: Any, lon: Any) -> ColumnElement[float]:
    """An SQL value that orders positions (columns `lat`, `lon`, WGS84 degrees) by their distance
    from `near`, nearest first: the square of the distance on a plane laid at `near`'s latitude
    (degrees of longitude shrunk by its cosine): any database computes it without trigonometry, and
    over a city's few kilometres it ranks places as the great-circle distance does (longitudes are
    not wrapped at 180°). NULL for a case without a position."""
    shrink = math.cos(math.radians(near.lat))
    north, east = lat - near.lat, (lon - near.lon) * shrink
    return north * north + east * east


# a case number as people read it out or type it: the whole number in any case, with or without its
# dashes and leading zeros (gp-2026-123, GP20261619), or its digits alone (1619, 001619: the case's id)
NUMBER_TYPED = re.compile(r"^(?:GP-?([0-9]{4})-?)?0*([0-9]{1,10})$", re.IGNORECASE)
NUMBER_FORMS = "GP-2026-001619, GP-2026-1619, 1619 or 001619"


def number_query(text: str) -> tuple[str | None, int | None]:
    """What a number typed in the case list's box or sent as GET /api/cases?number= looks for: the
    whole number as stored (GP-2026-001619) or a case's id (1619); (None, None) for no text. Digits
    past the ids' column (MAX_ID) name no case: they are looked for as typed, and find none (the
    database is never given an id it cannot hold). Text of no number form is an InputError naming
    `number`."""
    text = text.strip()
    if not text:
        return None, None
    typed = NUMBER_TYPED.match(text)
    if typed is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InputError("number", f"not a case number: {shown!r}; use {NUMBER_FORMS}")
    year, digits = typed.groups()
    if year is not None:
        return f"GP-{year}-{int(digits):06d}", None
    if int(digits) > MAX_ID:
        return text, None
    return None, int(digits)


def case_id_for_number(session: Session, number: str) -> int | None:
    """The id of the case numbered `number` (GP-2026-000123), visible or not; None when there is none."""
    return session.scalar(select(Case.id).where(Case.number == number))


def left_team(session: Session, *, case_id: int, team: str | None) -> bool:
    """Whether the case, not `team`'s now, was that team's before: a dispatch that named another team
    took it from them (custody keeps the team the case had before each such dispatch: "team_before",
    api.cases.acting.transition). False for a case the team never had (and for no case), so that
    another team's case stays as unknown to them as one that does not exist."""
    if team is None or not 1 <= case_id <= MAX_ID:
        return False
    found = session.execute(select(Case.team).where(Case.id == case_id)).first()
    if found is None or found.team == team:
        return False
    details = session.scalars(
        select(CustodyEntry.detail).where(
            CustodyEntry.case_id == case_id, CustodyEntry.action == "transition"
        )
    )
    for detail in details:
        try:
            before = json.loads(detail).get("team_before")
        except (json.JSONDecodeError, AttributeError):  # an entry altered outside the service: not its word
            continue
        if before == team:
            return True
    return False


class CaseNotFound(NotFound):
    """No case of that id visible to the caller (404): one answer for a case that does not exist and
    for one the caller may not see. `case_id`: the id looked for (the HTTP layer names the case as
    the caller named it, by its number when it came by its number: api.http.app)."""

    def __init__(self, case_id: int) -> None:
        super().__init__("case_id", f"no case {case_id}")
        self.case_id = case_id


def get_case(session: Session, *, principal: Principal, case_id: int, lock: bool = False) -> Case:
    """The case with its sightings and their evidence loaded; NotFound when the caller may not see it
    (or when `case_id` is outside the ids' column: no case has it, and the database would refuse it).
    `lock` (PostgreSQL): its row locked until commit (FOR UPDATE; a sighting locks it too) and the
    case read as the lock found it, even when the session loaded it before (an after-photo's check):
    a move decides on the case as it is once it is the move's turn."""
    if not 1 <= case_id <= MAX_ID:
        raise CaseNotFound(case_id)
    stmt = visible(select(Case).where(Case.id == case_id), principal)
    if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    case = session.scalar(stmt.options(selectinload(Case.sightings).selectinload(Sighting.evidence)))
    if case is None:
        raise CaseNotFound(case_id)
    return case


def case_links(session: Session, *, case_id: int) -> list[EvidenceLink]:
    return list(
        session.scalars(select(EvidenceLink).where(EvidenceLink.case_id == case_id).order_by(EvidenceLink.id))
    )


# evidence roles listed to admins only and served only through unseal_original (each fetch in custody)
SEALED_ROLES = ("original",)
UNSEALED = "evidence_unsealed"  # the custody action of an admin's fetch of a sealed file


def shows_sealed(principal: Principal | None) -> bool:
    """Whether the caller sees sealed evidence listed (admins only)."""
    return principal is not None and principal.role == Role.ADMIN


def may_see_evidence(session: Session, *, principal: Principal, sha256: str) -> bool:
    """Whether the evidence route may serve the blob: linked to a case the caller may see, in a role
    that is not sealed (the same bytes may be both, when privacy blurred nothing)."""
    stmt = select(EvidenceLink.id).where(
        and_(EvidenceLink.sha256 == sha256, EvidenceLink.role.not_in(SEALED_ROLES))
    )
    if principal.role == Role.ENFORCEMENT:
        stmt = stmt.join(Case, Case.id == EvidenceLink.case_id).where(Case.team == principal.team)
    return session.scalar(stmt.limit(1)) is not None


# --- what readers get back -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """WGS84 degrees."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as lists, responses and webhooks show it. Times are naive UTC."""

    id: int
    number: str | None
    category: str
    status: str
    grid_cell: str
    team: str | None
    position: Position | None
    plate: str | None
    camera_id: str | None
    device_id: int | None
    first_seen: datetime
    last_seen: datetime
    sightings: int
    recurrences: int
    reject_reason: str | None
    unassigned: bool

    def to_json(self) -> dict[str, Any]:
        """JSON values, times as ISO 8601 UTC ending in Z (the webhook payload's "case")."""
        return {**asdict(self), "first_seen": iso_utc(self.first_seen), "last_seen": iso_utc(self.last_seen)}


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    role: str  # annotated | crop | raw | dwell_first | dwell_middle | dwell_last | after_photo | original
    sha256: str


@dataclass(frozen=True, slots=True)
class SightingView:
    id: int
    incident_id: str
    seen_at: datetime
    position: Position | None
    plate: str | None
    camera_id: str | None
    recurrence: bool
    evidence: list[EvidenceRef]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a case's history: when, who, what (the action), from and to which status, why."""

    at: datetime
    who: str
    what: str
    from_: str | None
    to: str | None
    why: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class CaseDetail(CaseSummary):
    """A case with its sightings (each with its evidence), the evidence of the case itself (after
    photos), its history, the length of its custody log and where it may move next."""

    sightings_list: list[SightingView]
    case_evidence: list[EvidenceRef]
    history: list[HistoryEntry]
    custody_entries: int
    allowed_transitions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CasePage:
    total: int
    page: int
    per_page: int
    items: list[CaseSummary]


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """An evidence file to serve: its bytes (a local file, or an object streamed from the store)
    and the media type it was stored as."""

    content: EvidenceContent
    media_type: str


def _position(lat: float | None, lon: float | None) -> Position | None:
    return Position(lat, lon) if lat is not None and lon is not None else None


def _summary_fields(case: Case | Row[Any]) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "category": case.category,
        "status": case.status,
        "grid_cell": case.grid_cell_id,
        "team": case.team,
        "position": _position(case.lat, case.lon),
        "plate": case.plate,
        "camera_id": case.camera_id,
        "device_id": case.device_id,
        "first_seen": case.first_seen,
        "last_seen": case.last_seen,
        "sightings": case.sightings_count,
        "recurrences": case.recurrence_count,
        "reject_reason": case.reject_reason,
        "unassigned": case.grid_cell_id == UNASSIGNED,
    }


def case_summary(case: Case | Row[Any]) -> CaseSummary:
    return CaseSummary(**_summary_fields(case))


def case_page(
    session: Session,
    *,
    principal: Principal,
    filters: CaseFilter,
    page: int = 1,
    per_page: int = 50,
    sort: str = "last_seen",
    descending: bool = True,
) -> CasePage:
    """One page of the cases the caller may see that match the filters, with the total."""
    rows, total = list_cases(
        session,
        principal=principal,
        filters=filters,
        page=page,
        per_page=per_page,
        sort=sort,
        descending=descending,
    )
    return CasePage(total=total, page=page, per_page=per_page, items=[case_summary(c) for c in rows])


def describe(session: Session, *, case: Case, principal: Principal | None = None) -> CaseDetail:
    """The detail of a case already read (get_case loads its sightings and their evidence). Sealed
    evidence (SEALED_ROLES) is listed only when the principal is an admin."""
    by_sighting: dict[int | None, list[EvidenceRef]] = {}
    sealed_too = shows_sealed(principal)
    for link in case_links(session, case_id=case.id):
        if link.role in SEALED_ROLES and not sealed_too:
            continue
        by_sighting.setdefault(link.sighting_id, []).append(EvidenceRef(link.role, link.sha256))
    sightings = [
        SightingView(
            id=s.id,
            incident_id=s.incident_id,
            seen_at=s.seen_at,
            position=_position(s.lat, s.lon),
            plate=s.plate,
            camera_id=s.camera_id,
            recurrence=s.recurrence,
            evidence=by_sighting.get(s.id, []),
        )
        for s in case.sightings
    ]
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
    history = [
        HistoryEntry(e.at, e.actor, e.action, e.from_status, e.to_status, e.reason, e.note) for e in events
    ]
    custody_count = (
        session.scalar(select(func.count()).select_from(CustodyEntry).where(CustodyEntry.case_id == case.id))
        or 0
    )
    return CaseDetail(
        **_summary_fields(case),
        sightings_list=sightings,
        case_evidence=by_sighting.get(None, []),
        history=history,
        custody_entries=int(custody_count),
        allowed_transitions=workflow.TRANSITIONS[case.status],
    )


def case_detail(session: Session, *, principal: Principal, case_id: int) -> CaseDetail:
    """A case the caller may see, in detail; NotFound otherwise."""
    return describe(
        session, case=get_case(session, principal=principal, case_id=case_id), principal=principal
    )


def evidence_file(
    session: Session, *, principal: Principal, sha256: str, store: EvidenceFiles
) -> EvidenceFile:
    """An evidence file, opened, and its media type; NotFound when unknown, not visible to the
    caller or missing from the store (the store is read only after the caller's rights are checked)."""
    blob = session.get(EvidenceBlob, sha256)
    if blob is None or not may_see_evidence(session, principal=principal, sha256=sha256):
        raise NotFound("sha256", f"no evidence {sha256}")
    content = store.open_content(sha256)
    if content is None:
        raise NotFound(
            "sha256", f"evidence {sha256} is missing from the store (run gridpatrol evidence verify)"
        )
    return EvidenceFile(content, blob.media_type)


def unseal_original(
    session: Session, *, principal: Principal, case_id: int, sha256: str | None, store: EvidenceFiles
) -> EvidenceFile:
    """A case's sealed original, opened for an admin, its fetch appended to the case's custody chain
    (action UNSEALED: who, which file, of which sighting; the entry's time says when). The caller
    commits before serving it, so no file leaves without its record.

    sha256: which original (the case's sightings may each have one); None: the latest sighting's.
    RoleNotAllowed (403) for anyone but an admin; NotFound (404) for an unknown case, a case without
    that original, or a file missing from the store."""
    if principal.role != Role.ADMIN:
        raise RoleNotAllowed(principal.role)
    case = get_case(session, principal=principal, case_id=case_id, lock=True)
    stmt = select(EvidenceLink).where(EvidenceLink.case_id == case.id, EvidenceLink.role.in_(SEALED_ROLES))
    if sha256 is not None:
        stmt = stmt.where(EvidenceLink.sha256 == sha256)
    link = session.scalars(stmt.order_by(EvidenceLink.id.desc()).limit(1)).first()
    if link is None:
        what = f"no sealed original {sha256}" if sha256 else "no sealed original"
        raise NotFound("sha256" if sha256 else "case_id", f"case {case.number or case.id} has {what}")
    blob = session.get(EvidenceBlob, link.sha256)
    content = store.open_content(link.sha256)
    if blob is None or content is None:
        raise NotFound(
            "sha256", f"evidence {link.sha256} is missing from the store (run gridpatrol evidence verify)"
        )
    custody.append(
        session,
        case_id=case.id,
        actor=principal.label,
        action=UNSEALED,
        detail={"role": link.role, "sha256": link.sha256, "sighting_id": link.sighting_id},
    )
    return EvidenceFile(content, blob.media_type)
