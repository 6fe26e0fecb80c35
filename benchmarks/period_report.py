"""The periodic report on a year of cases: seconds per report of a week, a month and the year.

A fresh SQLite database (or PostgreSQL with --postgres-url) at the migrations' head gets the demo grid
and `--cases` cases spread over the year 2026, each with the history the workflow writes: 70% filed a
few hours after they were first seen (then 60% of those dispatched, handled, verified and closed over
the next days), 20% rejected, the rest left in review. Rows are written directly (no custody chain,
no evidence: the report reads neither). Then api.cases.period_report.period_report runs for the week
and the month ending 2026-07-01 and for the whole year, `--repeat` times each, and the best is printed.

Every case_events row is written with all its columns (an executemany takes its columns from a batch's
first row: until 2026-12-06 that was a "created" row without from_status or reason, every move lost its
from_status and only closings were timed, so the figures quoted then, under a second, were wrong), and
the history is checked before anything is timed: every move written is stored, reviews, dispatches,
handlings and closings each in a plausible number, or it stops with "not timed".

`--with-jit` (PostgreSQL) also times the reports as they ran before the report turned JIT off for its
transaction (api.storage.db.without_jit), `--index-at` with an index on case_events.at, on the same rows.
Measured 2026-12-06 at the defaults (100 000 cases, 257 578 moves), best of 3, on a 2-core machine shared
with other jobs (load average about 7; a report's time varied by 2x from one run to the next, so read
the ratios, measured in one run, rather than the seconds):
  SQLite: week 0.48 s, month 0.85 s, year 7.8 s; with the index on at 0.7x, 0.8x, 0.7x.
  PostgreSQL 15: week 0.77 s, month 1.78 s, year 14.0 s; with the server's JIT (as before) week 2.66 s,
  month 2.70 s, year 10.9 s (3.5x, 1.5x and 0.8x: the year's SQL runs 4.3 s without JIT against 6.2 s
  with it, by EXPLAIN ANALYZE; its total is mostly Python, below); with the index on at 1.1x, 1.0x, 1.2x.
  Since period_report._moves reads the moves as plain rows (the Core connection's tuples, not the ORM's
  rows built by session.execute; the statuses compared as strings; later on 2026-12-06, every figure of
  every report the same), the year, before and after in one session: SQLite 6.0 -> 5.8 s, 8.4 -> 6.5 s,
  6.5 -> 3.4 s (three pairs, load average 7 to 11), PostgreSQL 8.9 -> 3.4 s. By the process's CPU time,
  steadier here (best of 3, the two alternated three times on one built database): SQLite 3.4 -> 2.2 s
  (1.6 s of it SQL), PostgreSQL's client 1.7 -> 0.7 s. With the plain rows JIT costs the year more:
  6.2 s without, 10.2 s with it (1.7x; week and month 3.1x and 2.3x).
Where the time goes (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE): a week's and a month's report is the open at
the end query (a case's last move before `until`, correlated) and the moves of the period, read by
ix_case_events_case_id in case order; on PostgreSQL JIT compiled each query for 0.5 to 1.3 s before it ran
in tens of milliseconds. The year's report is its 214 603 moves: 2 to 3 s of SQL with the correlated
lookups of each move's earlier ones, and, until the moves were read as plain rows, as long again or
longer in Python timing them (half of it building ORM rows; some 0.5 s of CPU now). An index on
case_events.at does not help (SQLite then reads the year through it and sorts, slower), so the schema
has none.

    python benchmarks/period_report.py --index-at                     # SQLite, 100 000 cases
    python benchmarks/period_report.py --cases 20000 --repeat 3
    python benchmarks/period_report.py --with-jit --index-at \\
        --postgres-url postgresql+psycopg://user:pw@host/db
    # (PostgreSQL: in a schema of its own, dropped at the end; nothing else in the database is touched)
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

YEAR_START = datetime(2026, 1, 1)
CATEGORIES = ("illegal_parking", "street_vending", "piled_debris")
REASONS = ("false_positive", "duplicate", "not_a_violation", "exempt")
INDEX = "ix_case_events_at"
BATCH = 5000


def _history(rng: random.Random, seen: datetime) -> tuple[str, list[tuple[datetime, str, str, str | None]]]:
    """A case's final status and its moves (at, from, to, reason), as the workflow would write them."""
    draw = rng.random()
    if draw > 0.9:
        return "pending_review", []
    decided = seen + timedelta(hours=rng.uniform(0.2, 30))
    if draw > 0.7:
        return "rejected", [(decided, "pending_review", "rejected", rng.choice(REASONS))]
    moves = [(decided, "pending_review", "filed", None)]
    if rng.random() < 0.6:
        at = decided
        for before, after in (("filed", "dispatched"), ("dispatched", "handled"), ("handled", "verified")):
            at += timedelta(hours=rng.uniform(1, 72))
            moves.append((at, before, after, None))
        moves.append((at + timedelta(hours=rng.uniform(1, 48)), "verified", "closed", None))
    return moves[-1][2], moves


def _event(
    case_id: int,
    at: datetime,
    actor: str,
    action: str,
    before: str | None,
    after: str | None,
    reason: str | None,
) -> dict:
    """A case_events row with all its columns."""
    return {
        "case_id": case_id,
        "at": at,
        "actor": actor,
        "action": action,
        "from_status": before,
        "to_status": after,
        "reason": reason,
        "note": None,
    }


def fill(engine, cases: int, seed: int = 7) -> Counter[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """`cases` cases and their history over 2026 in the demo grid's cells; how many moves of each kind
    (from, to) were written."""
    from sqlalchemy import insert

    from api.cases.grids import import_cells, parse_geojson
    from api.storage.db import make_sessionmaker, table_of
    from api.storage.models import Case, CaseEvent

    with make_sessionmaker(engine)() as session:
        grid = parse_geojson(__import__("json").loads((REPO / "configs" / "demo-grid.geojson").read_text()))
        import_cells(session, cells=grid)
        session.commit()
    cells = [(cell.id, cell.team) for cell in grid]
    rng = random.Random(seed)
    written: Counter[tuple[str, str]] = Counter()
    case_rows: list[dict] = []
    event_rows: list[dict] = []

    def flush(conn) -> None:  # type: ignore[no-untyped-def]
        if case_rows:
            conn.execute(insert(table_of(Case)), case_rows)
        if event_rows:
            conn.execute(insert(table_of(CaseEvent)), event_rows)
        case_rows.clear()
        event_rows.clear()

    with engine.begin() as conn:
        for case_id in range(1, cases + 1):
            seen = YEAR_START + timedelta(seconds=rng.randrange(364 * 86400))
            status, moves = _history(rng, seen)
            cell, team = rng.choice(cells)
            last = moves[-1][0] if moves else seen
            case_rows.append(
                {
                    "id": case_id,
                    "number": f"GP-2026-{case_id:06d}",
                    "category": rng.choice(CATEGORIES),
                    "status": status,
                    "grid_cell_id": cell,
                    "team": team,
                    "first_seen": seen,
                    "last_seen": seen + timedelta(minutes=5),
                    "sightings_count": 1,
                    "recurrence_count": 0,
                    "reject_reason": moves[-1][3] if status == "rejected" else None,
                    "created_at": seen,
                    "updated_at": last,
                }
            )
            # every row names every column: an executemany takes its columns from the batch's first row
            # and drops the keys the others add (a batch starting with "created" lost every from_status)
            event_rows.append(_event(case_id, seen, "device:bench", "created", None, None, None))
            for at, before, after, reason in moves:
                event_rows.append(_event(case_id, at, "user:bench", after, before, after, reason))
            written.update((before, after) for _, before, after, _ in moves)
            if len(case_rows) >= BATCH:
                flush(conn)
        flush(conn)
    return written


# the moves the report times, each at least this share of the cases (the history draws 70% filed, 42%
# dispatched, handled and closed, 20% rejected)
KINDS = {
    "reviews (filed)": (("pending_review", "filed"), 0.5),
    "reviews (rejected)": (("pending_review", "rejected"), 0.1),
    "dispatches": (("filed", "dispatched"), 0.3),
    "handlings": (("dispatched", "handled"), 0.3),
    "closings": (("verified", "closed"), 0.3),
}


class BrokenHistory(Exception):
    """The rows in the database are not the history the benchmark meant to write."""


def check_history(  # type: ignore[no-untyped-def]
    engine, cases: int, written: Counter[tuple[str, str]]
) -> None:
    """Refuse to time a history that lost its moves: the database must hold every move written, with
    its from_status, and each kind the report times in a plausible number."""
    from sqlalchemy import func, select

    from api.storage.db import table_of
    from api.storage.models import CaseEvent

    events = table_of(CaseEvent)
    query = select(events.c.from_status, events.c.to_status, func.count()).group_by(
        events.c.from_status, events.c.to_status
    )
    with engine.connect() as conn:
        stored = Counter({(before, after): n for before, after, n in conn.execute(query)})
    stored.pop((None, None), None)  # the "created" rows
    if stored != written:
        raise BrokenHistory(f"moves written {dict(written)}, stored {dict(stored)}")
    for name, (kind, share) in KINDS.items():
        if stored[kind] < share * cases:
            raise BrokenHistory(f"{stored[kind]} {name} in {cases} cases (at least {share:.0%} expected)")


def time_reports(engine, repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The best seconds of each period's report over `repeat` runs."""
    from api.accounts.accounts import SYSTEM
    from api.cases.period_report import period_report
    from api.storage.db import make_sessionmaker

    periods = {
        "week": (datetime(2026, 6, 24), datetime(2026, 7, 1)),
        "month": (datetime(2026, 6, 1), datetime(2026, 7, 1)),
        "year": (YEAR_START, datetime(2027, 1, 1)),
    }
    factory = make_sessionmaker(engine, readonly=True)
    best: dict[str, float] = {}
    for name, (since, until) in periods.items():
        for _ in range(repeat):
            started = time.perf_counter()
            with factory() as session:
                report = period_report(session, since=since, until=until, principal=SYSTEM)
            elapsed = time.perf_counter() - started
            best[name] = min(best.get(name, elapsed), elapsed)
        t = report.total
        print(
            f"  {name:<6} {best[name]:7.3f} s  (found {t.found}, confirmed {t.confirmed}, rejected "
            f"{t.rejected}, dispatched {t.dispatch_hours.count}, handled {t.handling_hours.count}, "
            f"closed {t.closed})"
        )
    return best


def _schema_url(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` (where the migrations create the tables)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def run(url: str, args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from api.storage.db import make_engine, migrate

    engine = make_engine(url)
    try:
        migrate(engine)
        started = time.perf_counter()
        written = fill(engine, args.cases)
        print(
            f"{engine.dialect.name}: {args.cases} cases, {sum(written.values())} moves over 2026 "
            f"(written in {time.perf_counter() - started:.0f} s): "
            + ", ".join(f"{written[kind]} {name}" for name, (kind, _) in KINDS.items())
        )
        check_history(engine, args.cases, written)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        print("reports:")
        plain = time_reports(engine, args.repeat)
        if args.with_jit and engine.dialect.name == "postgresql":
            from api.cases import period_report as report_module

            turn_off = report_module.without_jit
            report_module.without_jit = lambda session: None  # the report as it ran before 2026-12-06
            try:
                print("with the server's JIT (the report before it turned JIT off):")
                jit = time_reports(engine, args.repeat)
            finally:
                report_module.without_jit = turn_off
            for name in plain:
                print(f"{name}: {jit[name] / plain[name]:.1f}x faster without JIT")
        if args.index_at:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE INDEX {INDEX} ON case_events (at)"))
                if engine.dialect.name == "postgresql":
                    conn.execute(text("ANALYZE case_events"))
            print(f"with an index {INDEX}:")
            indexed = time_reports(engine, args.repeat)
            for name in plain:
                print(f"{name}: {plain[name] / indexed[name]:.1f}x faster with the index")
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--index-at", action="store_true", help="also time with an index on case_events.at")
    parser.add_argument(
        "--with-jit",
        action="store_true",
        help="on PostgreSQL, also time the reports with the server's JIT, as they ran before the report "
        "turned it off",
    )
    parser.add_argument(
        "--postgres-url",
        help="run on this PostgreSQL database instead, in a schema of its own that is dropped at the end "
        "(nothing else in the database is touched)",
    )
    args = parser.parse_args()

    try:
        measure(args)
    except BrokenHistory as e:
        print(f"not timed: the history written is broken: {e}", file=sys.stderr)
        return 1
    return 0


def measure(args: argparse.Namespace) -> None:
    """Build the history in a database of its own, check it, time the reports, drop the database."""
    with own_database(args.postgres_url, "period_report") as url:
        run(url, args)


@contextlib.contextmanager
def own_database(postgres_url: str | None, name: str) -> Iterator[str]:
    """The URL of a database of the benchmark's own, removed at the end: a SQLite file in a temporary
    folder, or with `postgres_url` a schema `bench_<name>_<random>` of that database (nothing else in
    it is touched)."""
    if not postgres_url:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / (name + '.db')}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield _schema_url(postgres_url, schema)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
