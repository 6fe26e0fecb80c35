"""The periodic report (GET /api/reports/period, its CSV, the /reports page and `gridpatrol report`) on a
small scripted set of cases: found, reviewed, closed, open at the end, times; a past period read from
the cases' history; an enforcement user's team only; a reversed range."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_testkit import LiveServer, incident_json, jpeg_bytes, post_incident

ZIYANG = "DEMO-ZIYANG-04"  # team-ziyang
HUBIN = "DEMO-HUBIN-04"  # team-hubin


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _move(client: httpx.Client, case_id: int, to: str, **extra: Any) -> None:
    files = None
    if to == "handled":
        files = {"photo": ("after.jpg", jpeg_bytes(f"after-{case_id}"), "image/jpeg")}
        extra.setdefault("note", "cleared")
    moved = client.post(f"/api/cases/{case_id}/transitions", data={"to": to, **extra}, files=files)
    assert moved.status_code == 200, moved.text


def _case(device: httpx.Client, name: str, when: datetime, position: tuple[float, float], **kw: Any) -> int:
    made = post_incident(device, incident_json(name, when=_iso(when), position=position, **kw))
    assert made.status_code in (200, 201), made.text
    return int(made.json()["case_id"])


def _script(server: LiveServer) -> dict[str, Any]:
    """Five cases in team-ziyang's cell and one in team-hubin's, first seen 3 days ago (and 2 days ago),
    then moved now: A closed, B rejected (false positive), C filed, D left in review, E rejected
    (duplicate), H (hubin) filed."""
    now = datetime.now(UTC)
    seen = now - timedelta(days=3)
    with (
        server.client("device") as device,
        server.client("admin") as admin,
        server.client("ziyang") as ziyang,
    ):
        a = _case(device, "a", seen, (30.2710, 120.1560))
        b = _case(device, "b", seen, (30.2710, 120.1610))
        c = _case(device, "c", seen - timedelta(hours=10), (30.2750, 120.1560), category="street_vending")
        d = _case(device, "d", seen + timedelta(days=1), (30.2755, 120.1615))
        e = _case(device, "e", seen, (30.2720, 120.1590), category="piled_debris")
        h = _case(device, "h", seen, (30.2741, 120.1340))
        for case_id in (a, c, h):
            _move(admin, case_id, "filed")
        _move(admin, b, "rejected", reason="false_positive")
        _move(admin, e, "rejected", reason="duplicate")
        _move(admin, a, "dispatched")
        _move(ziyang, a, "handled")
        _move(admin, a, "verified")
        _move(admin, a, "closed")
    return {"now": now, "seen": seen, "ids": {"a": a, "b": b, "c": c, "d": d, "e": e, "h": h}}


def test_the_report_counts_a_scripted_period(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    since, until = world["now"] - timedelta(days=10), world["now"] + timedelta(hours=1)
    with server.client("operator") as op:
        got = op.get("/api/reports/period", params={"since": _iso(since), "until": _iso(until)})
        assert got.status_code == 200, got.text
        report = got.json()
        closed_at = next(
            e["at"]
            for e in op.get(f"/api/cases/{world['ids']['a']}").json()["history"]
            if e["to"] == "closed"
        )
    total = report["total"]
    assert total["found"] == 6
    assert total["confirmed"] == 3  # A, C, H
    assert total["rejected"] == 2 and total["rejected_by_reason"] == {"duplicate": 1, "false_positive": 1}
    assert total["closed"] == 1
    assert total["open_at_end"] == 3  # C, H filed; D in review
    assert total["awaiting_review_at_end"] == 1
    # decided now: A, B, E and H seen 3 days before, C 3 days 10 hours: the median is ~72 hours
    review = total["review_hours"]
    assert review["count"] == 5 and 71.9 < review["median_h"] < 72.2, review
    assert 72.0 < review["p90_h"] < 82.2
    closing = total["closing_hours"]
    expected = (
        datetime.fromisoformat(closed_at.replace("Z", "+00:00")) - world["seen"]
    ).total_seconds() / 3600
    assert (
        closing["count"] == 1
        and abs(closing["median_h"] - expected) < 0.02
        and closing["p90_h"] == closing["median_h"]
    )
    assert total["handling_hours"]["count"] == 1 and total["handling_hours"]["median_h"] < 1
    by_category = {row["category"]: row["figures"] for row in report["by_category"]}
    assert by_category["street_vending"]["confirmed"] == 1 and by_category["street_vending"]["found"] == 1
    assert by_category["piled_debris"]["rejected_by_reason"] == {"duplicate": 1}
    assert by_category["piled_debris"]["review_hours"]["count"] == 1
    assert by_category["street_vending"]["closing_hours"] == {"count": 0, "median_h": None, "p90_h": None}
    cells = {cell["cell_id"]: cell for cell in report["by_cell"]}
    assert cells[ZIYANG]["team"] == "team-ziyang" and cells[ZIYANG]["figures"]["found"] == 5
    assert cells[HUBIN]["figures"]["open_at_end"] == 1
    assert cells["DEMO-NANXING-01"]["figures"]["found"] == 0  # every grid cell is listed, lagging ones too
    assert report["coverage"] == {"cells_passed": 0, "cells_in_grid": len(cells), "share": 0.0}


def _retime(server: LiveServer, case_id: int, *times: datetime) -> None:
    """Script a case's history: the times of its moves (its events from one status to another, in the
    order they were made) set to `times`, as if the moves had been made then."""
    from sqlalchemy import select

    from api.storage.models import CaseEvent

    with server.services.factory() as session:
        moves = session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id == case_id, CaseEvent.from_status.is_not(None))
            .order_by(CaseEvent.id)
        ).all()
        assert len(moves) == len(times), [(m.from_status, m.to_status) for m in moves]
        for move, at in zip(moves, times, strict=True):
            move.at = at.astimezone(UTC).replace(tzinfo=None)
        session.commit()


def test_the_time_from_confirmation_to_dispatch_is_reported(
    make_server: Any,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Confirmed -> dispatched: each filed -> dispatched move of the period, from the case's filing
    (before the period, too); a dispatch after a send-back is no new one, a case filed and not yet
    dispatched has none. In the JSON, the CSV's last columns, the page (both languages) and the CLI;
    the report had no such time."""
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    hours_ago = [now - timedelta(hours=h) for h in range(61)]
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        early, quick, sent_back, waiting = (
            _case(device, name, hours_ago[60], (30.2710 + n * 0.002, 120.1560))
            for n, name in enumerate(("early", "quick", "sent-back", "waiting"))
        )
        for case_id in (early, quick, sent_back, waiting):
            _move(admin, case_id, "filed")
        for case_id in (early, quick, sent_back):
            _move(admin, case_id, "dispatched")
        _move(team, sent_back, "handled")
        _move(admin, sent_back, "dispatched", note="still there")
        _retime(server, early, hours_ago[40], hours_ago[30])  # 10 h, filed before the period
        _retime(server, quick, hours_ago[20], hours_ago[16])  # 4 h
        _retime(server, sent_back, hours_ago[12], hours_ago[10], hours_ago[5], hours_ago[4])  # 2 h
        _retime(server, waiting, hours_ago[3])
        period = {"since": _iso(hours_ago[35]), "until": _iso(now + timedelta(hours=1))}
        report = admin.get("/api/reports/period", params=period).json()
        got_csv = admin.get("/api/reports/period.csv", params=period)
    expected = {"count": 3, "median_h": 4.0, "p90_h": 8.8}  # of 2, 4 and 10 hours
    assert report["total"]["dispatch_hours"] == expected, report["total"]
    cell = next(c for c in report["by_cell"] if c["cell_id"] == ZIYANG)
    assert cell["figures"]["dispatch_hours"] == expected
    header, *rows = list(csv.reader(io.StringIO(got_csv.content.decode("utf-8-sig"))))
    added = header.index("dispatch_median_h")
    assert header[added - 1 : added + 2] == ["closing_p90_h", "dispatch_median_h", "dispatch_p90_h"], header
    assert rows[-1][:2] == ["*", ""] and rows[-1][added : added + 2] == ["4.00", "8.80"]

    local = (now + timedelta(hours=8)).date()  # the test settings' offset: UTC+8
    days = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    with server.browser("operator") as op:
        page = op.get("/reports", params=days).text
    times = page.split('id="report-times"')[1].split("</table>")[0]
    row = '<th scope="row">Confirmed to dispatched</th><td class="num">3</td>'
    assert row in times and '<td class="num">4.0</td><td class="num">8.8</td>' in times.split(row)[1]
    assert "Confirmed to dispatched (median h)" in page.split('id="report-categories"')[1]
    with _in_chinese(server) as zh:
        assert "立案至派遣" in zh.get("/reports", params=days).text
    assert _cli_report(days, db_url, tmp_path, monkeypatch) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "confirmed -> dispatched" in line)
    assert "4.0 h  median; p90 8.8 h; moves: 3" in line, line


def test_a_case_sent_back_is_timed_to_its_first_handling_and_counted_as_sent_back(
    make_server: Any,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Dispatched -> handled is timed once a dispatch, to the case's first handling; verification's
    send-backs are counted as `sent_back` (cases, each once). A case sent back twice counted three
    handlings, the later two timed from the send-backs (4 and 5 hours of rework read as two quick
    jobs). A recurrence (closed, seen again, reopened) is a new dispatch, its handling timed again."""
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    ago = [now - timedelta(hours=h) for h in range(41)]
    place = (30.2750, 120.1600)
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        reworked = _case(device, "reworked", ago[40], (30.2710, 120.1560))
        once = _case(device, "once", ago[40], (30.2730, 120.1560))
        recurs = _case(device, "recurs", ago[20], place)  # within the merge window (24 h)
        for to in ("filed", "dispatched", "handled", "dispatched", "handled", "dispatched", "handled"):
            _move(
                team if to == "handled" else admin,
                reworked,
                to,
                **({"note": "still there"} if to == "dispatched" else {}),
            )
        for to in ("filed", "dispatched", "handled"):
            _move(team if to == "handled" else admin, once, to)
        for to in ("filed", "dispatched", "handled", "verified", "closed"):
            _move(team if to == "handled" else admin, recurs, to)
        seen_again = datetime.now(UTC) + timedelta(seconds=1)
        again = post_incident(device, incident_json("recurs-again", when=_iso(seen_again), position=place))
        assert again.json()["case_id"] == recurs and again.json()["recurrence"], again.text
        for to in ("filed", "dispatched", "handled"):
            _move(team if to == "handled" else admin, recurs, to)
        # filed, dispatched, handled 5 h later, sent back, handled, sent back, handled
        _retime(server, reworked, ago[30], ago[20], ago[15], ago[14], ago[10], ago[9], ago[4])
        _retime(server, once, ago[30], ago[20], ago[19])  # handled 1 h after its dispatch
        # handled 2 h after its dispatch; reopened, dispatched again and handled 3 h later
        cycles = (ago[19], ago[18], ago[16], ago[15], ago[14], ago[12], ago[11], ago[8], ago[5])
        _retime(server, recurs, *cycles)
        whole = {"since": _iso(ago[38]), "until": _iso(now + timedelta(hours=1))}
        total = admin.get("/api/reports/period", params=whole).json()["total"]
        later = {"since": _iso(ago[12]), "until": _iso(now + timedelta(hours=1))}
        rework_only = admin.get("/api/reports/period", params=later).json()["total"]
        got_csv = admin.get("/api/reports/period.csv", params=whole)
    assert total["handling_hours"] == {"count": 4, "median_h": 2.5, "p90_h": 4.4}, total  # 1, 2, 3, 5 h
    assert total["sent_back"] == 1, total
    # the reworked case's later handlings are not timed (its first one was, in its period); the
    # recurrence's first handling is
    assert rework_only["handling_hours"] == {"count": 1, "median_h": 3.0, "p90_h": 3.0}, rework_only
    assert rework_only["sent_back"] == 1
    rows = list(csv.DictReader(io.StringIO(got_csv.content.decode("utf-8-sig"))))
    assert "sent_back" in rows[0] and rows[-1]["sent_back"] == "1"
    assert rows[-1]["handling_median_h"] == "2.50"

    local = (now + timedelta(hours=8)).date()  # the test settings' offset: UTC+8
    days = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    with server.browser("operator") as op:
        page = op.get("/reports", params=days).text
    summary = page.split('id="report-total"')[1].split("</table>")[0]
    assert '<th scope="row">Sent back by verification</th><td class="num">1</td>' in summary, summary
    assert "Dispatched to first handling" in page.split('id="report-times"')[1]
    with _in_chinese(server) as zh:
        assert "核查退回" in zh.get("/reports", params=days).text
    assert _cli_report(days, db_url, tmp_path, monkeypatch) == 0
    out = capsys.readouterr().out.splitlines()
    assert next(line for line in out if "sent back by verification" in line).split()[-1] == "1"
    handling = next(line for line in out if "dispatched -> first handling" in line)
    assert "2.5 h  median; p90 4.4 h; moves: 4" in handling, handling


def _reject_without_a_known_reason(server: LiveServer, case_id: int, reason: str | None) -> None:
    """A rejection stored as one from before the service asked for a reason (or written outside it)."""
    from api.storage.models import Case, CaseEvent

    with server.services.factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        case.status, case.reject_reason = "rejected", reason
        session.add(
            CaseEvent(
                case_id=case_id,
                actor="user:admin",
                action="rejected",
                from_status="pending_review",
                to_status="rejected",
                reason=reason,
            )
        )
        session.commit()


def test_the_rejections_by_reason_add_up_to_the_rejected(
    make_server: Any,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rejection stored without a reason, or with one this version does not know, is counted as
    "unspecified" (rejected_unspecified, the CSV's column after those it had; "No reason given" on the
    page): the reasons add up to the rejected in the JSON, in every CSV row, on the page and in the
    CLI. Such a rejection was in no rejected_* column of the CSV, nor on the page."""
    server: LiveServer = make_server(db_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("device") as device, server.client("admin") as admin:
        given, without, unknown = (
            _case(device, name, now - timedelta(hours=5), (30.2710 + n * 0.002, 120.1560))
            for n, name in enumerate(("given", "without", "unknown"))
        )
        _move(admin, given, "rejected", reason="false_positive")
        _reject_without_a_known_reason(server, without, None)
        _reject_without_a_known_reason(server, unknown, "blocked_view")
        period = {"since": _iso(now - timedelta(days=1)), "until": _iso(now + timedelta(hours=1))}
        total = admin.get("/api/reports/period", params=period).json()["total"]
        got_csv = admin.get("/api/reports/period.csv", params=period)
    assert total["rejected"] == 3 == sum(total["rejected_by_reason"].values())
    assert total["rejected_by_reason"] == {"false_positive": 1, "unspecified": 2}, total
    rows = list(csv.DictReader(io.StringIO(got_csv.content.decode("utf-8-sig"))))
    reasons = [name for name in rows[0] if name.startswith("rejected_")]
    names = list(rows[0])
    assert reasons[-1] == "rejected_unspecified"
    assert names.index("rejected_unspecified") > names.index("closing_p90_h")  # after the columns it had
    for row in rows:
        assert sum(int(row[name]) for name in reasons) == int(row["rejected"]), row
    assert rows[-1]["rejected"] == "3" and rows[-1]["rejected_unspecified"] == "2"

    local = (now + timedelta(hours=8)).date()  # the test settings' offset: UTC+8
    days = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    with server.browser("operator") as op:
        page = op.get("/reports", params=days).text
    summary = page.split('id="report-total"')[1].split("</table>")[0]
    assert '<th scope="row">No reason given</th><td class="num">2</td>' in summary, summary
    shown = [
        int(n)
        for n in re.findall(r'<tr class="sub"><th scope="row">[^<]*</th><td class="num">(\d+)', summary)
    ]
    assert sum(shown[:-1]) == 3  # the reasons' rows (the last "sub" row is of those open at the end)
    with _in_chinese(server) as zh:
        assert "未注明原因" in zh.get("/reports", params=days).text
    assert _cli_report(days, db_url, tmp_path, monkeypatch) == 0
    assert "(false_positive 1, unspecified 2)" in capsys.readouterr().out


def _in_chinese(server: LiveServer) -> httpx.Client:
    from api.http.cookies import SESSION_COOKIE

    return httpx.Client(
        base_url=server.url, cookies={SESSION_COOKIE: server.tokens["operator"], "gp_lang": "zh-CN"}
    )


def _cli_report(
    days: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    """`gridpatrol report` of the local days days["since"] to days["until"] at UTC+8."""
    from api.cli.main import main

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    return main(
        ["report", "--since", days["since"], "--until", days["until"], "--database-url", database_url]
    )


def test_a_past_period_is_read_from_the_history(make_server: Any, sqlite_url: str) -> None:
    """The moves were made now; a period ending a day ago saw every case still open and in review."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    since, until = world["now"] - timedelta(days=10), world["now"] - timedelta(days=1)
    with server.client("admin") as admin:
        report = admin.get("/api/reports/period", params={"since": _iso(since), "until": _iso(until)}).json()
        before = admin.get(
            "/api/reports/period",
            params={"since": _iso(since), "until": _iso(world["seen"] - timedelta(hours=1))},
        ).json()
    total = report["total"]
    assert total["found"] == 6 and total["open_at_end"] == 6 and total["awaiting_review_at_end"] == 6
    assert total["confirmed"] == total["rejected"] == total["closed"] == 0
    assert total["review_hours"] == {"count": 0, "median_h": None, "p90_h": None}
    # before A, B, D, E and H were seen only C (seen 10 hours earlier) was there
    assert before["total"]["found"] == 1 and before["total"]["open_at_end"] == 1


def test_an_enforcement_user_sees_its_team_only(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    params = {
        "since": _iso(world["now"] - timedelta(days=10)),
        "until": _iso(world["now"] + timedelta(hours=1)),
    }
    with server.client("hubin") as hubin:
        report = hubin.get("/api/reports/period", params=params).json()
    assert report["total"]["found"] == 1 and report["total"]["confirmed"] == 1
    assert {cell["team"] for cell in report["by_cell"]} == {"team-hubin"}
    assert HUBIN in {cell["cell_id"] for cell in report["by_cell"]}
    assert {row["cell_id"] for row in report["rows"]} == {HUBIN}
    assert report["coverage"]["cells_in_grid"] == 6
    with server.client("admin") as admin, server.client("hubin") as hubin, server.client("ziyang") as ziyang:
        _move(admin, world["ids"]["c"], "dispatched", team="team-hubin")  # C, in team-ziyang's cell
        report = hubin.get("/api/reports/period", params=params).json()
        theirs = ziyang.get("/api/reports/period", params=params).json()
    # the report counts by the grid's cells and teams: C, dispatched to team-hubin, is still counted in
    # team-ziyang's cell, for team-ziyang, as the office's report lists it
    assert report["total"]["found"] == 1 and report["coverage"]["cells_in_grid"] == 6
    assert ZIYANG not in {cell["cell_id"] for cell in report["by_cell"]}
    assert theirs["total"]["found"] == 5


def test_a_cell_given_to_another_team_counts_its_cases_in_that_teams_report(
    make_server: Any, sqlite_url: str
) -> None:
    """A grid import (forced) gave team-ziyang's cell, with its open cases, to team-hubin: the office's
    report lists the cell and its cases under team-hubin, so team-hubin's report counts them too (it
    showed the cell at 0, the cases counted by the team they were filed with, in team-ziyang's report
    under a cell no longer its), and the teams' reports add up to the office's by its team column."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    params = {
        "since": _iso(world["now"] - timedelta(days=10)),
        "until": _iso(world["now"] + timedelta(hours=1)),
    }
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    for feature in grid["features"]:
        if feature["properties"]["id"] == ZIYANG:
            feature["properties"]["team"] = "team-hubin"
    logins = {"team-hubin": "hubin", "team-ziyang": "ziyang"}
    with server.client("admin") as admin:
        moved = admin.put("/api/grids", params={"force": "true"}, json=grid)
        assert moved.status_code == 200, moved.text
        office = admin.get("/api/reports/period", params=params).json()
    teams = {}
    for team, login in logins.items():
        with server.client(login) as client:
            teams[team] = client.get("/api/reports/period", params=params).json()
    office_cells = {cell["cell_id"]: cell for cell in office["by_cell"]}
    assert office_cells[ZIYANG]["team"] == "team-hubin"
    assert office_cells[ZIYANG]["figures"]["open_at_end"] == 2  # C filed, D in review
    hubin_cells = {cell["cell_id"]: cell for cell in teams["team-hubin"]["by_cell"]}
    assert hubin_cells[ZIYANG]["figures"] == office_cells[ZIYANG]["figures"]
    assert ZIYANG not in {cell["cell_id"] for cell in teams["team-ziyang"]["by_cell"]}
    for team, report in teams.items():
        theirs = [cell["figures"] for cell in office["by_cell"] if cell["team"] == team]
        for figure in ("found", "confirmed", "rejected", "closed", "open_at_end"):
            assert report["total"][figure] == sum(f[figure] for f in theirs), (team, figure)
    assert sum(report["total"]["found"] for report in teams.values()) == office["total"]["found"]


def test_a_reversed_or_missing_range_is_a_422(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("viewer") as viewer:
        for path in ("/api/reports/period", "/api/reports/period.csv"):
            reversed_ = viewer.get(
                path, params={"since": "2026-11-10T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
            )
            assert reversed_.status_code == 422, reversed_.text
            assert [e["field"] for e in reversed_.json()["errors"]] == ["until"]
            missing = viewer.get(path, params={"since": "2026-11-10T00:00:00Z"})
            assert missing.status_code == 422 and "until" in missing.text
            bad = viewer.get(path, params={"since": "last week", "until": "2026-11-01T00:00:00Z"})
            assert bad.status_code == 422 and "since" in bad.text
        assert (
            server.client()
            .get("/api/reports/period", params={"since": "2026-11-01", "until": "2026-11-02"})
            .status_code
            == 401
        )


def test_a_period_longer_than_the_reports_page_takes_is_a_422_naming_until(
    make_server: Any, sqlite_url: str
) -> None:
    """The /reports page refuses a range of more than 732 days, but GET /api/reports/period and its CSV
    took any: since=1970 until=2199 read the whole history into memory on one request. Now a period
    longer than 732 days is a 422 naming until and the limit; the page's longest range (732 local days)
    and its CSV link still answer."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    longest = {"since": _iso(start), "until": _iso(start + timedelta(days=732))}
    with server.client("viewer") as viewer, server.browser("operator") as op:
        for path in ("/api/reports/period", "/api/reports/period.csv"):
            for until in ("2199-12-31T00:00:00Z", _iso(start + timedelta(days=732, seconds=1))):
                since = "1970-01-01T00:00:00Z" if until.startswith("2199") else longest["since"]
                got = viewer.get(path, params={"since": since, "until": until})
                assert got.status_code == 422, (path, got.text)
                assert [e["field"] for e in got.json()["errors"]] == ["until"], got.text
                assert "more than 732 days after since" in got.text, got.text
            assert viewer.get(path, params=longest).status_code == 200
        days = {"range": "custom", "since": "2024-01-01", "until": "2026-01-01"}  # 732 days, both included
        page = op.get("/reports", params=days)
        assert page.status_code == 200 and 'class="flash error"' not in page.text, page.text[:300]
        csv_link = page.text.split('id="report-csv"')[0].rsplit('href="', 1)[1].split('"')[0]
        assert op.get(csv_link.replace("&amp;", "&")).status_code == 200
        longer = op.get("/reports", params={**days, "until": "2026-01-02"})
        assert "A report covers at most 732 days" in longer.text


def test_the_stats_and_the_cli_take_any_range(
    make_server: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/api/stats is not capped: the database groups and sums, a row for each group that has cases (a
    day without cases has none), so 1970 to 2199 reads no more than no range at all. `gridpatrol
    report` runs on the operator's machine and reports any range of days."""
    from api.cli.main import main

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device:
        assert post_incident(device, incident_json("old", when="2026-11-20T02:00:00Z")).status_code == 201
    whole = {"since": "1970-01-01T00:00:00Z", "until": "2199-12-31T00:00:00Z"}
    with server.client("viewer") as viewer:
        got = viewer.get("/api/stats", params={**whole, "by": "day"})
        assert (
            got.status_code == 200
            and got.json()["rows"] == viewer.get("/api/stats", params={"by": "day"}).json()["rows"]
        )
        assert [row["day"] for row in got.json()["rows"]] == ["2026-11-20"]
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    args = ["-q", "report", "--since", "1970-01-01", "--until", "2199-12-31", "--database-url", sqlite_url]
    assert main(args) == 0


def test_a_date_without_a_time_is_refused_naming_its_parameter(make_server: Any, sqlite_url: str) -> None:
    """since=2026-11-01 was read as 2026-11-01T00:00:00Z, 08:00 at the district's UTC+8: the API's
    "November" began and ended 8 hours after the November of /reports and `gridpatrol report` (local
    days), and /api/stats' until=2026-11-30 (first seen at or before) left out the whole last day, all
    without a word. A date alone is a 422 naming the parameter and saying what to send."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    paths = ("/api/stats", "/api/reports/period", "/api/reports/period.csv", "/api/coverage", "/api/cases")
    with server.client("operator") as op:
        for path in paths:
            for name, other in (("since", "until"), ("until", "since")):
                params = {name: "2026-11-01", other: "2026-11-15T00:00:00+08:00"}
                got = op.get(path, params=params)
                assert got.status_code == 422, (path, name, got.text)
                assert [e["field"] for e in got.json()["errors"]] == [name], (path, got.text)
                assert "2026-11-01 is a date without a time" in got.text, got.text
                assert "2026-11-01T00:00:00+08:00" in got.text  # what to send instead
        whole = {"since": "2026-11-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"}
        assert all(op.get(path, params=whole).status_code == 200 for path in paths)


def test_the_csv_has_a_header_a_row_per_cell_and_category_and_totals(
    make_server: Any, sqlite_url: str
) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    first = (world["now"] + timedelta(hours=8)).date() - timedelta(days=30)  # a local day (UTC+8)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC) - timedelta(hours=8)
    params = {"since": _iso(since), "until": _iso(world["now"] + timedelta(hours=1))}
    with server.client("operator") as op:
        got = op.get("/api/reports/period.csv", params=params)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    disposition = got.headers["content-disposition"]
    assert disposition.startswith(f"attachment; filename=gridpatrol-report-{first:%Y%m%d}-")  # local days
    assert got.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert list(rows[0])[:4] == ["cell_id", "cell_name", "team", "category"]
    cell_rows = {(r["cell_id"], r["category"]): r for r in rows}
    parking = cell_rows[(ZIYANG, "illegal_parking")]  # A (closed), B (rejected), D (in review)
    assert (parking["found"], parking["confirmed"], parking["rejected_false_positive"]) == ("3", "1", "1")
    assert (parking["closed"], parking["open_at_end"], parking["awaiting_review_at_end"]) == ("1", "1", "1")
    assert cell_rows[(ZIYANG, "street_vending")]["closing_median_h"] == ""  # no closing: no value, not 0
    total = rows[-1]
    assert (total["cell_id"], total["category"], total["found"], total["rejected"]) == ("*", "*", "6", "2")
    assert cell_rows[("*", "piled_debris")]["rejected_duplicate"] == "1"


def test_the_csv_file_is_named_by_the_first_and_last_days_it_covers(
    make_server: Any, sqlite_url: str
) -> None:
    """A week from the page (local days 11-23 to 11-29 at UTC+8) downloads as ...-20261123-20261129.csv,
    the days a person asked for, not the next Monday the period stops before; a period that ends at
    another time than local midnight is named by its instants."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    week = {"since": "2026-11-22T16:00:00Z", "until": "2026-11-29T16:00:00Z"}
    hours = {"since": "2026-11-23T00:30:00Z", "until": "2026-11-23T02:00:00Z"}
    with server.client("operator") as op:
        names = [
            op.get("/api/reports/period.csv", params=p).headers["content-disposition"] for p in (week, hours)
        ]
    assert names == [
        "attachment; filename=gridpatrol-report-20261123-20261129.csv",
        "attachment; filename=gridpatrol-report-20261123T083000-20261123T100000.csv",
    ]


def test_the_page_shows_the_report_in_both_languages(make_server: Any, sqlite_url: str) -> None:
    from api.http.cookies import SESSION_COOKIE

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    local = (world["now"] + timedelta(hours=8)).date()  # the test settings' offset: UTC+8
    params = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    with server.browser("operator") as op:
        page = op.get("/reports", params=params)
        assert page.status_code == 200, page.text[:300]
        assert "Periodic report" in page.text and 'href="/reports"' in page.text  # in the menu too
        total = page.text.split('id="report-total"')[1].split("</table>")[0]
        assert '<th scope="row">Found</th><td class="num">6</td>' in total
        assert '<th scope="row">False positive</th><td class="num">1</td>' in total
        assert 'href="/api/reports/period.csv?since=' in page.text
        assert "@media print" in op.get("/static/css/reports.css").text
        assert "http://" not in page.text.replace(server.url, "") and "https://" not in page.text
        csv_link = page.text.split('id="report-csv"')[0].rsplit('href="', 1)[1].split('"')[0]
        assert op.get(csv_link.replace("&amp;", "&")).status_code == 200
        week = op.get("/reports")
        assert week.status_code == 200 and 'aria-current="true">Last week' in week.text
        wrong = op.get("/reports", params={"range": "custom", "since": "2026-11-10", "until": "2026-11-01"})
        assert wrong.status_code == 200
        assert "The start date 2026-11-10 is after the end date 2026-11-01" in wrong.text
        for since, until in (("0001-01-01", "0001-01-02"), ("9999-12-30", "9999-12-31")):  # no overflow
            far = op.get("/reports", params={"range": "custom", "since": since, "until": until})
            assert far.status_code == 200 and f"From: {since} is outside the years 1970 to 2199" in far.text
    token = server.tokens["operator"]
    with httpx.Client(base_url=server.url, cookies={SESSION_COOKIE: token, "gp_lang": "zh-CN"}) as zh:
        page = zh.get("/reports", params=params)
        assert page.status_code == 200 and "定期报表" in page.text
        assert '<th scope="row">驳回</th>' in page.text  # the word of every other page, not 不予立案
        assert "Periodic report" not in page.text


def test_the_cli_prints_the_report_and_writes_its_csv(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli.main import main

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    local = (world["now"] + timedelta(hours=8)).date()
    since, until = (local - timedelta(days=5)).isoformat(), local.isoformat()
    out_csv = tmp_path / "week.csv"
    args = ["report", "--since", since, "--until", until, "--database-url", sqlite_url, "--csv", str(out_csv)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Periodic report {since} to {until} (local days, UTC+08:00)" in out
    lines = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert lines["found"].split()[-1] == "6"
    assert "(duplicate 1, false_positive 1)" in lines["rejected"]
    assert "(awaiting review 1)" in lines["open at the end"] and " 3  " in lines["open at the end"]
    assert f"{ZIYANG} (team-ziyang)" in out and "street_vending" in out
    assert out_csv.read_bytes().startswith(b"\xef\xbb\xbfcell_id,")
    # a past week, before any move: everything still open and in review
    assert (
        main(
            [
                "report",
                "--since",
                since,
                "--until",
                (local - timedelta(days=2)).isoformat(),
                "--database-url",
                sqlite_url,
            ]
        )
        == 0
    )
    past = capsys.readouterr().out
    assert "(awaiting review 6)" in past
    assert main(["report", "--since", until, "--until", since, "--database-url", sqlite_url]) == 1
    assert "--until" in capsys.readouterr().err
    assert main(["report", "--since", "next week", "--until", until, "--database-url", sqlite_url]) == 1
    assert "--since: 'next week' is not a date" in capsys.readouterr().err
    assert main(["-q", "report", "--since", "9999-12-31", "--until", "9999-12-31"]) == 1
    assert "--since: 9999-12-31 is outside the years 1970 to 2199" in capsys.readouterr().err


def test_a_utc_offset_that_is_no_whole_number_of_minutes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/api/stats counts local days in whole minutes (SQL date arithmetic), the report and the pages
    bound their periods at the offset itself and write it rounded (UTC+08:01 for 8.01 h, 8 h 0.6 min):
    at such an offset a case seen at 00:00:20 local fell in one day on the dashboard and in the other
    in the report. Such an offset (a typo; every zone's is whole minutes) is refused by name."""
    from api.cli.main import main
    from api.settings import Settings, SettingsError

    for hours in ("8", "5.5", "5.75", "-3.5", "12.75", "-14"):
        assert Settings.from_env({"GRIDPATROL_TIMEZONE_OFFSET_H": hours}).timezone_offset_h == float(hours)
    for hours in ("8.01", "5.45001", "-0.1234"):
        with pytest.raises(SettingsError, match="GRIDPATROL_TIMEZONE_OFFSET_H: .*whole number of minutes"):
            Settings.from_env({"GRIDPATROL_TIMEZONE_OFFSET_H": hours})
    env = {"GRIDPATROL_DATA_DIR": str(tmp_path), "GRIDPATROL_TIMEZONE_OFFSET_H": "8.01"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["report", "--since", "2026-11-01", "--until", "2026-11-30"]) == 1
    err = capsys.readouterr().err
    assert "GRIDPATROL_TIMEZONE_OFFSET_H" in err and "8.01 h is 480.6 min" in err, err


def test_patrol_coverage_counts_the_cells_passed_in_the_period(make_server: Any, sqlite_url: str) -> None:
    """Passes as api.jobs.coverage writes them: two in team-ziyang's cell and one in team-hubin's in the
    period, one in another cell before it."""
    from api.storage.models import Upload, UploadCoverage

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC).replace(tzinfo=None)
    with server.services.factory() as session:
        upload = Upload(
            sha256="0" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="user:admin"
        )
        session.add(upload)
        session.flush()
        for cell, team, when in (
            (ZIYANG, "team-ziyang", now - timedelta(days=2)),
            (ZIYANG, "team-ziyang", now - timedelta(days=1)),
            (HUBIN, "team-hubin", now - timedelta(days=1)),
            ("DEMO-QINGBO-01", "team-qingbo", now - timedelta(days=30)),
        ):
            session.add(
                UploadCoverage(
                    upload_id=upload.id, cell_id=cell, team=team, entered_at=when, left_at=when, metres=5.0
                )
            )
        session.commit()
    params = {"since": _iso(now - timedelta(days=7)), "until": _iso(now)}
    with server.client("viewer") as viewer, server.client("ziyang") as ziyang:
        everyone = viewer.get("/api/reports/period", params=params).json()
        team = ziyang.get("/api/reports/period", params=params).json()
    assert everyone["coverage"] == {"cells_passed": 2, "cells_in_grid": 36, "share": round(2 / 36, 4)}
    passes = {cell["cell_id"]: cell["patrol_passes"] for cell in everyone["by_cell"]}
    assert passes[ZIYANG] == 2 and passes[HUBIN] == 1 and passes["DEMO-QINGBO-01"] == 0
    assert team["coverage"] == {"cells_passed": 1, "cells_in_grid": 6, "share": round(1 / 6, 4)}
    # the CSV has them too, as the /reports page: a cell's row over all categories and the total (a
    # cell's passes are no category's: empty on those rows); they were left out of it
    with server.client("viewer") as viewer:
        got = viewer.get("/api/reports/period.csv", params=params)
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    in_csv = {row["cell_id"]: row["patrol_passes"] for row in rows if row["category"] == "*"}
    assert in_csv[ZIYANG] == "2" and in_csv[HUBIN] == "1" and in_csv["DEMO-QINGBO-01"] == "0"
    assert in_csv["*"] == "3"
    assert {row["patrol_passes"] for row in rows if row["category"] != "*"} <= {""}


def test_a_cell_given_to_another_team_keeps_its_passes_in_that_teams_report(
    make_server: Any, sqlite_url: str
) -> None:
    """The report's cells are the grid's as it is now (a cell's team is its current one): a cell a grid
    import gave to team-hubin is hubin's, with the passes the patrols made through it, as the office's
    report shows them. Hubin's report listed it with 0 passes and left it out of its coverage, since the
    passes were read by the team the cell had when they were made (team-ziyang, whose report no longer
    lists the cell): no enforcement report counted them."""
    import json

    from api.storage.models import Upload, UploadCoverage
    from tests.api.api_testkit import DEMO_GRID

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC).replace(tzinfo=None)
    with server.services.factory() as session:
        upload = Upload(
            sha256="0" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="user:admin"
        )
        session.add(upload)
        session.flush()
        for cell, team, hours in (
            (ZIYANG, "team-ziyang", 30),
            (ZIYANG, "team-ziyang", 20),
            (HUBIN, "team-hubin", 10),
        ):
            when = now - timedelta(hours=hours)
            session.add(
                UploadCoverage(
                    upload_id=upload.id, cell_id=cell, team=team, entered_at=when, left_at=when, metres=5.0
                )
            )
        session.commit()
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    for feature in grid["features"]:
        if feature["properties"]["id"] == ZIYANG:
            feature["properties"]["team"] = "team-hubin"
    params = {"since": _iso(now - timedelta(days=7)), "until": _iso(now)}
    with server.client("admin") as admin, server.client("hubin") as hubin, server.client("ziyang") as ziyang:
        assert admin.put("/api/grids", json=grid).status_code == 200
        office = admin.get("/api/reports/period", params=params).json()
        team = hubin.get("/api/reports/period", params=params).json()
        former = ziyang.get("/api/reports/period", params=params).json()
    passes = {cell["cell_id"]: (cell["team"], cell["patrol_passes"]) for cell in office["by_cell"]}
    assert passes[ZIYANG] == ("team-hubin", 2) and passes[HUBIN] == ("team-hubin", 1)
    hubin_cells = {cell["cell_id"]: cell["patrol_passes"] for cell in team["by_cell"]}
    assert hubin_cells[ZIYANG] == 2 and hubin_cells[HUBIN] == 1, hubin_cells
    assert team["coverage"] == {"cells_passed": 2, "cells_in_grid": 7, "share": round(2 / 7, 4)}
    assert ZIYANG not in {cell["cell_id"] for cell in former["by_cell"]}
    assert former["coverage"] == {"cells_passed": 0, "cells_in_grid": 5, "share": 0.0}


def test_an_undone_decision_does_not_count(make_server: Any, sqlite_url: str) -> None:
    """A case rejected, the rejection undone (the review page's undo), then confirmed: one confirmation."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC)
    with (
        server.client("device") as device,
        server.client("operator") as api,
        server.browser("operator") as page,
    ):
        case_id = _case(device, "undone", now - timedelta(hours=5), (30.2710, 120.1560))
        kept = _case(device, "kept", now - timedelta(hours=5), (30.2750, 120.1600))
        _move(api, case_id, "rejected", reason="false_positive")
        _move(api, kept, "rejected", reason="exempt")
        undone = page.post(f"/review/{case_id}/undo")
        assert undone.status_code == 200, undone.text[:300]
        params = {"since": _iso(now - timedelta(days=1)), "until": _iso(now + timedelta(hours=1))}
        between = api.get("/api/reports/period", params=params).json()["total"]
        _move(api, case_id, "filed")
        total = api.get("/api/reports/period", params=params).json()["total"]
    assert (between["confirmed"], between["rejected_by_reason"], between["awaiting_review_at_end"]) == (
        0,
        {"exempt": 1},
        1,
    )
    assert (total["confirmed"], total["rejected_by_reason"], total["review_hours"]["count"]) == (
        1,
        {"exempt": 1},
        2,
    )
    assert total["awaiting_review_at_end"] == 0 and total["open_at_end"] == 1


def test_a_name_a_spreadsheet_would_run_is_quoted_in_the_csv(make_server: Any, sqlite_url: str) -> None:
    """A grid cell named like a formula (a grid file comes from outside) reaches the CSV as text."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    grid["features"][0]["properties"]["name"] = '=HYPERLINK("http://x.invalid","open")'
    grid["features"][1]["properties"]["name"] = "-1+2"
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=grid).status_code == 200
        month = {"since": "2026-01-01T00:00:00+08:00", "until": "2026-02-01T00:00:00+08:00"}
        got = admin.get("/api/reports/period.csv", params=month)
    assert got.status_code == 200, got.text
    names = {
        r["cell_id"]: r["cell_name"] for r in csv.DictReader(io.StringIO(got.content.decode("utf-8-sig")))
    }
    first, second = (f["properties"]["id"] for f in grid["features"][:2])
    assert names[first] == '\'=HYPERLINK("http://x.invalid","open")' and names[second] == "'-1+2"
    assert names["DEMO-ZIYANG-04"].startswith("紫阳")  # others as they are


LEADING_ZERO = "0440305001001"  # a district's grid code: digits, a leading zero
LONG_CODE = "4403050010010012345"  # 19 digits: Excel keeps 15 and zeroes the rest
FORMULA_NAME = '=HYPERLINK("http://x.invalid","open")'
TOO_LONG_NAME = "=" + '"' * 130  # its quotes doubled, too long for a text constant in an Excel formula
TEAM = "紫阳街道城管中队"


def _coded_grid() -> dict[str, Any]:
    """The demo grid with ZIYANG's cell coded LEADING_ZERO (team TEAM, named FORMULA_NAME), HUBIN's
    LONG_CODE and XIAOYING's named TOO_LONG_NAME."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    changes = {
        ZIYANG: {"id": LEADING_ZERO, "team": TEAM, "name": FORMULA_NAME},
        HUBIN: {"id": LONG_CODE},
        "DEMO-XIAOYING-04": {"name": TOO_LONG_NAME},
    }
    for feature in grid["features"]:
        feature["properties"].update(changes.get(feature["properties"]["id"], {}))
    return dict(grid)


def _as_excel_reads(field: str) -> str:
    """What Excel shows for a CSV field of the excel flavour: a ="..." cell's text constant."""
    if field.startswith('="') and field.endswith('"'):
        return field[2:-1].replace('""', '"')
    return field


def test_the_excel_csv_keeps_digit_codes_and_names_as_text(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Cell codes of digits (a leading zero; 19 digits), a Chinese team, a name like a formula and a
    device's category starting with "-": the plain CSV (download and --csv) has them as they are, the
    names a spreadsheet would run with an apostrophe; the excel flavour (flavour=excel, --csv-for
    excel, the page's second link) has every text field as a ="..." constant, the numbers as they are,
    and the same BOM; the CLI writes the same bytes as the download, its excel flavour named in --lang
    as the download's in lang (the pages' default, zh-CN, without it: it had the ids, with no --lang)."""
    from api.cli.main import main

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("admin") as admin, server.client("device") as device:
        assert admin.put("/api/grids", json=_coded_grid()).status_code == 200
        _case(device, "z", now - timedelta(days=1), (30.2710, 120.1560), category="-12.5")
    local = (now + timedelta(hours=8)).date()  # the test settings' offset: UTC+8
    since, until = local - timedelta(days=2), local
    params = {"since": f"{since - timedelta(days=1)}T16:00:00Z", "until": f"{until}T16:00:00Z"}
    with server.browser("operator") as op:
        plain = op.get("/api/reports/period.csv", params=params)
        excel = op.get("/api/reports/period.csv", params={**params, "flavour": "excel"})
        page = op.get("/reports", params={"range": "custom", "since": str(since), "until": str(until)})
        link = page.text.split('id="report-csv-excel"')[0].rsplit('href="', 1)[1].split('"')[0]
        in_english = op.get("/api/reports/period.csv", params={**params, "flavour": "excel", "lang": "en"})
        assert op.get(link.replace("&amp;", "&")).content == in_english.content  # the page's language
        in_chinese = op.get("/api/reports/period.csv", params={**params, "flavour": "excel", "lang": "zh-CN"})
        wrong = op.get("/api/reports/period.csv", params={**params, "flavour": "xlsx"})
    assert wrong.status_code == 422 and "flavour" in wrong.text
    assert plain.headers["content-disposition"].endswith(f"-{until:%Y%m%d}.csv")
    assert excel.headers["content-disposition"].endswith(f"-{until:%Y%m%d}-excel.csv")

    plain_bytes, excel_bytes = plain.content, excel.content
    assert plain_bytes.startswith(b"\xef\xbb\xbfcell_id,cell_name,team,category,found,")
    assert excel_bytes.startswith(b"\xef\xbb\xbfcell_id,cell_name,team,category,found,")
    row = f'\r\n{LEADING_ZERO},"\'=HYPERLINK(""http://x.invalid"",""open"")",{TEAM},\'-12.5,1,0,'
    assert row.encode("utf-8") in plain_bytes
    excel_row = (
        f'\r\n"=""{LEADING_ZERO}""","=""=HYPERLINK(""""http://x.invalid"""",""""open"""")""",'
        f'"=""{TEAM}""","=""-12.5""",1,0,'
    )
    assert excel_row.encode("utf-8") in excel_bytes
    assert f'\r\n"=""{LONG_CODE}""",'.encode() in excel_bytes and f"\r\n{LONG_CODE},".encode() in plain_bytes

    def rows(body: bytes) -> dict[tuple[str, str], dict[str, str]]:
        read = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
        return {(_as_excel_reads(r["cell_id"]), _as_excel_reads(r["category"])): r for r in read}

    plain_rows, excel_rows = rows(plain_bytes), rows(excel_bytes)
    assert len(plain_rows) == len(excel_rows) and (LEADING_ZERO, "'-12.5") in plain_rows
    coded = excel_rows[(LEADING_ZERO, "-12.5")]
    shown = {key: _as_excel_reads(value) for key, value in coded.items()}
    assert (shown["cell_name"], shown["team"]) == (FORMULA_NAME, TEAM)
    assert (coded["found"], coded["open_at_end"]) == ("1", "1")  # numbers stay numbers
    assert excel_rows[(LONG_CODE, "*")]["cell_id"] == f'="{LONG_CODE}"'
    too_long = excel_rows[("DEMO-XIAOYING-04", "*")]["cell_name"]
    assert too_long == "'" + TOO_LONG_NAME  # no ="..." for it: written as the plain flavour writes it
    assert excel_rows[("*", "*")]["cell_id"] == '="*"' and excel_rows[("*", "*")]["cell_name"] == ""

    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    days = ["report", "--since", str(since), "--until", str(until), "--database-url", sqlite_url]
    for flavour, body in (
        ([], plain_bytes),
        (["--csv-for", "plain"], plain_bytes),
        (["--csv-for", "excel"], in_chinese.content),  # in the pages' default language, as the page's link
        (["--csv-for", "excel", "--lang", "zh-CN"], in_chinese.content),
        (["--csv-for", "excel", "--lang", "en"], in_english.content),
    ):
        written = tmp_path / "week.csv"
        assert main([*days, "--csv", str(written), *flavour]) == 0
        assert written.read_bytes() == body, flavour
    capsys.readouterr()
    assert main([*days, "--csv-for", "excel"]) == 1
    assert capsys.readouterr().err == "gridpatrol report: error: --csv-for excel: needs --csv FILE to write\n"
    assert main([*days, "--csv", str(written), "--lang", "en"]) == 1  # the plain CSV keeps its ids
    assert capsys.readouterr().err.startswith("gridpatrol report: error: --lang en: names the columns of ")
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal, as a --csv-for it does not know
        main([*days, "--csv", str(written), "--csv-for", "excel", "--lang", "fr"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "gridpatrol report: error: argument --lang: invalid choice: 'fr' (choose from 'zh-CN', 'en')"
    )


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("0440305001001", '="0440305001001"'),
        ("4403050010010012345", '="4403050010010012345"'),
        ("3-1", '="3-1"'),  # a date to Excel
        ("紫阳街道城管中队", '="紫阳街道城管中队"'),
        ('=HYPERLINK("http://x.invalid")', '="=HYPERLINK(""http://x.invalid"")"'),
        ("@SUM(A1)", '="@SUM(A1)"'),
        ("a" * 255, '="' + "a" * 255 + '"'),
        ("a" * 256, "a" * 256),  # too long for a formula's text constant
        ("+" + '"' * 127, '="+' + '"' * 254 + '"'),  # 255 with its quotes doubled
        ("+" + '"' * 128, "'+" + '"' * 128),  # 257 with its quotes doubled
        ("😀" * 128, "😀" * 128),  # 256 UTF-16 units
    ],
)
def test_an_excel_text_cell(value: str, cell: str) -> None:
    from api.cases.period_report import excel_text

    assert excel_text(value) == cell


def test_the_benchmark_runs_from_the_repository() -> None:
    """benchmarks/period_report.py on a few hundred cases: it runs and prints each period's report."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "benchmarks/period_report.py", "--cases", "300", "--repeat", "1", "--index-at"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sqlite: 300 cases" in run.stdout and "(found 300," in run.stdout  # the year holds them all
    assert run.stdout.count("faster with the index") == 3


@pytest.mark.parametrize(
    ("offset_h", "since", "until", "seen"),
    [
        (8.0, "1970-01-01", "1970-01-02", "1970-01-01T00:30:00Z"),
        (-5.0, "2199-12-30", "2199-12-31", "2199-12-31T23:00:00Z"),
    ],
)
def test_the_first_and_last_days_of_the_calendar_give_a_working_csv_link(
    make_server: Any, sqlite_url: str, offset_h: float, since: str, until: str, seen: str
) -> None:
    """The local day 1970-01-01 begins before the earliest time the API takes at UTC+8 (and 2199-12-31
    ends after the latest at UTC-5): the period is held to the service's range, where every case lies,
    so the page's CSV link is not refused and counts the same cases as the page."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False, settings={"timezone_offset_h": offset_h})
    with server.client("device") as device:
        made = post_incident(device, incident_json("edge", when=seen))
        assert made.status_code == 201, made.text
    with server.browser("operator") as op:
        page = op.get("/reports", params={"range": "custom", "since": since, "until": until})
        assert page.status_code == 200 and 'class="flash error"' not in page.text
        total = page.text.split('id="report-total"')[1].split("</table>")[0]
        assert '<th scope="row">Found</th><td class="num">1</td>' in total
        csv_link = page.text.split('id="report-csv"')[0].rsplit('href="', 1)[1].split('"')[0]
        got = op.get(csv_link.replace("&amp;", "&"))
    assert got.status_code == 200, got.text
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert (rows[-1]["cell_id"], rows[-1]["found"]) == ("*", "1")


def test_a_coverage_short_of_all_or_none_is_never_written_100_or_0_percent(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Of a grid of 200 cells, 199 passed is 99% on the page and from the CLI (rounded, it was 100%, a
    full coverage the patrols did not make), and 1 passed is 1% (it was 0%)."""
    from api.cli.main import main
    from api.storage.models import Upload, UploadCoverage

    server: LiveServer = make_server(sqlite_url, run_webhooks=False, grid=False)
    cells = [f"CELL-{n:03d}" for n in range(200)]
    grid = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [120 + n / 1000, 30],
                            [120.001 + n / 1000, 30],
                            [120.001 + n / 1000, 30.001],
                            [120 + n / 1000, 30.001],
                            [120 + n / 1000, 30],
                        ]
                    ],
                },
                "properties": {"id": cell, "name": cell, "team": "team-ziyang"},
            }
            for n, cell in enumerate(cells)
        ],
    }
    with server.client("admin") as admin:
        imported = admin.put("/api/grids", json=grid)
        assert imported.status_code == 200, imported.text
    when = datetime(2026, 11, 20, 4, 0)  # 2026-11-20, local
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    for passed in (1, 199):
        with server.services.factory() as session:
            session.query(UploadCoverage).delete()
            upload = session.query(Upload).first() or Upload(
                sha256="0" * 64, size=1, media_type="video/mp4", path="x.mp4", uploaded_by="user:admin"
            )
            session.add(upload)
            session.flush()
            for cell in cells[:passed]:
                session.add(
                    UploadCoverage(
                        upload_id=upload.id,
                        cell_id=cell,
                        team="team-ziyang",
                        entered_at=when,
                        left_at=when,
                        metres=1.0,
                    )
                )
            session.commit()
        shown = f"{passed}%" if passed == 1 else "99%"
        with server.browser("operator") as op:
            page = op.get(
                "/reports", params={"range": "custom", "since": "2026-11-20", "until": "2026-11-20"}
            )
        total = page.text.split('id="report-total"')[1].split("</table>")[0]
        assert f"{passed} of 200 ({shown})" in total, total
        assert (
            main(["report", "--since", "2026-11-20", "--until", "2026-11-20", "--database-url", sqlite_url])
            == 0
        )
        assert f"{passed}/200 cells passed ({shown})" in capsys.readouterr().out


def test_the_cli_lines_up_its_columns_under_chinese_names(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A team named in Chinese (two columns a character on a terminal) leaves the numbers of its cells
    under their heads, as an ASCII name does."""
    import json
    import unicodedata

    from api.cli.main import main
    from tests.api.api_testkit import DEMO_GRID

    def columns(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    for feature in grid["features"]:
        if feature["properties"]["team"] == "team-ziyang":
            feature["properties"]["team"] = "紫阳街道城管执法中队"
    with server.client("admin") as admin:
        assert admin.put("/api/grids", json=grid).status_code == 200
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    assert (
        main(["report", "--since", "2026-11-20", "--until", "2026-11-20", "--database-url", sqlite_url]) == 0
    )
    out = capsys.readouterr().out.split("By grid cell (team)")[1].splitlines()
    head, rows = out[0], [line for line in out[1:] if line.strip()]
    assert any("紫阳街道城管执法中队" in row for row in rows) and any("team-hubin" in row for row in rows)
    assert {columns(row) for row in rows} == {columns("By grid cell (team)" + head)}


def test_a_range_the_page_does_not_offer_is_named(make_server: Any, sqlite_url: str) -> None:
    """/reports?range=quarter (a kept or typed link) shows last week and says so; it said nothing."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.browser("operator") as op:
        page = op.get("/reports", params={"range": "quarter"})
        week = op.get("/reports", params={"range": "week"})
        days = op.get("/reports", params={"range": "quarter", "since": "2026-11-02", "until": "2026-11-08"})
    assert page.status_code == 200
    assert (
        "There is no range &#39;quarter&#39; (last week, last month or chosen days); showing last week"
        in (page.text)
    )
    assert 'aria-current="true">Last week' in page.text and 'class="flash error"' not in week.text
    assert 'class="flash error"' not in days.text and 'value="2026-11-02"' in days.text


def test_a_recurrences_times_start_when_it_was_reopened(make_server: Any, sqlite_url: str) -> None:
    """A closed case seen again (within the merge window) is reopened for review: its new review
    decision and closing are timed from its reopening, not from its first sighting, which would charge
    the review and the closing of the recurrence with the whole earlier life of the case."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC)
    place = (30.2710, 120.1560)
    with server.client("device") as device, server.client("admin") as admin, server.client("ziyang") as team:
        case_id = _case(device, "first", now - timedelta(hours=20), place)
        for to in ("filed", "dispatched", "handled", "verified", "closed"):
            _move(team if to == "handled" else admin, case_id, to)
        after_closing = datetime.now(UTC) + timedelta(seconds=1)  # _iso drops the fraction of a second
        again = post_incident(device, incident_json("again", when=_iso(after_closing), position=place))
        assert again.json()["case_id"] == case_id and again.json()["recurrence"], again.text
        for to in ("filed", "dispatched", "handled", "verified", "closed"):
            _move(team if to == "handled" else admin, case_id, to)
        period = {
            "since": _iso(now - timedelta(hours=1)),
            "until": _iso(datetime.now(UTC) + timedelta(hours=1)),
        }
        total = admin.get("/api/reports/period", params=period).json()["total"]
    assert total["confirmed"] == 1 and total["closed"] == 1  # the case's last decision and closing
    assert total["review_hours"]["count"] == 1 and total["review_hours"]["median_h"] < 0.1, total
    assert total["closing_hours"]["count"] == 1 and total["closing_hours"]["median_h"] < 0.1, total


def test_a_csv_file_that_cannot_be_written_is_named_before_the_report_is_printed(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--csv naming a folder, a file in a missing folder or under a file: one line naming it and no
    report on the terminal; it printed the whole report and only then failed."""
    from api.cli.main import main
    from api.services import Services
    from tests.api.api_testkit import make_settings

    Services.build(make_settings(tmp_path, sqlite_url)).close()  # a database the report can read
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "a-file").write_text("not a folder")
    refused = {
        tmp_path / "missing" / "week.csv": f"no such folder {tmp_path / 'missing'}",
        tmp_path: "it is a folder",
        tmp_path / "a-file" / "week.csv": f"{tmp_path / 'a-file'} is not a folder",
    }
    week = ["report", "--since", "2026-11-23", "--until", "2026-11-29", "--database-url", sqlite_url]
    for path, why in refused.items():
        assert main([*week, "--csv", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == f"gridpatrol report: error: --csv: cannot write {path}: {why}\n"
    assert not (tmp_path / "missing").exists()
    assert main([*week, "--csv", str(tmp_path / "week.csv")]) == 0
    assert "Periodic report 2026-11-23 to 2026-11-29" in capsys.readouterr().out


def test_a_read_only_csv_file_or_folder_is_named_before_the_report_and_kept(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A read-only folder or a read-only file (its content kept) as --csv: one line, nothing printed,
    no file left in the folder."""
    import os
    import subprocess
    import sys

    from api.services import Services
    from tests.api.api_testkit import make_settings
    from tests.api.test_custody_cli import REPO, _as_a_user

    Services.build(make_settings(tmp_path, sqlite_url)).close()
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    kept = tmp_path / "last-week.csv"
    kept.write_text("last week's figures")
    env = dict(os.environ, GRIDPATROL_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    week = ["report", "--since", "2026-11-23", "--until", "2026-11-29", "--database-url", sqlite_url]
    read_only.chmod(0o555)
    kept.chmod(0o444)
    try:
        runs = {
            path: subprocess.run(
                _as_a_user([sys.executable, "-m", "api.cli.main", *week, "--csv", str(path)]),
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for path in (read_only / "week.csv", kept)
        }
    finally:
        read_only.chmod(0o755)
        kept.chmod(0o644)
    for path, run in runs.items():
        assert run.returncode == 1 and run.stdout == "", (run.stdout, run.stderr)
        assert run.stderr == f"gridpatrol report: error: --csv: cannot write {path}: permission denied\n"
    assert list(read_only.iterdir()) == [] and kept.read_text() == "last week's figures"


def test_a_csv_the_disk_has_no_room_for_leaves_the_file_that_was_there(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report's CSV that a full disk cannot hold: one line naming it, and the CSV that was there
    (last week's) kept whole, no partial file left; it was emptied and then the write failed."""
    import errno
    import json

    from api.cases.grids import import_cells, parse_geojson
    from api.cli.main import main
    from api.services import Services
    from tests.api.api_testkit import DEMO_GRID, make_settings, tmpfs

    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    for feature in grid["features"]:  # names long enough for a CSV over a page of the disk
        feature["properties"]["name"] = (feature["properties"]["name"] + " " * 200)[:200]
    services = Services.build(make_settings(tmp_path, sqlite_url))
    with services.factory() as session:
        import_cells(session, cells=parse_geojson(grid))
        session.commit()
    services.close()
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    with tmpfs(tmp_path / "small", 1) as disk:
        kept = disk / "week.csv"
        kept.write_text("last week's figures")
        with open(disk / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        week = ["report", "--since", "2026-11-23", "--until", "2026-11-29", "--database-url", sqlite_url]
        assert main([*week, "--csv", str(kept)]) == 1
        err = capsys.readouterr().err
        assert err == f"gridpatrol report: error: --csv: cannot write {kept}: no space left on device\n"
        assert kept.read_text() == "last week's figures"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "week.csv"]
        (disk / "filler").unlink()
        assert main([*week, "--csv", str(kept)]) == 0
        assert kept.read_bytes().startswith(b"\xef\xbb\xbfcell_id,") and len(kept.read_bytes()) > 4096


@pytest.mark.parametrize(
    ("hours", "in_csv", "in_text"),
    [
        (1234567.4, "1234567.40", "1234567.4 h"),  # 141 years: `:g` wrote 1.23457e+06
        (456789.25, "456789.25", "456789.2 h"),  # `:g` dropped the decimals (456789)
        (0.05, "0.05", "0.1 h"),  # three minutes
        (0.0, "0.00", "0.0 h"),
        (None, "", "–"),  # no such move
    ],
)
def test_report_hours_are_written_with_fixed_decimals(hours: float | None, in_csv: str, in_text: str) -> None:
    """The hours of the report's CSV (download and `gridpatrol report --csv`) have two decimals, as its
    JSON rounds them, and `gridpatrol report`'s text one, whatever their size: never 1.23457e+06."""
    from datetime import date

    from api.cases import period_report as pr
    from api.cli.reports import summary_lines

    moves = pr.Durations(0 if hours is None else 3, hours, hours)
    figures = pr.Figures(1, 1, 0, {}, 1, 0, 0, 0, moves, moves, moves, moves)
    report = pr.PeriodReport(
        since=datetime(2026, 11, 1),
        until=datetime(2026, 11, 8),
        total=figures,
        by_category=[pr.CategoryFigures("illegal_parking", figures)],
        by_cell=[pr.CellFigures(ZIYANG, "Ziyang 4", "team-ziyang", figures, 0)],
        rows=[pr.CellCategoryFigures(ZIYANG, "team-ziyang", "illegal_parking", figures)],
        coverage=pr.PatrolCoverage(0, 1, 0.0),
    )
    rows = list(csv.DictReader(io.StringIO(pr.csv_text(report))))
    assert len(rows) == 4
    for row in rows:
        assert [row[name] for name in pr.CSV_HEADER if name.endswith("_h")] == [in_csv] * 8, row
    lines = summary_lines(report, first=date(2026, 11, 1), last=date(2026, 11, 7), offset="+08:00")
    closing = next(line for line in lines if "found -> closed" in line)
    assert f"{in_text}  median; p90 {in_text};" in closing, closing
    assert "e+" not in "\n".join(lines)


def test_a_cell_a_grid_import_removed_is_not_called_outside_the_grid(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Cases keep the cell a later grid import removed: the page and `gridpatrol report` name that cell as
    removed, not as "outside the grid", which is where the cases without a cell are."""
    import json

    from api.cli.main import main
    from tests.api.api_testkit import DEMO_GRID

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)  # five cases in ZIYANG
    with server.client("device") as device, server.client("admin") as admin:
        _case(device, "nowhere", world["seen"], (31.5, 121.5))  # in no cell
        grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
        grid["features"] = [f for f in grid["features"] if f["properties"]["id"] != ZIYANG]
        assert admin.put("/api/grids", params={"force": "true"}, json=grid).status_code == 200
    local = (world["now"] + timedelta(hours=8)).date()
    since, until = (local - timedelta(days=5)).isoformat(), local.isoformat()
    with server.browser("operator") as op:
        page = op.get("/reports", params={"range": "custom", "since": since, "until": until}).text
    rows = {
        row.split('data-cell="')[1].split('"')[0]: row.split('<th scope="row">')[1].split("<")[0]
        for row in page.split('id="report-cells"')[1].split("</tbody>")[0].split("<tr")[2:]
    }
    assert rows[ZIYANG].strip() == "Removed from the grid", rows[ZIYANG]
    assert rows["unassigned"].strip() == "Outside the grid"
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    assert main(["report", "--since", since, "--until", until, "--database-url", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert f"{ZIYANG} (removed from the grid)" in out and "unassigned (–)" in out


def _resent_after_a_failure(make_server: Any, sqlite_url: str) -> LiveServer:
    """Footage whose job failed after filing two cases on 2026-11-20 (UTC+8), sent again with a corrected
    camera: the service rejects the first run's two cases as superseded, and the corrected run files the
    same two problems."""
    import hashlib

    from api.cases.incident import IncidentPayload
    from streams import SourceError
    from tests.api.api_testkit import footage, wait_job

    def pipeline(
        input: Path, config: Any, *, out_dir: Path, source_id: str, id_salt: str = "", **_: Any
    ) -> Any:
        for i in range(3):
            if i == 2 and not id_salt:  # the first run fails after two incidents
                raise SourceError(f"{input.name}: cannot decode frame {i}")
            if i == 2:
                return
            image = jpeg_bytes(f"{source_id}{id_salt}-{i}")
            (out_dir / f"inc{i}.jpg").write_bytes(image)
            evidence = {
                "role": "annotated",
                "path": f"inc{i}.jpg",
                "sha256": hashlib.sha256(image).hexdigest(),
            }
            yield IncidentPayload.model_validate(
                {
                    "id": f"{source_id}{id_salt}:{i}",
                    "category": "illegal_parking",
                    "source_id": "cam",
                    "first_seen_wall": "2026-11-20T09:00:00+08:00",
                    "position": [30.2741 + i * 0.001, 120.1551],
                    "evidence": [evidence],
                }
            )

    server: LiveServer = make_server(
        sqlite_url,
        run_worker=True,
        run_webhooks=False,
        pipeline=pipeline,
        config_loader=lambda: None,
        settings={"worker_poll_s": 0.05},
    )
    files = {"file": ("x.mp4", footage("resent"), "video/mp4")}
    with server.client("admin") as admin:
        for camera, outcome in (("cam-typo", "failed"), ("cam-b", "done")):
            sent = admin.post("/api/uploads", files=files, data={"camera_id": camera})
            assert sent.status_code in (200, 201), sent.text
            assert wait_job(admin, sent.json()["id"])["status"] == outcome
        statuses = sorted(c["status"] for c in admin.get("/api/cases").json()["items"])
        assert statuses == ["pending_review"] * 2 + ["rejected"] * 2, statuses
    return server


RESENT_DAY = {"since": "2026-11-19T16:00:00Z", "until": "2026-11-20T16:00:00Z"}  # 2026-11-20 at UTC+8


def test_the_cases_a_corrected_resend_superseded_count_nowhere(make_server: Any, sqlite_url: str) -> None:
    """The report of a corrected resend (_resent_after_a_failure) finds two, with no rejection (the
    service's own is no review decision) and two awaiting review; before, it found four and counted two
    duplicates rejected, timed as reviews."""
    server = _resent_after_a_failure(make_server, sqlite_url)
    with server.client("admin") as admin:
        day = RESENT_DAY
        total = admin.get("/api/reports/period", params=day).json()["total"]
        later = {"since": day["since"], "until": _iso(datetime.now(UTC) + timedelta(hours=1))}
        moves = admin.get("/api/reports/period", params=later).json()["total"]
    assert total["found"] == 2 and total["open_at_end"] == total["awaiting_review_at_end"] == 2, total
    assert moves["found"] == 2 and moves["rejected"] == 0 and moves["rejected_by_reason"] == {}, moves
    assert moves["review_hours"]["count"] == 0, moves


def test_the_dashboard_counts_a_corrected_resend_as_the_report_does(
    make_server: Any, sqlite_url: str
) -> None:
    """/api/stats (the dashboard's numbers) leaves out the cases a corrected resend superseded, as the
    report does: before, it counted them as two rejected cases of that day, four found to the report's
    two."""
    server = _resent_after_a_failure(make_server, sqlite_url)
    with server.client("admin") as admin:
        report = admin.get("/api/reports/period", params=RESENT_DAY).json()["total"]
        stats = admin.get("/api/stats", params={**RESENT_DAY, "by": "status,day"}).json()
    assert stats["total"] == report["found"] == 2, (stats, report)
    assert [(r["status"], r["day"], r["count"]) for r in stats["rows"]] == [
        ("pending_review", "2026-11-20", report["awaiting_review_at_end"])
    ]


def test_the_report_lists_the_categories_in_the_dashboards_order(make_server: Any, sqlite_url: str) -> None:
    """The dashboard listed the categories in their configured order (illegal parking, street vending,
    piled debris, then a site's own), the report by their ids (illegal_parking, piled_debris, ...): the
    same month read in two orders. The report's page, JSON and CSV follow the dashboard's order now,
    their totals where they were."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    with server.client("device") as device:  # a site's own rule's category, named before the others
        _case(device, "s", world["seen"], (30.2710, 120.1560), category="abandoned_bikes")
    order = ["illegal_parking", "street_vending", "piled_debris", "abandoned_bikes"]
    local = (world["now"] + timedelta(hours=8)).date()
    days = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    period = {
        "since": _iso(world["now"] - timedelta(days=10)),
        "until": _iso(world["now"] + timedelta(hours=1)),
    }
    with server.client("operator") as op:
        report = op.get("/api/reports/period", params=period).json()
        got = op.get("/api/reports/period.csv", params=period)
    with server.browser("operator") as op:
        dashboard = op.get("/dashboard").text
        page = op.get("/reports", params=days).text
    assert f'data-categories="{",".join(order)}"' in dashboard
    assert [row["category"] for row in report["by_category"]] == order
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert [r["category"] for r in rows if r["cell_id"] == "*" and r["category"] != "*"] == order
    assert [r["category"] for r in rows if r["cell_id"] == ZIYANG and r["category"] != "*"] == order
    assert (rows[-1]["cell_id"], rows[-1]["category"]) == ("*", "*")
    table = page.split('id="report-categories"')[1].split("</table>")[0]
    names = re.findall(r'<th scope="row">([^<]*)</th>', table)
    assert names == ["Illegal parking", "Street vending", "Piled debris", "abandoned_bikes", "All categories"]


def test_the_excel_csv_names_its_columns_and_categories_in_the_pages_language(
    make_server: Any, sqlite_url: str
) -> None:
    """The CSV for Excel, opened by district staff, had the column ids as headings (found,
    review_median_h) and the categories' ids (illegal_parking). With lang (the /reports page's link
    asks in the page's language) its headings and categories are named in that language; the numbers
    and the rows are the same, and the plain CSV keeps its ids for scripts (lang with it is a 422)."""
    from api.cases.period_report import CSV_HEADER
    from api.http.cookies import SESSION_COOKIE
    from api.http.i18n import catalogue

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    world = _script(server)
    local = (world["now"] + timedelta(hours=8)).date()
    days = {"range": "custom", "since": (local - timedelta(days=5)).isoformat(), "until": local.isoformat()}
    zh = catalogue("zh-CN")
    cookies = {SESSION_COOKIE: server.tokens["operator"], "gp_lang": "zh-CN"}
    with httpx.Client(base_url=server.url, cookies=cookies) as browser:
        page = browser.get("/reports", params=days).text
        link = (
            page.split('id="report-csv-excel"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        )
        assert "lang=zh-CN" in link
        chinese = browser.get(link)
        ids = browser.get(link.replace("&lang=zh-CN", ""))
        machine_link = link.replace("&flavour=excel", "").replace("&lang=zh-CN", "")
        plain = browser.get(machine_link)
        wrong = browser.get(machine_link + "&lang=zh-CN")
        unknown = browser.get(link.replace("lang=zh-CN", "lang=fr"))
    assert chinese.status_code == ids.status_code == plain.status_code == 200
    assert wrong.status_code == 422 and "lang" in wrong.text and "flavour=excel" in wrong.text
    assert unknown.status_code == 422 and "lang" in unknown.text

    def read(body: bytes) -> list[list[str]]:
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))

    named, by_id, machine = read(chinese.content), read(ids.content), read(plain.content)
    assert machine[0] == list(CSV_HEADER) and by_id[0] == list(CSV_HEADER)  # unchanged
    header = named[0]
    assert header[:8] == ["网格编码", "网格名称", "责任队伍", "类别", "发现", "立案", "驳回", "驳回：误报"]
    assert "发现至审核决定（中位数，小时）" in header and "驳回：未注明原因" in header
    assert len(set(header)) == len(CSV_HEADER) and not any("." in h or "_" in h for h in header), header
    categories = {row[3] for row in named[1:]}
    assert f'="{zh["category.illegal_parking"]}"' in categories and '="*"' in categories
    assert not any("illegal_parking" in row[3] or "piled_debris" in row[3] for row in named[1:])
    assert [row[:3] + row[4:] for row in named[1:]] == [row[:3] + row[4:] for row in by_id[1:]]


def _period_report_found(session: Any) -> int:
    from api.accounts.accounts import SYSTEM
    from api.cases.period_report import period_report

    report = period_report(session, since=datetime(2026, 1, 1), until=datetime(2027, 1, 1), principal=SYSTEM)
    return report.total.found


def _dashboard_stats_found(session: Any) -> int:
    from api.accounts.accounts import SYSTEM
    from api.cases.stats import counts

    return counts(session, principal=SYSTEM, offset_h=8.0, by=("category", "day")).total


@pytest.mark.parametrize("reader", [_period_report_found, _dashboard_stats_found], ids=["report", "stats"])
def test_the_report_and_stats_run_without_jit_on_postgresql_and_leave_the_connection_as_it_was(
    db_url: str, reader: Any
) -> None:
    """PostgreSQL compiled the report's queries and /api/stats's (priced per case, they pass
    jit_above_cost at some 10^4 cases) for longer than they then ran: 1 s of a month's report, and
    the dashboard's two sums over a year took 0.34 and 0.17 s with JIT, 0.11 and 0.07 s without, at
    100,000 cases (benchmarks/period_report.py, benchmarks/dashboard_stats.py). Each turns JIT off
    for its own transaction only."""
    from sqlalchemy import text

    from api.storage.db import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    postgresql = engine.dialect.name == "postgresql"
    factory = make_sessionmaker(engine, readonly=True)
    try:
        with factory() as session:
            server_jit = session.execute(text("SHOW jit")).scalar_one() if postgresql else None
        if server_jit == "off":
            pytest.skip("this PostgreSQL server has JIT turned off already")
        with factory() as session:
            assert reader(session) == 0
            if postgresql:
                assert session.execute(text("SHOW jit")).scalar_one() == "off"
        if postgresql:
            with factory() as session:
                assert session.execute(text("SHOW jit")).scalar_one() == server_jit
    finally:
        engine.dispose()


def test_the_excel_csv_names_the_cases_outside_every_cell_as_the_page_does(
    make_server: Any, sqlite_url: str
) -> None:
    """The Excel CSV, in the page's language, wrote the code `unassigned` for the cases outside every
    grid cell where the page says "Outside the grid" / 网格之外: it uses the page's words now (and the
    page's "Removed from the grid" for a cell a grid import removed); the plain CSV, for scripts, keeps
    the code."""
    import json

    from tests.api.api_testkit import DEMO_GRID

    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    now = datetime.now(UTC)
    with server.client("device") as device:
        _case(device, "far", now - timedelta(days=1), (31.5, 121.5))
        _case(device, "gone", now - timedelta(days=1), (30.2741, 120.1340))  # in HUBIN, removed below
    grid = json.loads(DEMO_GRID.read_text(encoding="utf-8"))
    grid["features"] = [f for f in grid["features"] if f["properties"]["id"] != HUBIN]
    params = {"since": _iso(now - timedelta(days=2)), "until": _iso(now)}
    with server.client("admin") as admin:
        assert admin.put("/api/grids", params={"force": "true"}, json=grid).status_code == 200
        plain = admin.get("/api/reports/period.csv", params=params)
        excel = {
            lang: admin.get("/api/reports/period.csv", params={**params, "flavour": "excel", "lang": lang})
            for lang in ("en", "zh-CN")
        }

    def rows(body: bytes) -> list[list[str]]:
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1:]

    plain_rows = rows(plain.content)
    assert ["unassigned", ""] in [row[:2] for row in plain_rows]
    assert [HUBIN, ""] in [row[:2] for row in plain_rows]
    words = {"en": ("Outside the grid", "Removed from the grid"), "zh-CN": ("网格之外", "已从网格中移除")}
    for lang, (outside, removed) in words.items():
        assert excel[lang].status_code == 200
        assert b"unassigned" not in excel[lang].content, lang
        excel_rows = [row[:2] for row in rows(excel[lang].content)]
        assert [f'="{outside}"', f'="{outside}"'] in excel_rows, (lang, excel_rows)
        assert [f'="{HUBIN}"', f'="{removed}"'] in excel_rows, (lang, excel_rows)


def test_the_cli_warns_of_a_period_not_ended_or_not_begun(
    make_server: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`gridpatrol report` of a period still running (or to come) printed its figures as final, where
    the /reports page says that the period has not ended: it says so too now, in one line on stderr,
    and exits 0; a past period has no warning."""
    from api.cli.main import main

    make_server(sqlite_url, run_webhooks=False)
    monkeypatch.setenv("GRIDPATROL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRIDPATROL_TIMEZONE_OFFSET_H", "8")
    today = (datetime.now(UTC) + timedelta(hours=8)).date()
    periods = {
        "This period has not ended": (today - timedelta(days=3), today),
        "This period has not begun": (today + timedelta(days=1), today + timedelta(days=7)),
        "": (today - timedelta(days=7), today - timedelta(days=1)),
    }
    for said, (first, last) in periods.items():
        args = ["report", "--since", first.isoformat(), "--until", last.isoformat()]
        assert main([*args, "--database-url", sqlite_url]) == 0
        captured = capsys.readouterr()
        assert "Periodic report" in captured.out
        if not said:
            assert captured.err == "", captured.err
            continue
        assert captured.err.startswith(f"gridpatrol report: warning: {said}"), captured.err
        assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
