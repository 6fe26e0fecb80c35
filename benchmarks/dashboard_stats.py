"""The dashboard's figures (/api/stats, api.cases.stats.counts) on a year of cases: milliseconds per query.

The cases and their history are benchmarks/period_report.py's (`--cases` over 2026, 70% filed, 20%
rejected, ...), built by its `fill` and checked by its `check_history` in a fresh SQLite database or, with
--postgres-url, in a PostgreSQL schema of its own, dropped at the end; one rejection in ten is then made
the service's own (a case superseded by a corrected resend, which the counts leave out). Then the
queries the dashboard sends (`by=category,day` and `by=grid_cell,status`), the full cube (no `by`) and
the total (`by=total`) run over the dashboard's ranges: none (its default, all time: here the year), its
presets the last 30 and 7 days (to the cases' last day) and one month (June), each in a read-only session
as the route runs it, `--repeat` times, and the best is printed.

On PostgreSQL each is timed twice: as the service runs it (JIT off for its transaction,
api.storage.db.without_jit, as the periodic report does) and with the server's JIT (jit = on,
jit_above_cost 100000 by default), as /api/stats ran before 2026-12-06; the JIT's own time for one
query comes from EXPLAIN (ANALYZE). SQLite has no JIT: one figure. `--against REV` also times
api/cases/stats.py as it was at a git revision, taking turns with this version, after checking that both
give the same rows for every grouping (each subset of the four dimensions) over every range.

Measured 2026-12-06 (100 000 cases, 1 987 superseded; `--against` the version before, best of 5, taking
turns, on a 2-core machine shared with other jobs, load average 2), SQLite: `by=category,day` over the
year, the dashboard's default, 126 ms against 324 ms before (367 and 803 ms at load average 7). Grouped
by category before the day, SQLite walked the cases through the index on (category, merge_bucket,
last_seen), a row lookup per case, and sorted twice (EXPLAIN QUERY PLAN); grouped in the rows' order
(day first) it reads the table straight through and one sort gives both. The full cube went 666 against
920 ms; `by=grid_cell,status` over the year (74 ms, its covering index), the totals and every range of
30 days or less (5-68 ms) ran as before. Of what is left over the year, about half is the superseded
cases' filter (each rejected case's moves looked up: the total alone takes 72 ms). An index on
case_events (case_id, to_status, actor) would halve that (the total's SQL 85 -> 40 ms of CPU); one led
by to_status makes SQLite read every rejection for each case (25 s). PostgreSQL 15 (JIT off, best of
3): the same rows, `by=category,day` over the year 97 against 119 ms, the rest within 10%.

    python benchmarks/dashboard_stats.py                              # SQLite, 100 000 cases
    python benchmarks/dashboard_stats.py --against HEAD               # and an uncommitted change's before
    python benchmarks/dashboard_stats.py --postgres-url postgresql+psycopg://user:pw@host/db
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.period_report import BrokenHistory, check_history, fill  # noqa: E402

OFFSET_H = 8.0  # the service's default (China)
QUERIES = {  # name: `by` as the route parses it
    "category,day (dashboard)": ("category", "day"),
    "grid_cell,status (dashboard)": ("status", "grid_cell"),
    "full cube": ("category", "status", "grid_cell", "day"),
    "total": (),
}
SHIFT = timedelta(hours=OFFSET_H)


def local_days(first: date, last: date) -> tuple[datetime, datetime]:
    """`since` and `until` (naive UTC) as the dashboard's filter sends them for these local days
    (api.http.pages.dashboard.StatsFilter.stats_query)."""
    return datetime.combine(first, time.min) - SHIFT, datetime.combine(last, time.max) - SHIFT


LAST_DAY = date(2026, 12, 31)  # the cases' last local day: "today" for the dashboard's presets
PERIODS = {  # the dashboard's choices: no range (its default: all time, here the year), its presets
    "year": (None, None),  # (api.http.pages.dashboard.PRESET_DAYS) on the last day, and a month
    "30 days": local_days(LAST_DAY - timedelta(days=29), LAST_DAY),
    "7 days": local_days(LAST_DAY - timedelta(days=6), LAST_DAY),
    "June": local_days(date(2026, 6, 1), date(2026, 6, 30)),
}
SUPERSEDED_EVERY = 10  # one rejection in this many marked the service's (api.jobs.superseding)


def mark_superseded(engine) -> int:  # type: ignore[no-untyped-def]
    """Make one rejection in SUPERSEDED_EVERY the service's own (a case superseded by a corrected
    resend), as the service writes it, so that the counts have cases to leave out; how many."""
    from sqlalchemy import update

    from api.cases.reading import SERVICE_ACTOR_PREFIX
    from api.storage.models import CaseEvent

    with engine.begin() as conn:
        marked = conn.execute(
            update(CaseEvent)
            .where(CaseEvent.to_status == "rejected", CaseEvent.case_id % SUPERSEDED_EVERY == 0)
            .values(actor=f"{SERVICE_ACTOR_PREFIX}bench")
        )
    return int(marked.rowcount)


def counts_of(revision: str):  # type: ignore[no-untyped-def]
    """api.cases.stats.counts as it was at a git revision (its module's text, run against this
    version's other modules), to time and compare with this version's."""
    import subprocess
    import types

    text = subprocess.run(
        ["git", "show", f"{revision}:api/cases/stats.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = sys.modules[f"stats_at_{revision}"] = types.ModuleType(f"stats_at_{revision}")  # dataclasses
    exec(compile(text, f"{revision}:api/cases/stats.py", "exec"), module.__dict__)
    return module.counts


Counts = Callable[..., Any]  # api.cases.stats.counts, of this version or of another


def figures(counted: Any) -> tuple[list[tuple[Any, ...]], int]:
    """A CaseCounts' rows and total as plain values (another version's classes are other classes)."""
    return [(r.category, r.status, r.grid_cell, r.day, r.count) for r in counted.rows], counted.total


class DifferentFigures(Exception):
    """Two versions of the counts disagree on the same rows."""


def time_queries(engine, repeat: int, modes: dict[str, Callable[[], Counts]]) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """The best milliseconds of each query in each mode (a name: what sets it up and gives the counts
    function to time) over `repeat` runs, each in a fresh read-only session, the modes taking turns (a
    slow moment of the machine falls on all); printed as they come. Every mode's figures must be the
    first one's (DifferentFigures)."""
    from api.accounts.accounts import SYSTEM
    from api.storage.db import make_sessionmaker

    factory = make_sessionmaker(engine, readonly=True)
    best: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    for period, (since, until) in PERIODS.items():
        for name, by in QUERIES.items():
            key = f"{name}, {period}"
            for _ in range(repeat):
                found = {}
                for mode, set_up in modes.items():
                    counts = set_up()
                    started = perf_counter()
                    with factory() as session:
                        counted = counts(
                            session, principal=SYSTEM, offset_h=OFFSET_H, since=since, until=until, by=by
                        )
                    elapsed = (perf_counter() - started) * 1000
                    best[mode][key] = min(best[mode].get(key, elapsed), elapsed)
                    found[mode] = figures(counted)
                first, *others = modes
                for mode in others:
                    if found[mode] != found[first]:
                        raise DifferentFigures(f"{key}: {mode}'s figures are not {first}'s")
            times = ", ".join(f"{mode} {best[mode][key]:7.1f} ms" for mode in modes)
            print(f"  {key:<38} {times}  ({len(counted.rows)} rows, {counted.total} cases)")
    return best


def compare_every_grouping(engine, counts: Counts, earlier: Counts, revision: str) -> int:  # type: ignore[no-untyped-def]
    """Every `by` (each subset of the four dimensions) over every period, this version's rows against
    the revision's: DifferentFigures at the first that differs; how many rows were compared."""
    from itertools import combinations

    from api.accounts.accounts import SYSTEM
    from api.cases.stats import DIMENSIONS
    from api.storage.db import make_sessionmaker

    factory = make_sessionmaker(engine, readonly=True)
    compared = 0
    for period, (since, until) in PERIODS.items():
        for size in range(len(DIMENSIONS) + 1):
            for by in combinations(DIMENSIONS, size):
                found = []
                for count in (counts, earlier):
                    with factory() as session:
                        found.append(
                            count(
                                session, principal=SYSTEM, offset_h=OFFSET_H, since=since, until=until, by=by
                            )
                        )
                if figures(found[0]) != figures(found[1]):
                    raise DifferentFigures(f"by={','.join(by) or 'total'}, {period}: not as at {revision}")
                compared += len(found[0].rows)
    return compared


def jit_explained(engine) -> str:  # type: ignore[no-untyped-def]
    """EXPLAIN (ANALYZE)'s JIT lines for the dashboard's first query over the year, with the server's
    JIT: whether it compiled, and for how long."""
    from sqlalchemy import event

    from api.accounts.accounts import SYSTEM
    from api.cases import stats
    from api.storage.db import make_sessionmaker

    sent: list[tuple[str, object]] = []  # the query is built inside counts: caught as it is sent

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with make_sessionmaker(engine, readonly=True)() as session:
            stats.counts(session, principal=SYSTEM, offset_h=OFFSET_H, by=QUERIES["category,day (dashboard)"])
    finally:
        event.remove(engine, "before_cursor_execute", note)
    statement, parameters = sent[-1]
    with engine.connect() as conn:
        plan = [row[0].strip() for row in conn.exec_driver_sql("EXPLAIN (ANALYZE) " + statement, parameters)]
    shown = [
        line for line in plan if line.startswith(("Functions", "Timing", "Planning Time", "Execution Time"))
    ]
    if not any(line.startswith("Functions") for line in plan):
        shown.insert(0, "no JIT (the plan's cost is under jit_above_cost)")
    return "; ".join(shown)


def as_set_up(versions: dict[str, Counts]) -> dict[str, Callable[[], Counts]]:
    """time_queries' modes for other versions' counts (each runs as its version ran it)."""
    return {name: (lambda count=count: count) for name, count in versions.items()}


def run(url: str, args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from api.storage.db import make_engine, migrate

    engine = make_engine(url)
    try:
        migrate(engine)
        started = perf_counter()
        written = fill(engine, args.cases)
        print(
            f"{engine.dialect.name}: {args.cases} cases, {sum(written.values())} moves over 2026 "
            f"(written in {perf_counter() - started:.0f} s)"
        )
        check_history(engine, args.cases, written)
        print(f"{mark_superseded(engine)} of the rejections marked the service's (superseded cases)")
        from api.cases import stats as stats_module

        earlier = {args.against: counts_of(args.against)} if args.against else {}
        if args.against:
            compared = compare_every_grouping(
                engine, stats_module.counts, earlier[args.against], args.against
            )
            print(f"every grouping over every period: the same {compared} rows as at {args.against}")
        if engine.dialect.name != "postgresql":
            print(f"/api/stats queries, best of {args.repeat}:")
            this = "this version" if earlier else "SQLite"
            time_queries(engine, args.repeat, {this: lambda: stats_module.counts} | as_set_up(earlier))
            return
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            jit, above = conn.execute(
                text("SELECT current_setting('jit'), current_setting('jit_above_cost')")
            ).one()
        turn_off = stats_module.without_jit

        def jit_off() -> Counts:  # as the service runs them (this version)
            stats_module.without_jit = turn_off
            return stats_module.counts

        def server_jit() -> Counts:  # as /api/stats ran before 2026-12-06
            stats_module.without_jit = lambda session: None
            return stats_module.counts

        print(
            f"/api/stats queries, best of {args.repeat}: JIT off in their transaction (this version), and "
            f"with the server's JIT (jit = {jit}, jit_above_cost {above}; as before)"
        )
        try:
            best = time_queries(
                engine, args.repeat, {"JIT off": jit_off, "JIT on": server_jit} | as_set_up(earlier)
            )
            server_jit()
            print(f"EXPLAIN (ANALYZE) of category,day over the year with JIT: {jit_explained(engine)}")
        finally:
            stats_module.without_jit = turn_off
        off, on = best["JIT off"], best["JIT on"]
        print(
            "with the server's JIT / JIT off: " + ", ".join(f"{key} {on[key] / off[key]:.2f}x" for key in off)
        )
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--postgres-url",
        help="run on this PostgreSQL database instead, in a schema of its own that is dropped at the end "
        "(nothing else in the database is touched)",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also time api/cases/stats.py as it was at this git revision (HEAD: before an uncommitted "
        "change), taking turns with this version, and check that every figure is the same",
    )
    args = parser.parse_args()
    try:
        measure(args)
    except BrokenHistory as e:
        print(f"not timed: the history written is broken: {e}", file=sys.stderr)
        return 1
    except DifferentFigures as e:
        print(f"the figures differ: {e}", file=sys.stderr)
        return 1
    return 0


def measure(args: argparse.Namespace) -> None:
    """Build the history in a database of its own, check it, time the queries, drop the database."""
    from benchmarks.period_report import own_database

    with own_database(args.postgres_url, "dashboard_stats") as url:
        run(url, args)


if __name__ == "__main__":
    sys.exit(main())
