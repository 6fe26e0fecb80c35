"""The periodic report a district office sends upward: for a period [since, until) (naive UTC), how many
problems were found, reviewed (confirmed, rejected by reason) and closed, how many were still open at
its end (and of those how many still awaited review), how fast the work went, and how much of the grid
the patrols passed; in total, per category, per grid cell (with its team) and per cell x category.

A past period's report does not change when its cases move on: a case's status at `until` is read from
its history (case_events: the last move before `until`; a case with no move by then was pending_review),
never from its status today. The report's cells and teams are the grid's as it is now: a case counts
for the team the grid gives its cell now (a cell a grid import gave to another team is that team's,
with its cases and passes from before; a case dispatched to another team counts for its cell's team),
and a case in no cell of the grid (outside every cell, or in a cell a grid import removed) for the
team it has (_in_scope). An enforcement user's report is its team's part of the district's, so the
teams' reports add up to the district's by its team column.

Counted:
- found: cases first seen in the period;
- confirmed / rejected: cases whose review decision (pending_review -> filed / rejected) was made in the
  period; a decision undone in the period (review.undo_decision) does not count, the case's last one does;
  rejected by reason: one of workflow.REJECT_REASONS, or UNSPECIFIED for a rejection stored without one
  (the service asks for one; a rejection from before it did, or written outside it) or with a reason
  this version does not know, so that the reasons add up to the rejected;
- closed: cases moved to closed in the period (a case closed twice, reopened between, counts once);
- open at the end: first seen before `until`, neither closed nor rejected at `until`;
- times (hours), of the moves made in the period: first seen -> review decision, confirmed -> dispatched
  (filed -> dispatched, from the last filing before it; a case sent back by verification and dispatched
  again is not dispatched anew), dispatched -> first handling (see sent back), first seen -> closed;
  median and 90th percentile (linear between ranks), None when there is no such move (never 0). A
  recurrence (a closed case seen again, reopened for review) is "found" when it was reopened: its
  review and closing are timed from then, not from the case's first sighting, and it is dispatched
  and handled anew.
- sent back: cases that verification sent back to their team (handled -> dispatched) in the period,
  each once however often. Such a case's handling is timed once, from its dispatch (filed ->
  dispatched) to its first handling: the team's answer to the dispatch. The handling after a send-back
  is not timed again (two handlings of one dispatch, each timed from the dispatch before it, made the
  rework look like two quick jobs); the rework shows in `sent_back` and in first seen -> closed.
- a case the service itself rejected as superseded (api.jobs.superseding: footage sent again with a
  corrected start time, camera or track; the corrected run filed the same problems as cases of their
  own, with the right times and places) counts nowhere: not found, decided or open, as it was no finding
  and its rejection no review decision.

The counts are summed by the database; the moves of the period (one row each, some 10^4 in a month of a
busy district) come back to be timed, as percentiles need every value.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, func, literal, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, aliased

from api.accounts.accounts import Principal, Role
from api.cases import workflow
from api.cases.reading import SERVICE_ACTOR_PREFIX, not_superseded
from api.cases.review import CATEGORIES
from api.cases.wall_time import held_in_range
from api.storage.db import as_utc, without_jit
from api.storage.models import UNASSIGNED, Case, CaseEvent, GridCell, UploadCoverage

PERCENTILE = 0.9
# the years a period's days may have: those of every date the service takes (api.http.schemas.YEARS)
FIRST_YEAR, LAST_YEAR = 1970, 2199
# the longest period the service reports on (GET /api/reports/period and its CSV, the /reports page):
# two years' moves come back to be timed; a longer one (1970 to 2199) would read the whole history
# into memory on a request. `gridpatrol report` runs on the operator's machine and takes any range.
MAX_PERIOD_DAYS = 366 * 2
DECIDED = (workflow.FILED, workflow.REJECTED)
UNSPECIFIED = "unspecified"  # the reason of a rejection stored without a reason the report knows
# the statuses as the plain strings the moves' rows hold, for _moves' loop over some 10^5 of them
_PENDING, _FILED, _DISPATCHED, _HANDLED, _CLOSED = (
    status.value
    for status in (
        workflow.PENDING_REVIEW,
        workflow.FILED,
        workflow.DISPATCHED,
        workflow.HANDLED,
        workflow.CLOSED,
    )
)
_DECIDED = (_FILED, workflow.REJECTED.value)


@dataclass(frozen=True, slots=True)
class Durations:
    """Hours of one kind of move: how many, their median and 90th percentile (None: no move)."""

    count: int
    median_h: float | None
    p90_h: float | None

    @classmethod
    def of(cls, hours: Iterable[float]) -> Durations:
        values = sorted(hours)
        if not values:
            return cls(0, None, None)
        return cls(len(values), round(_quantile(values, 0.5), 2), round(_quantile(values, PERCENTILE), 2))


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted values, linear between the closest ranks (numpy's default)."""
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Figures:
    """One group's numbers (see the module docstring for what each counts)."""

    found: int
    confirmed: int
    rejected: int
    rejected_by_reason: dict[str, int]
    closed: int
    open_at_end: int
    awaiting_review_at_end: int
    sent_back: int
    review_hours: Durations
    dispatch_hours: Durations
    handling_hours: Durations
    closing_hours: Durations


@dataclass
class _Tally:
    """A group's numbers while they are summed, with every duration kept for the percentiles."""

    found: int = 0
    confirmed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    closed: int = 0
    open_at_end: int = 0
    awaiting_review_at_end: int = 0
    sent_back: int = 0
    review: list[float] = field(default_factory=list)
    dispatch: list[float] = field(default_factory=list)
    handling: list[float] = field(default_factory=list)
    closing: list[float] = field(default_factory=list)

    def add(self, other: _Tally) -> None:
        self.found += other.found
        self.confirmed += other.confirmed
        self.rejected.update(other.rejected)
        self.closed += other.closed
        self.open_at_end += other.open_at_end
        self.awaiting_review_at_end += other.awaiting_review_at_end
        self.sent_back += other.sent_back
        self.review += other.review
        self.dispatch += other.dispatch
        self.handling += other.handling
        self.closing += other.closing

    def figures(self) -> Figures:
        return Figures(
            found=self.found,
            confirmed=self.confirmed,
            rejected=sum(self.rejected.values()),
            rejected_by_reason={reason: self.rejected[reason] for reason in sorted(self.rejected)},
            closed=self.closed,
            open_at_end=self.open_at_end,
            awaiting_review_at_end=self.awaiting_review_at_end,
            sent_back=self.sent_back,
            review_hours=Durations.of(self.review),
            dispatch_hours=Durations.of(self.dispatch),
            handling_hours=Durations.of(self.handling),
            closing_hours=Durations.of(self.closing),
        )


@dataclass(frozen=True, slots=True)
class CategoryFigures:
    category: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class CellFigures:
    """A grid cell's numbers; name and team from the grid (None: a cell no longer in the grid, or
    outside every cell); patrol_passes: the patrols' passes through it in the period."""

    cell_id: str
    name: str | None
    team: str | None
    figures: Figures
    patrol_passes: int

    @property
    def removed(self) -> bool:
        """A cell its cases keep that a later grid import removed (not the cases outside every cell)."""
        return self.name is None and self.cell_id != UNASSIGNED


@dataclass(frozen=True, slots=True)
class CellCategoryFigures:
    cell_id: str
    team: str | None
    category: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class PatrolCoverage:
    """Grid cells the patrols' GPS tracks passed in the period, of the cells in the (visible) grid."""

    cells_passed: int
    cells_in_grid: int
    share: float | None  # cells_passed / cells_in_grid; None for an empty grid


def whole_percent(share: float) -> int:
    """A share (0..1) as a whole percent for a person to read: rounded, but 0 and 100 only for none and
    all (199 of 200 cells passed is 99%, not a full coverage; 1 of 200 is 1%, not none)."""
    percent = round(share * 100)
    return min(max(percent, 1), 99) if 0 < share < 1 else percent


@dataclass(frozen=True, slots=True)
class PeriodReport:
    since: datetime  # naive UTC
    until: datetime  # naive UTC, not included
    total: Figures
    by_category: list[CategoryFigures]
    by_cell: list[CellFigures]
    rows: list[CellCategoryFigures]  # cell x category, only those with any number
    coverage: PatrolCoverage


def _in_scope(stmt: Select, principal: Principal) -> Select:
    """The cases (`stmt` selects from Case) that count in `principal`'s report: every case, or an
    enforcement user's team's as the grid has them now: those in its cells, and those in no cell of the
    grid (outside every cell, or in a removed cell) that have its team. Not reading.visible (the case's
    own team): a cell a grid import gave to another team keeps its cases' team, and counting them by it
    listed the cell under its new team in the district's report and at 0 in that team's."""
    if principal.role != Role.ENFORCEMENT:
        return stmt
    grid = select(GridCell.id)
    return stmt.where(
        or_(
            Case.grid_cell_id.in_(grid.where(GridCell.team == principal.team)),
            and_(Case.grid_cell_id.not_in(grid), Case.team == principal.team),
        )
    )


def _hours(start: datetime | None, end: datetime) -> float | None:
    if start is None:
        return None
    return max(0.0, (end - start).total_seconds() / 3600)


def _status_at(until: datetime) -> ColumnElement[str]:
    """A case's status at `until` (correlated with Case): its last move's target before then, or
    pending_review. A case not updated since `until` has today's status then (every move sets
    updated_at to the move's time): only the cases updated after it have their history read."""
    last = (
        select(CaseEvent.to_status)
        .where(CaseEvent.case_id == Case.id, CaseEvent.at < until, CaseEvent.to_status.is_not(None))
        .order_by(CaseEvent.at.desc(), CaseEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sql_case(
        (Case.updated_at < until, Case.status),
        else_=func.coalesce(last, literal(workflow.PENDING_REVIEW.value)),
    )


def local_days(first: date, last: date, offset_h: float) -> tuple[datetime, datetime]:
    """The period [since, until) in naive UTC of the local days `first` to `last`, both included, at
    `offset_h` hours from UTC: local midnight before the first, after the last, held in the range of
    times the service takes (wall_time.held_in_range: the API refuses 1969-12-31T16:00:00Z, the
    start of the local day 1970-01-01 at UTC+8, and no case lies outside it)."""
    shift = timedelta(hours=offset_h)
    since = datetime.combine(first, datetime.min.time()) - shift
    until = datetime.combine(last + timedelta(days=1), datetime.min.time()) - shift
    return held_in_range(since), held_in_range(until)


def period_report(
    session: Session, *, since: datetime, until: datetime, principal: Principal
) -> PeriodReport:
    """The report of [since, until) (aware times are converted; naive ones are UTC) as `principal` may
    see it. The caller checks that since <= until."""
    first, last = as_utc(since), as_utc(until)
    assert first is not None and last is not None
    # the planner prices the correlated subqueries (a case's last move, a move's earlier ones) per
    # case: over some 10^4 cases each query was JIT-compiled for 0.5 to 1 s, then ran in tens of ms
    without_jit(session)
    tallies: dict[tuple[str, str], _Tally] = {}

    def tally(cell: str, category: str) -> _Tally:
        t = tallies.get((cell, category))  # not setdefault: a _Tally built per row (a year: 200k) costs
        if t is None:
            t = tallies[cell, category] = _Tally()
        return t

    found: Select = select(Case.grid_cell_id, Case.category, func.count()).where(
        Case.first_seen >= first, Case.first_seen < last, not_superseded()
    )
    for cell, category, n in session.execute(
        _in_scope(found, principal).group_by(Case.grid_cell_id, Case.category)
    ):
        tally(cell, category).found = n

    status = _status_at(last).label("status_at")
    at_end = (
        _in_scope(
            select(Case.grid_cell_id, Case.category, status).where(Case.first_seen < last, not_superseded()),
            principal,
        )
    ).subquery()
    grouped = (
        select(at_end.c.grid_cell_id, at_end.c.category, at_end.c.status_at, func.count())
        .where(at_end.c.status_at.in_([s.value for s in workflow.OPEN_STATUSES]))
        .group_by(at_end.c.grid_cell_id, at_end.c.category, at_end.c.status_at)
    )
    for cell, category, status_at, n in session.execute(grouped):
        t = tally(cell, category)
        t.open_at_end += n
        if status_at == workflow.PENDING_REVIEW:
            t.awaiting_review_at_end += n

    _moves(session, first, last, principal, tally)
    return _assemble(session, first, last, principal, tallies)


def _last_move_before(
    to_status: workflow.Status, *, from_status: workflow.Status | None = None, strictly: bool = False
) -> ScalarSelect[Any]:
    """The time of the case's last move to `to_status` (from `from_status`) at or before the CaseEvent
    row's own (`strictly`: before it, an event of the same time written before it included): a
    correlated scalar subquery."""
    earlier = aliased(CaseEvent)
    before = (
        or_(earlier.at < CaseEvent.at, and_(earlier.at == CaseEvent.at, earlier.id < CaseEvent.id))
        if strictly
        else earlier.at <= CaseEvent.at
    )
    moved = [earlier.case_id == CaseEvent.case_id, earlier.to_status == to_status.value, before]
    if from_status is not None:
        moved.append(earlier.from_status == from_status.value)
    return select(func.max(earlier.at)).where(*moved).scalar_subquery()


def _moves(
    session: Session,
    first: datetime,
    last: datetime,
    principal: Principal,
    tally: Callable[[str, str], _Tally],
) -> None:
    """Review decisions, dispatches, handlings, send-backs and closings made in the period, timed. The
    earlier moves a row is timed from are read for the rows of that kind of move only."""
    review = and_(
        CaseEvent.from_status == workflow.PENDING_REVIEW.value,
        CaseEvent.to_status.in_([workflow.FILED.value, workflow.REJECTED.value]),
    )
    undo = CaseEvent.action == "undo"
    dispatched = and_(
        CaseEvent.from_status == workflow.FILED.value, CaseEvent.to_status == workflow.DISPATCHED.value
    )
    handled = and_(
        CaseEvent.from_status == workflow.DISPATCHED.value, CaseEvent.to_status == workflow.HANDLED.value
    )
    sent_back = and_(
        CaseEvent.from_status == workflow.HANDLED.value, CaseEvent.to_status == workflow.DISPATCHED.value
    )
    closed = CaseEvent.to_status == workflow.CLOSED.value
    reopened_at = _last_move_before(workflow.PENDING_REVIEW, from_status=workflow.CLOSED)
    filed_at = _last_move_before(workflow.FILED)
    # a handling is timed from the case's dispatch, not from a send-back's dispatch again
    dispatched_at = _last_move_before(workflow.DISPATCHED, from_status=workflow.FILED)
    handled_before = _last_move_before(workflow.HANDLED, strictly=True)
    stmt = _in_scope(
        select(
            CaseEvent.case_id,
            Case.grid_cell_id,
            Case.category,
            Case.first_seen,
            CaseEvent.at,
            CaseEvent.action,
            CaseEvent.from_status,
            CaseEvent.to_status,
            CaseEvent.reason,
            CaseEvent.actor,
            sql_case((review | closed, reopened_at)).label("reopened_at"),
            sql_case((dispatched, filed_at)).label("filed_at"),
            sql_case((handled, dispatched_at)).label("dispatched_at"),
            sql_case((handled, handled_before)).label("handled_before"),
        )
        .join(Case, Case.id == CaseEvent.case_id)
        .where(
            CaseEvent.at >= first,
            CaseEvent.at < last,
            review | undo | dispatched | handled | sent_back | closed,
        ),
        principal,
    ).order_by(CaseEvent.case_id, CaseEvent.at, CaseEvent.id)
    decisions: dict[int, tuple[str, str, str, str | None, float | None]] = {}  # case -> its last decision
    closings: dict[int, tuple[str, str, float | None]] = {}  # case -> its last closing in the period
    sent_back_cases: dict[int, tuple[str, str]] = {}  # case -> its cell and category
    # hours per cell and category, added to the tallies once rather than looked up per row
    dispatch_hours: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    handling_hours: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    # a year's some 2 x 10^5 rows read through the Core connection, as plain tuples: the session's
    # execute builds ORM rows, which took as long again as the loop
    for (
        case_id,
        cell,
        category,
        first_seen,
        at,
        action,
        from_status,
        to_status,
        reason,
        actor,
        reopened,
        filed_at,
        dispatched_at,
        handled_before,
    ) in session.connection().execute(stmt):
        if actor.startswith(SERVICE_ACTOR_PREFIX):
            continue  # a superseded case's rejection (see reading.not_superseded): no review decision
        if action == "undo":
            decisions.pop(case_id, None)
        elif from_status == _PENDING and to_status in _DECIDED:
            found = first_seen if reopened is None else max(first_seen, reopened)
            decisions[case_id] = (cell, category, to_status, reason, _hours(found, at))
        elif from_status == _FILED and to_status == _DISPATCHED:
            hours = _hours(filed_at, at)
            if hours is not None:
                dispatch_hours[cell, category].append(hours)
        elif from_status == _HANDLED and to_status == _DISPATCHED:
            sent_back_cases[case_id] = (cell, category)
        elif to_status == _HANDLED:
            # the dispatch's first handling only: none since the dispatch, before this one
            hours = _hours(dispatched_at, at)
            if hours is not None and (handled_before is None or handled_before < dispatched_at):
                handling_hours[cell, category].append(hours)
        elif to_status == _CLOSED:
            found = first_seen if reopened is None else max(first_seen, reopened)
            closings[case_id] = (cell, category, _hours(found, at))
    for (cell, category), hours_list in dispatch_hours.items():
        tally(cell, category).dispatch += hours_list
    for (cell, category), hours_list in handling_hours.items():
        tally(cell, category).handling += hours_list
    for cell, category, target, reason, hours in decisions.values():
        t = tally(cell, category)
        if target == workflow.FILED:
            t.confirmed += 1
        else:
            t.rejected[reason if reason in workflow.REJECT_REASONS else UNSPECIFIED] += 1
        if hours is not None:
            t.review.append(hours)
    for cell, category in sent_back_cases.values():
        tally(cell, category).sent_back += 1
    for cell, category, hours in closings.values():
        t = tally(cell, category)
        t.closed += 1
        if hours is not None:
            t.closing.append(hours)


def _passes_by_cell(
    session: Session, first: datetime, last: datetime, cells: set[str] | None
) -> dict[str, int]:
    """How many patrol passes entered each cell in the period (of `cells` only; None: of every cell).
    api.jobs.coverage writes them; read here by the database's count, as that module reads GPS tracks
    and the domain rooms import no streams. Chosen by cell, not by the team a pass was written with (the
    cell's team then): a cell a grid import gave to another team is that team's, its earlier passes
    included, as the report's cells and teams are the grid's as it is now."""
    query = (
        select(UploadCoverage.cell_id, func.count())
        .where(UploadCoverage.entered_at >= first, UploadCoverage.entered_at < last)
        .group_by(UploadCoverage.cell_id)
    )
    return {cell_id: n for cell_id, n in session.execute(query) if cells is None or cell_id in cells}


def category_order(category: str) -> tuple[int, str]:
    """A category's place in the report: the built-in categories in their configured order (as the
    dashboard and the forms list them: review.known_categories), then a site's own by name."""
    return (CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES), category)


def _assemble(
    session: Session,
    first: datetime,
    last: datetime,
    principal: Principal,
    tallies: dict[tuple[str, str], _Tally],
) -> PeriodReport:
    grid = select(GridCell.id, GridCell.name, GridCell.team).order_by(GridCell.id)
    cells = {cell_id: (name, cell_team) for cell_id, name, cell_team in session.execute(grid)}
    team = principal.team if principal.role == Role.ENFORCEMENT else None
    # the cells listed (with zeros) and covered: every cell, or an enforcement user's team's (its cases
    # are those of its cells, and of cells no longer in the grid: _in_scope)
    own = [cell_id for cell_id, (_, cell_team) in cells.items() if team is None or cell_team == team]
    passes = _passes_by_cell(session, first, last, None if team is None else set(own))
    total = _Tally()
    by_category: dict[str, _Tally] = {}
    by_cell: dict[str, _Tally] = {cell_id: _Tally() for cell_id in own}
    rows = []
    for (cell_id, category), t in sorted(
        tallies.items(), key=lambda item: (item[0][0], category_order(item[0][1]))
    ):
        total.add(t)
        by_category.setdefault(category, _Tally()).add(t)
        by_cell.setdefault(cell_id, _Tally()).add(t)
        rows.append(CellCategoryFigures(cell_id, cells.get(cell_id, (None, None))[1], category, t.figures()))
    passed = sum(1 for cell_id in own if passes.get(cell_id))
    return PeriodReport(
        since=first,
        until=last,
        total=total.figures(),
        by_category=[
            CategoryFigures(name, by_category[name].figures())
            for name in sorted(by_category, key=category_order)
        ],
        by_cell=[
            CellFigures(
                cell_id=cell_id,
                name=cells.get(cell_id, (None, None))[0],
                team=cells.get(cell_id, (None, None))[1],
                figures=by_cell[cell_id].figures(),
                patrol_passes=passes.get(cell_id, 0),
            )
            for cell_id in sorted(by_cell)
        ],
        rows=rows,
        coverage=PatrolCoverage(
            cells_passed=passed,
            cells_in_grid=len(own),
            share=round(passed / len(own), 4) if own else None,
        ),
    )


CSV_HEADER = (
    "cell_id",
    "cell_name",
    "team",
    "category",
    "found",
    "confirmed",
    "rejected",
    *(f"rejected_{reason}" for reason in workflow.REJECT_REASONS),
    "closed",
    "open_at_end",
    "awaiting_review_at_end",
    "review_median_h",
    "review_p90_h",
    "handling_median_h",
    "handling_p90_h",
    "closing_median_h",
    "closing_p90_h",
    # columns added since, at the end: a spreadsheet that reads the columns above by place still does
    "dispatch_median_h",
    "dispatch_p90_h",
    f"rejected_{UNSPECIFIED}",
    "sent_back",
    "patrol_passes",  # of a cell (category "*") and of the total; empty on a row of one category
)
ALL = "*"  # the cell or category of a total row
CSV_BOM = "\ufeff"  # written before the CSV, so that Excel reads it as UTF-8 (Chinese cell and team names)


def csv_hours(value: float | None) -> str:
    """Hours in a CSV cell: two decimals, as the JSON report rounds them (1234567.25, 0.05, 0.00),
    never in scientific notation; empty for no move."""
    return "" if value is None else f"{value:.2f}"


def _csv_values(figures: Figures) -> list[str]:
    return [
        str(figures.found),
        str(figures.confirmed),
        str(figures.rejected),
        *(str(figures.rejected_by_reason.get(reason, 0)) for reason in workflow.REJECT_REASONS),
        str(figures.closed),
        str(figures.open_at_end),
        str(figures.awaiting_review_at_end),
        *(
            csv_hours(value)
            for d in (figures.review_hours, figures.handling_hours, figures.closing_hours)
            for value in (d.median_h, d.p90_h)
        ),
        csv_hours(figures.dispatch_hours.median_h),
        csv_hours(figures.dispatch_hours.p90_h),
        str(figures.rejected_by_reason.get(UNSPECIFIED, 0)),
        str(figures.sent_back),
    ]


def _text(value: str) -> str:
    """A name from the grid or a category, safe in a spreadsheet: one that a spreadsheet would read
    as a formula (=, +, -, @, or a tab or carriage return first) gets a leading apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


CsvFlavour = Literal["plain", "excel"]
CSV_FLAVOURS: tuple[CsvFlavour, ...] = ("plain", "excel")
EXCEL_TEXT_MAX = 255  # characters (UTF-16 units) of a text constant in an Excel formula


def excel_text(value: str) -> str:
    """A text cell that Excel opens as that text: `="0440305001"`, a formula whose value is the text
    itself. Excel reads a CSV cell of digits as a number (leading zeros dropped, digits after the 15th
    zeroed, 4.40305E+14 shown) and others as dates (3-1); a cell's number format cannot be set in a
    CSV, and Excel shows a leading apostrophe as written, so a formula is what keeps the text when the
    file is opened by a double-click. The text is a string constant in it, never run: a name such as
    =cmd|... comes out as written. A text too long for a constant (EXCEL_TEXT_MAX, its quotes doubled) is
    written as in the plain flavour (_text)."""
    constant = value.replace('"', '""')
    if len(constant.encode("utf-16-le")) // 2 > EXCEL_TEXT_MAX:
        return _text(value)
    return f'="{constant}"'


def csv_text(
    report: PeriodReport,
    *,
    flavour: CsvFlavour = "plain",
    header: tuple[str, ...] = CSV_HEADER,
    category_name: Callable[[str], str] | None = None,
    outside_name: str | None = None,
    removed_name: str | None = None,
) -> str:
    """The report as CSV (CSV_HEADER; no BOM): one row per cell x category, then per category over all
    cells (cell "*"), then per cell over all categories (category "*", with its patrol passes, as the
    /reports page shows them), then the total ("*", "*", with all the passes).
    An empty time is an empty field (no such move), never 0; a name a spreadsheet would run as a
    formula is quoted (_text). The "excel" flavour writes every value of the text columns (cell_id,
    cell_name, team, category; not an empty one) as excel_text, so that Excel keeps cell codes of
    digits, with leading zeros or over 15 of them, as they are; the numbers stay plain numbers.
    `header` and `category_name` (a category's name by its id; not of "*") write the columns' and the
    categories' names for a person (the excel flavour in a language: api.http.routes.reports), and
    `outside_name` and `removed_name` the words the /reports page names the cases outside every cell by
    (in both the cell_id and cell_name columns, for the code UNASSIGNED) and a cell a grid import
    removed (its cell_name; its code kept)."""
    text = excel_text if flavour == "excel" else _text
    names = {cell.cell_id: cell.name for cell in report.by_cell}
    removed = {cell.cell_id for cell in report.by_cell if cell.removed}

    def cell_names(cell_id: str) -> tuple[str, str]:
        """A cell's code and name as written (an empty name: none)."""
        if cell_id == UNASSIGNED and outside_name is not None:
            return outside_name, outside_name
        if cell_id in removed and removed_name is not None:
            return cell_id, removed_name
        return cell_id, names.get(cell_id) or ""

    if len(header) != len(CSV_HEADER):
        raise ValueError(f"a CSV header of {len(header)} columns, not {len(CSV_HEADER)}")

    def named(category: str) -> str:
        return category if category_name is None or category == ALL else category_name(category)

    def texts(*values: str) -> list[str]:
        return [text(v) if v else "" for v in values]

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in report.rows:
        names_of_row = texts(*cell_names(row.cell_id), row.team or "", named(row.category))
        writer.writerow([*names_of_row, *_csv_values(row.figures), ""])
    for category in report.by_category:
        writer.writerow([*texts(ALL, "", "", named(category.category)), *_csv_values(category.figures), ""])
    for cell in report.by_cell:
        names_of_cell = texts(*cell_names(cell.cell_id), cell.team or "", ALL)
        writer.writerow([*names_of_cell, *_csv_values(cell.figures), str(cell.patrol_passes)])
    passes = sum(cell.patrol_passes for cell in report.by_cell)
    writer.writerow([*texts(ALL, "", "", ALL), *_csv_values(report.total), str(passes)])
    return out.getvalue()


def file_day(when: datetime, offset_h: float, *, end: bool = False) -> str:
    """A period bound (naive UTC) in a file name, in local time at `offset_h` from UTC: 20261123 at
    local midnight, else 20261123T083000. An `end` at local midnight is named by the last day it
    includes (the day before: a week's report is 20261123-20261129, as the form and the CLI ask for
    it), an end at another time by its instant."""
    when = when + timedelta(hours=offset_h)
    if when.time() == datetime.min.time():
        return (when - timedelta(days=1) if end else when).strftime("%Y%m%d")
    return when.strftime("%Y%m%dT%H%M%S")
