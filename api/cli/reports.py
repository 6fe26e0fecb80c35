"""`gridpatrol report`: the periodic report (api.cases.period_report) of a range of local days, as text
on the terminal and, with --csv, the CSV that GET /api/reports/period.csv gives (UTF-8 with a BOM);
--csv-for excel writes its text columns as Excel keeps them (the download's flavour=excel), its
headings and categories named in --lang (zh-CN, the pages' default, unless asked: the /reports page's
link asks in the page's language); the file is written by the download's own code (api.http.report_csv).

Days are the district's local days (settings.timezone_offset_h, as the dashboard and the /reports
page): --since 2026-11-23 --until 2026-11-29 is that week, Monday to Sunday, both days included. The
report reads the database only (an existing one: a mistyped location is refused, not created). Any
number of days, unlike the API and the page (period_report.MAX_PERIOD_DAYS): it runs on the operator's
machine, for whoever may read the whole database, and a report of several years is theirs to ask for.
A period that has not ended (or not begun) is said so on stderr, in the words of the /reports page's note.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import tempfile
import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from api.cli import CommandError
from api.http.i18n import DEFAULT_LANGUAGE, LANGUAGES

NAME_WIDTH = 30  # the longest label ("dispatched -> first handling") and two spaces


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "report",
        help="the periodic report of a range of days: found, reviewed, closed, open, how fast, coverage",
        description="Print the periodic report of the local days --since to --until (both included): cases "
        "found, confirmed, rejected (by reason) and closed in them, open and awaiting review at the end "
        "(from the cases' history), median and 90th-percentile hours, patrol coverage; by category and "
        "by grid cell. Reads the database of the GRIDPATROL_* settings.",
    )
    p.add_argument("--since", required=True, metavar="DATE", help="first local day (YYYY-MM-DD)")
    p.add_argument("--until", required=True, metavar="DATE", help="last local day, included (YYYY-MM-DD)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write the report's CSV here")
    p.add_argument(
        "--csv-for",
        choices=("plain", "excel"),  # period_report.CSV_FLAVOURS; that module is imported when it runs
        help="plain (default): the values as they are, for scripts; excel: cell ids, names, teams and "
        'categories as ="..." cells, so that Excel keeps a cell code of digits (leading zeros, over 15 '
        "digits) as text",
    )
    p.add_argument(
        "--lang",
        choices=LANGUAGES,
        help="with --csv-for excel: its headings and categories named in this language, as the /reports "
        f"page's link asks for them (default {DEFAULT_LANGUAGE}, the pages' own default)",
    )
    p.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")
    p.set_defaults(handler=run_report)


def _day(text: str, option: str) -> date:
    from api.cases.period_report import FIRST_YEAR, LAST_YEAR

    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"{option}: '{text}' is not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise CommandError(f"{option}: {day.isoformat()} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return day


def _check_csv_path(path: Path) -> None:
    """Refuse a --csv FILE that cannot be written before the report is read and printed: a folder, a
    missing folder (or a file) where its folder belongs, a file or folder this user may not write. An
    existing file is opened for appending, nothing written: it keeps its content until the report
    replaces it; the folder the report is written in (see _write_csv) is tried with a file made and
    removed at once."""
    if path.is_dir():
        raise CommandError(f"--csv: cannot write {path}: it is a folder")
    folder = path.parent
    if not folder.exists():
        raise CommandError(f"--csv: cannot write {path}: no such folder {folder}")
    if not folder.is_dir():
        raise CommandError(f"--csv: cannot write {path}: {folder} is not a folder")
    try:
        if path.exists():
            with open(path, "ab"):  # a read-only file is refused, not replaced
                pass
        if path.is_file() or not path.exists():
            target = path.resolve()
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".probe"):
                pass
    except OSError as exc:
        raise CommandError(f"--csv: cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None


def _write_csv(path: Path, text: str) -> None:
    """`text` to `path` through a file beside it, renamed over it once written (with an existing file's
    permissions): a write that fails (a full disk) leaves the file that was there as it was, and no
    partial file. Through a symbolic link the file it names is replaced; what is no regular file (a
    terminal, /dev/stdout) is written in place. Raises OSError."""
    from api.storage.disk import replace_durably

    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return
    target = path.resolve()
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8", newline="")
        if target.exists():
            os.chmod(partial, stat.S_IMODE(target.stat().st_mode))
        replace_durably(partial, target)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def _columns(text: str) -> int:
    """The columns a terminal gives `text`: two for a wide character (a Chinese cell or team name)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _left(text: str, width: int) -> str:
    """`text` padded with spaces to `width` terminal columns."""
    return text + " " * (width - _columns(text))


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def summary_lines(report: object, *, first: date, last: date, offset: str) -> list[str]:
    """The report as lines of text (report: an api.cases.period_report.PeriodReport)."""
    from api.cases.period_report import CellFigures, Figures, PeriodReport, whole_percent

    assert isinstance(report, PeriodReport)
    total = report.total

    def cell_name(cell: CellFigures) -> str:
        return f"{cell.cell_id} ({'removed from the grid' if cell.removed else cell.team or '–'})"

    names = [c.category for c in report.by_category] + [cell_name(c) for c in report.by_cell]
    width = max([NAME_WIDTH, *(_columns(name) + 2 for name in names)])

    def line(name: str, value: object, extra: str = "") -> str:
        return f"  {_left(name, width)}{value!s:>8}{extra}"

    reasons = ", ".join(f"{reason} {n}" for reason, n in total.rejected_by_reason.items())
    lines = [
        f"Periodic report {first.isoformat()} to {last.isoformat()} (local days, UTC{offset})",
        line("found", total.found),
        line("confirmed", total.confirmed),
        line("rejected", total.rejected, f"  ({reasons})" if reasons else ""),
        line("closed", total.closed),
        line("sent back by verification", total.sent_back),
        line("open at the end", total.open_at_end, f"  (awaiting review {total.awaiting_review_at_end})"),
    ]
    for name, d in (
        ("found -> review decision", total.review_hours),
        ("confirmed -> dispatched", total.dispatch_hours),
        ("dispatched -> first handling", total.handling_hours),
        ("found -> closed", total.closing_hours),
    ):
        lines.append(line(name, _hours(d.median_h), f"  median; p90 {_hours(d.p90_h)}; moves: {d.count}"))
    cov = report.coverage
    share = f" ({whole_percent(cov.share)}%)" if cov.share is not None else ""
    lines.append(line("patrol coverage", f"{cov.cells_passed}/{cov.cells_in_grid}", f" cells passed{share}"))

    head = (
        f"{'found':>7}{'confirmed':>10}{'rejected':>9}{'closed':>7}{'open':>6}{'awaiting':>9}{'review h':>10}"
    )

    def row(name: str, f: Figures) -> str:
        median = f.review_hours.median_h
        return (
            f"  {_left(name, width)}{f.found:>7}{f.confirmed:>10}{f.rejected:>9}{f.closed:>7}"
            f"{f.open_at_end:>6}{f.awaiting_review_at_end:>9}{'–' if median is None else f'{median:.1f}':>10}"
        )

    lines += ["", f"By category{'':<{width - 9}}{head}"]
    lines += [row(c.category, c.figures) for c in report.by_category] or ["  (no cases)"]
    lines += ["", f"By grid cell (team){'':<{width - 17}}{head}{'passes':>8}"]
    for cell in report.by_cell:
        lines.append(row(cell_name(cell), cell.figures) + f"{cell.patrol_passes:>8}")
    return lines


def _unended_warning(
    since: datetime, until: datetime, now: datetime, offset_h: float, offset: str
) -> str | None:
    """The /reports page's note (in English) on a period that has not ended at `now` or not begun (all
    naive UTC): its figures will change. None for a period that has ended."""
    from api.http.i18n import Translator
    from api.http.pages.reports import unended_notice

    t = Translator("en")
    local = (now + timedelta(hours=offset_h)).strftime("%Y-%m-%d %H:%M")
    return unended_notice(since, until, now, t, t("reports.unended.when", when=local, offset=offset))


def run_report(args: argparse.Namespace) -> int:
    from api.accounts.accounts import SYSTEM
    from api.cases import period_report
    from api.cli.service import _services

    first, last = _day(args.since, "--since"), _day(args.until, "--until")
    if last < first:
        raise CommandError(f"--until: {last.isoformat()} is before --since {first.isoformat()}")
    if args.csv_for is not None and args.csv is None:
        raise CommandError(f"--csv-for {args.csv_for}: needs --csv FILE to write")
    if args.lang is not None and args.csv_for != "excel":
        raise CommandError(
            f"--lang {args.lang}: names the columns of --csv-for excel only (the plain CSV keeps its ids)"
        )
    if args.csv is not None:
        _check_csv_path(args.csv)
    services = _services(args, create=False)
    try:
        offset_h = services.settings.timezone_offset_h
        since, until = period_report.local_days(first, last, offset_h)
        now = datetime.now(UTC).replace(tzinfo=None)  # when the report is read
        with services.read_factory() as session:
            report = period_report.period_report(session, since=since, until=until, principal=SYSTEM)
    finally:
        services.close()
    from api.http.pages.dashboard import utc_offset_text  # as the pages write the offset
    from api.http.report_csv import report_csv

    unended = _unended_warning(since, until, now, offset_h, utc_offset_text(offset_h))
    if unended is not None:
        print(f"gridpatrol report: warning: {unended}", file=sys.stderr)
    for text in summary_lines(report, first=first, last=last, offset=utc_offset_text(offset_h)):
        print(text)
    if args.csv is not None:
        try:
            if args.csv_for == "excel":
                text = report_csv(report, flavour="excel", lang=args.lang or DEFAULT_LANGUAGE)
            else:
                text = report_csv(report, flavour="plain")
            _write_csv(args.csv, text)
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise CommandError(f"--csv: cannot write {args.csv}: {why}") from None
        print(f"wrote {args.csv}")
    return 0
