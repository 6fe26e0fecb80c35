"""The `gridpatrol` command line.

Each command group lives in a module of api/commands/ with a `register(subparsers)` function, and
imports heavy packages (torch, ultralytics) only inside the handler that needs them, so that
`gridpatrol serve` without a worker and `gridpatrol config check` stay light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

# Command-group modules; each adds its subcommands. The model workshop's commands live with it (detect/model).
COMMAND_MODULES = (
    "api.cli.detection",
    "api.cli.service",
    "api.cli.cameras",
    "api.cli.webhooks",
    "api.cli.reports",
    "detect.model.commands",
    "api.cli.reviews",  # dataset from-reviews: joins the workshop's `dataset` group, so after it
    "api.cli.demo",
    "api.cli.runner",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridpatrol",
        description="Patrol-camera monitoring for city management: footage -> incidents -> cases.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # other packages' INFO (alembic's plugin list, ...) is noise to a user
        for name in ("alembic", "ultralytics", "httpx"):
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from api.cli import CommandError
    from detect.model.commands import CommandError as WorkshopError  # light: detect.model's CLI module

    try:
        return int(args.handler(args) or 0)
    except (CommandError, WorkshopError) as exc:
        print(f"gridpatrol {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        # api.storage.db's DatabaseBusy (a TimeoutError) from any command that writes: one line, not a
        # traceback. Looked up only when one is raised, so that commands without a database stay light.
        db = sys.modules.get("api.storage.db")
        if db is None or not isinstance(exc, db.DatabaseBusy):
            raise
        from api.cli.service import busy_message

        print(f"gridpatrol {args.command}: error: {busy_message(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        # a part the service needs failing (a damaged stored time, the evidence store not answering):
        # one line naming it, as the service answers it. Looked up only when raised, as above.
        errors = sys.modules.get("api.errors")
        if errors is None or not isinstance(exc, errors.ServiceFault):
            exc = _database_fault(exc)  # the database refusing the work (a read-only file, a full disk)
        print(f"gridpatrol {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _database_fault(exc: Exception) -> Exception:
    """A database error a command met, as the service's fault with the driver's first line (a
    read-only database file or folder: 'database: not reachable; retry (OperationalError: attempt to
    write a readonly database)'); a change the database refused (a constraint, a trigger) as what it
    refused; anything else (a bug) raised again as it was."""
    if "sqlalchemy.exc" not in sys.modules:
        raise exc
    from api.http.app import database_fault, describe_cause

    refused = _refused_change(exc)
    if refused is not None:
        return RuntimeError(refused)
    fault = database_fault(exc)
    if fault is None:
        raise exc
    return RuntimeError(f"{fault} ({describe_cause(exc)})")


_CHANGED_TABLE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


def _refused_change(exc: Exception) -> str | None:
    """What a database refused, in one line, when `exc` is its refusal of a change (IntegrityError: a
    unique or foreign-key constraint, a NOT NULL, a trigger's RAISE), e.g. 'database: refused a change
    to cameras (UNIQUE constraint failed: cameras.id); the change was rolled back, what was stored
    before is kept'. The database rolled the statement back and the command's session its
    transaction, so what was stored before stays as it was. None for any other error."""
    import sqlite3

    from sqlalchemy import exc as sa_exc

    from api.http.app import mask_credentials

    if isinstance(exc, sa_exc.IntegrityError):
        reason, statement = str(exc.orig), exc.statement or ""
    elif isinstance(exc, sqlite3.IntegrityError):
        reason, statement = str(exc), ""
    else:
        return None
    lines = reason.strip().splitlines()  # PostgreSQL's DETAIL line shows the row's values: left out
    reason = mask_credentials(lines[0]) if lines else "a constraint failed"
    table = _CHANGED_TABLE.match(statement)
    where = f"a change to {table.group(2)}" if table else "the change at commit"
    if not table and statement.strip().upper() != "COMMIT":
        where = "a change"
    return f"database: refused {where} ({reason}); the change was rolled back, what was stored before is kept"


if __name__ == "__main__":
    sys.exit(main())
