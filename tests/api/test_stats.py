"""api.cases.stats: how SQLite runs the dashboard's counts."""

from __future__ import annotations

from typing import Any

import pytest

from api.cases.stats import DIMENSIONS

GROUPINGS_BY_DAY = [("category", "day"), ("grid_cell", "day"), DIMENSIONS]


@pytest.mark.parametrize("by", GROUPINGS_BY_DAY, ids=[",".join(by) for by in GROUPINGS_BY_DAY])
def test_counts_by_day_read_the_cases_straight_through_and_sort_once(sqlite_url: str, by: Any) -> None:
    """Grouped by category (or cell) before the day, SQLite walked every case through an index on that
    column, a row lookup per case, and sorted the groups twice: `by=category,day` over a year of
    100,000 cases, the dashboard's default, took 3x as long (benchmarks/dashboard_stats.py). Grouped in
    the rows' order, it reads the table once and one sort gives both the groups and their order."""
    from sqlalchemy import event

    from api.accounts.accounts import SYSTEM
    from api.cases.stats import counts
    from api.storage.db import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    sent: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with make_sessionmaker(engine, readonly=True)() as session:
            counts(session, principal=SYSTEM, offset_h=8.0, by=by)
        statement, parameters = sent[-1]
        with engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    finally:
        engine.dispose()
    assert "SCAN cases" in plan, plan
    assert sum("TEMP B-TREE" in step for step in plan) == 1, plan
