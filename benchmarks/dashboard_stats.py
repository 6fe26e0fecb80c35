"""The dashboard's figures (/api/stats, api.cases.stats.counts) on a year of cases: milliseconds per query.

The cases and their history are benchmarks/period_report.py's (`--cases` over 2026, 70% filed, 20%
rejected, ...), built by its `fill` and checked by its `check_history` in a fresh SQLite database or, with
--postgres-url, in a PostgreSQL schema of its own, dropped at the end. Then the queries the dashboard
sends (`by=category,day` and `by=grid_cell,status`), the full cube (no `by`) and the total
(`by=total`) run over the whole year and over one month, each in a read-only session as the route runs
it, `--repeat` times, and the best is printed.

On PostgreSQL each is timed twice: as the service runs it (JIT off for its transaction,
api.storage.db.without_jit, as the periodic report does) and with the server's JIT (jit = on,
jit_above_cost 100000 by default), as /api/stats ran before 2026-12-06; the JIT's own time for one
query comes from EXPLAIN (ANALYZE). SQLite has no JIT: one figure.

    python benchmarks/dashboard_stats.py                              # SQLite, 100 000 cases
    python benchmarks/dashboard_stats.py --postgres-url postgresql+psycopg://user:pw@host/db
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

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
PERIODS = {
    "year": (None, None),
    "June": (datetime(2026, 5, 31, 16), datetime(2026, 6, 30, 15, 59, 59)),  # local days at UTC+8
}


def time_queries(engine, repeat: int, modes: dict[str, Callable[[], None]]) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """The best milliseconds of each query in each mode (a name: what sets it up) over `repeat` runs,
    each in a fresh read-only session, the modes taking turns (a slow moment of the machine falls on
    both); printed as they come."""
    from api.accounts.accounts import SYSTEM
    from api.cases import stats
    from api.storage.db import make_sessionmaker

    factory = make_sessionmaker(engine, readonly=True)
    best: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    for period, (since, until) in PERIODS.items():
        for name, by in QUERIES.items():
            key = f"{name}, {period}"
            for _ in range(repeat):
                for mode, set_up in modes.items():
                    set_up()
                    started = time.perf_counter()
                    with factory() as session:
                        counted = stats.counts(
                            session, principal=SYSTEM, offset_h=OFFSET_H, since=since, until=until, by=by
                        )
                    elapsed = (time.perf_counter() - started) * 1000
                    best[mode][key] = min(best[mode].get(key, elapsed), elapsed)
            figures = ", ".join(f"{mode} {best[mode][key]:7.1f} ms" for mode in modes)
            print(f"  {key:<38} {figures}  ({len(counted.rows)} rows, {counted.total} cases)")
    return best


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
            f"(written in {time.perf_counter() - started:.0f} s)"
        )
        check_history(engine, args.cases, written)
        if engine.dialect.name != "postgresql":
            print(f"/api/stats queries, best of {args.repeat}:")
            time_queries(engine, args.repeat, {"SQLite": lambda: None})
            return
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            jit, above = conn.execute(
                text("SELECT current_setting('jit'), current_setting('jit_above_cost')")
            ).one()
        from api.cases import stats as stats_module

        turn_off = stats_module.without_jit

        def jit_off() -> None:  # as the service runs them (this version)
            stats_module.without_jit = turn_off

        def server_jit() -> None:  # as /api/stats ran before 2026-12-06
            stats_module.without_jit = lambda session: None

        print(
            f"/api/stats queries, best of {args.repeat}: JIT off in their transaction (this version), and "
            f"with the server's JIT (jit = {jit}, jit_above_cost {above}; as before)"
        )
        try:
            best = time_queries(engine, args.repeat, {"JIT off": jit_off, "JIT on": server_jit})
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
    args = parser.parse_args()
    try:
        measure(args)
    except BrokenHistory as e:
        print(f"not timed: the history written is broken: {e}", file=sys.stderr)
        return 1
    return 0


def measure(args: argparse.Namespace) -> None:
    """Build the history in a database of its own, check it, time the queries, drop the database."""
    if not args.postgres_url:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{Path(tmp) / 'stats.db'}", args)
        return
    from sqlalchemy import create_engine, text

    from benchmarks.period_report import _schema_url

    schema = f"bench_dashboard_stats_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            run(_schema_url(args.postgres_url, schema), args)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
