"""`gridpatrol serve | worker | db | user | device | grid | evidence`: the case service's commands.

Commands that take a credential away (device revoke / rotate, user deactivate / passwd) end with
`PrincipalCache.invalidate()`, which tells running servers sharing GRIDPATROL_DATA_DIR at once.

Heavy imports stay inside handlers; `serve --no-worker` never imports detect/ or torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import logging
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli import CommandError
from api.settings import env_var

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.services import Services
    from api.storage.evidence_store import StoreEntry

log = logging.getLogger(__name__)

ENV_SITE_CONFIG = env_var("site_config")  # GRIDPATROL_SITE_CONFIG


def _settings(args: argparse.Namespace) -> Any:
    from api.settings import Settings, SettingsError

    try:
        return Settings.from_env(database_url=getattr(args, "database_url", None))
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def _services(args: argparse.Namespace, *, create: bool = False, settings: Any = None) -> Any:
    """The services on the database the settings name, migrated to the latest schema.

    `create`: a command that sets a site up (serve, db upgrade, user / device / camera add, grid
    import, camera import) may create that database. Every other command only works on an existing
    one: a mistyped GRIDPATROL_DATA_DIR or --database-url is refused, not answered from a new empty
    database ("0 users", "0 problems") left behind at the typo."""
    from sqlalchemy.exc import SQLAlchemyError

    from api.services import Services
    from api.storage.db import DatabaseBusy, SchemaTooNew, current_revision, migrate

    settings = settings or _settings(args)
    if not create:
        _require_database_file(settings.url)
    try:
        services = Services.build(settings, migrate_db=False)
        try:
            if not create and current_revision(services.engine) is None:
                raise CommandError(
                    f"no gridpatrol database at {_where(settings.url)}: it has no gridpatrol schema; "
                    f"{_CREATES_NONE}"
                )
            migrate(services.engine)
        except BaseException:
            services.close()
            raise
        return services
    except (SQLAlchemyError, ImportError) as exc:  # ImportError: a URL whose driver is not installed
        raise CommandError(
            f"cannot open the database: {type(exc).__name__}: {exc.args[0] if exc.args else exc}"
        ) from None
    except DatabaseBusy as exc:
        raise CommandError(busy_message(exc)) from None
    except SchemaTooNew as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the data folder or the database's folder cannot be made (after DatabaseBusy)
        raise CommandError(f"cannot open the database: {type(exc).__name__}: {exc}") from None


_CREATES_NONE = (
    "this command reads an existing database and creates none (check GRIDPATROL_DATA_DIR, "
    "GRIDPATROL_DATABASE_URL or --database-url; `gridpatrol db upgrade` creates one)"
)


def busy_message(exc: Exception) -> str:
    """DatabaseBusy as the command's one-line error."""
    return f"database busy ({exc}: another process is writing to it): retry"


def _where(url: str) -> str:
    """The database a URL names, for a message (no password)."""
    from sqlalchemy.engine import make_url

    from api.storage.db import sqlite_file

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_file(parsed) or ":memory:"
    return parsed.render_as_string(hide_password=True)


def _require_database_file(url: str) -> None:
    """CommandError unless the SQLite file the URL names exists (nothing is created on the way: not
    its folder either). Other databases are reached over the network and refuse a missing database
    themselves; an empty one is found by its missing schema."""
    from sqlalchemy.exc import ArgumentError

    from api.storage.db import database_url, sqlite_file

    try:
        parsed = database_url(url)
        if parsed.get_backend_name() != "sqlite":
            return
        database = sqlite_file(parsed) or ":memory:"
    except ArgumentError as exc:
        raise CommandError(f"database URL: {exc}") from None
    if database == ":memory:" or not Path(database).is_file():
        raise CommandError(f"database not found: {database}; {_CREATES_NONE}")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.http.app import create_app
    from api.storage.db import durability_warnings

    if args.workers < 1:
        raise CommandError(f"--workers: at least 1, not {args.workers}")
    settings = _with_site_config(args, _settings(args), serves=True, works=not args.no_worker)
    try:
        if args.workers == 1:
            app: Any = create_app(settings, run_worker=not args.no_worker)
            services = app.state.services
        else:  # migrated here, once, before the processes start
            services = _services(args, create=True)
    except CommandError:
        raise
    except Exception as exc:  # a database that cannot be reached or migrated
        raise CommandError(f"cannot start: {type(exc).__name__}: {exc}") from None
    for warning in durability_warnings(services.engine):
        log.warning("%s", warning)
    runner = _start_local_runner(services, args) if args.runner else None
    if runner is not None:
        # uvicorn re-raises the SIGTERM it caught once it has shut down: end through this function so
        # that the runner is stopped too, not left behind
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.workers == 1:
            uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
        else:
            services.close()
            _serve_processes(args, settings)
    finally:
        if runner is not None:
            runner.terminate()  # the runner stops its cameras and its Ray (at most a minute)
            try:
                runner.wait(70)
            except subprocess.TimeoutExpired:
                runner.kill()
    return 0


def _with_site_config(args: argparse.Namespace, settings: Any, *, serves: bool, works: bool) -> Any:
    """The settings with `--config FILE` as their site config (refused when FILE is none), of `serve`
    or `worker`; the warning of no_site_config_warning logged when the site config is no file."""
    if args.config is not None:
        if not args.config.is_file():
            raise CommandError(f"--config: {args.config}: no such config file")
        settings = settings.model_copy(update={"site_config": args.config.resolve()})
    warning = no_site_config_warning(settings.site_config, command=args.command, serves=serves, works=works)
    if warning:
        log.warning("%s", warning)
    return settings


def no_site_config_warning(site_config: Path, *, command: str, serves: bool, works: bool) -> str | None:
    """What `serve` and `worker` (the `command`) log when the site configuration they were given (or
    its default, configs/site.yaml in the folder they run from) is no file: a server runs, but the case
    page cannot label boxes (it says so), and a worker (`works`: serve's in-process one too) fails
    every upload's job on it. The repository's demo config is not taken instead: its zones and cameras
    would be applied to a real site's footage."""
    if site_config.is_file():
        return None
    effects = (["box labelling on the case pages is unavailable"] if serves else []) + (
        ["its uploads' jobs fail"] if works else []
    )
    return (
        f"no site configuration found at {site_config.resolve()} (looked for {ENV_SITE_CONFIG}, else "
        f"configs/site.yaml in the folder {command} runs from, {Path.cwd()}): {'; '.join(effects)}; "
        f"pass one with `gridpatrol {command} --config FILE` or {ENV_SITE_CONFIG}=FILE"
    )


def _serve_processes(args: argparse.Namespace, settings: Any) -> None:
    """`serve --workers N`: N server processes on one port (uvicorn's supervisor restarts one that
    dies), each made by api.http.app.app_from_env from these settings (passed in the environment)."""
    import uvicorn

    from api.http.app import SERVE_LOG_LEVEL_ENV, SERVE_WORKER_ENV

    os.environ["GRIDPATROL_DATABASE_URL"] = settings.url
    os.environ["GRIDPATROL_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ[ENV_SITE_CONFIG] = str(settings.site_config.resolve())  # --config, to every process
    os.environ[SERVE_WORKER_ENV] = "0" if args.no_worker else "1"
    os.environ[SERVE_LOG_LEVEL_ENV] = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    log.info("serving with %d processes on %s:%d", args.workers, args.host, args.port)
    uvicorn.run(
        "api.http.app:app_from_env",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
    )


LOCAL_RUNNER = "local-runner"


def _start_local_runner(services: Services, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """`gridpatrol runner` as a child process for this server's cameras, with the key of the device
    `local-runner` (made on first use, a fresh key at every start: the old one stops working)."""
    from sqlalchemy import select

    from api.accounts.accounts import create_device, rotate_device
    from api.storage.models import Device

    with _account_change(services) as session:
        device = session.scalar(select(Device).where(Device.name == LOCAL_RUNNER))
        if device is None:
            _, key = create_device(session, name=LOCAL_RUNNER, runner=True)
        elif not device.runner:
            raise CommandError(f"device '{LOCAL_RUNNER}' exists and is not a runner: rename or revoke it")
        else:
            _, key = rotate_device(session, name=LOCAL_RUNNER)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    spool = services.settings.data_dir.resolve() / "runner-spool"  # beside the server's own data
    command = [
        sys.executable,
        "-m",
        "api.cli",
        "runner",
        "--server",
        f"http://{host}:{args.port}",
        "--spool-dir",
        str(spool),
    ]
    log.info("starting the local runner (%s) for this server's cameras", LOCAL_RUNNER)
    return subprocess.Popen(
        command, env=dict(os.environ, GRIDPATROL_RUNNER_KEY=key), preexec_fn=_end_with_parent
    )


def _end_with_parent() -> None:
    """In the child: SIGTERM when the server dies, whatever way it dies (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _worker(args: argparse.Namespace) -> int:
    from api.jobs.worker import Worker

    settings = _with_site_config(args, _settings(args), serves=False, works=True)
    services = _services(args, settings=settings)
    worker = Worker(services.factory, services.settings, grid_cache=services.grid_cache)
    if args.once:
        worked = worker.run_once()
        print("ran one job" if worked else "no job waiting")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        worker.run_forever()
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from api.storage.db import current_revision

    services = _services(args, create=True)
    print(f"database at revision {current_revision(services.engine)}")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    env = os.environ.get("GRIDPATROL_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        raise CommandError("no password: use --password-stdin or set GRIDPATROL_PASSWORD")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CommandError("the passwords differ")
    return first


@contextlib.contextmanager
def _account_change(services: Services) -> Iterator[Session]:
    """A session for one account change: committed when it succeeds; an AuthError (a bad or unknown
    name, a taken one, a weak password) becomes the command's error."""
    from api.accounts.accounts import AuthError

    with services.factory() as session:
        try:
            yield session
        except AuthError as exc:
            raise CommandError(str(exc)) from None
        session.commit()


def _user_add(args: argparse.Namespace) -> int:
    from api.accounts.accounts import create_user
    from api.admin_log import admin_action, local_operator

    services = _services(args, create=True)
    password = _password(args)
    from api.accounts.accounts import Role
    from api.cases.acting import no_cells_notice, team_has_cells

    with _account_change(services) as session:
        user = create_user(session, username=args.username, password=password, role=args.role, team=args.team)
        orphan = user.role == Role.ENFORCEMENT and not team_has_cells(session, user.team or "")
    admin_action(local_operator(), "user.add", f"user:{user.username}", role=user.role, team=user.team)
    print(f"user {user.username} ({user.role}{', team ' + user.team if user.team else ''}) added")
    if orphan:
        print(f"note: {no_cells_notice(user.team or '')}")
    return 0


def _when(value: Any) -> str:
    """A stored (naive UTC) time as 'YYYY-MM-DD HH:MM', or '-'."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _user_list(args: argparse.Namespace) -> int:
    from api.accounts.accounts import list_users

    services = _services(args)
    with services.read_factory() as session:
        users = list_users(session)
    _table(
        ("USERNAME", "ROLE", "TEAM", "ACTIVE", "CREATED (UTC)", "LAST LOGIN (UTC)"),
        [
            (
                u.username,
                u.role,
                u.team or "-",
                "yes" if u.active else "no",
                _when(u.created_at),
                _when(u.last_login_at),
            )
            for u in users
        ],
    )
    return 0


def _user_set_active(args: argparse.Namespace, active: bool) -> int:
    from api.accounts.accounts import set_user_active
    from api.admin_log import admin_action, local_operator

    services = _services(args)
    with _account_change(services) as session:
        user, changed = set_user_active(session, username=args.username, active=active)
    state = "active" if active else "deactivated"
    if not changed:
        print(f"user {user.username} was already {state}")
        return 0
    admin_action(local_operator(), "user.activate" if active else "user.deactivate", f"user:{user.username}")
    if not active:
        services.principals.invalidate()
        print(f"user {user.username} deactivated: their tokens no longer work; their history stays")
    else:
        print(f"user {user.username} is active again (they log in anew)")
    return 0


def _user_set(args: argparse.Namespace) -> int:
    from api.accounts.accounts import Role, change_user
    from api.admin_log import admin_action, local_operator
    from api.cases.acting import no_cells_notice, team_has_cells

    if args.role is None and args.team is None:
        raise CommandError("nothing to change: give --role, --team or both")
    services = _services(args)
    with _account_change(services) as session:
        user, changed = change_user(session, username=args.username, role=args.role, team=args.team)
        orphan = user.role == Role.ENFORCEMENT and not team_has_cells(session, user.team or "")
    now = f"{user.role}{', team ' + user.team if user.team else ', no team'}"
    if not changed:
        print(f"user {user.username} is already {now}")
    else:
        services.principals.invalidate()
        admin_action(local_operator(), "user.change", f"user:{user.username}", role=user.role, team=user.team)
        print(f"user {user.username} is now {now} (from their next request; they stay logged in)")
    if orphan:
        print(f"note: {no_cells_notice(user.team or '')}")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    from api.accounts.accounts import set_password
    from api.admin_log import admin_action, local_operator

    services = _services(args)
    password = _password(args)
    with _account_change(services) as session:
        user = set_password(session, username=args.username, password=password)
    services.principals.invalidate()
    admin_action(local_operator(), "user.password", f"user:{user.username}")
    print(f"password of user {user.username} set; their tokens no longer work")
    return 0


def _device_add(args: argparse.Namespace) -> int:
    from api.accounts.accounts import create_device
    from api.admin_log import admin_action, local_operator

    services = _services(args, create=True)
    with _account_change(services) as session:
        device, key = create_device(session, name=args.name, camera_id=args.camera, runner=args.runner)
    runner = device.runner or None
    target = f"device:{device.name}"
    admin_action(local_operator(), "device.add", target, camera=device.camera_id, runner=runner)
    print(f"device {device.name} added; its key (shown only now):")
    print(key)
    return 0


def _device_list(args: argparse.Namespace) -> int:
    from api.accounts.accounts import list_devices

    services = _services(args)
    with services.read_factory() as session:
        devices = list_devices(session)
    _table(
        ("NAME", "CAMERA", "CREATED (UTC)", "LAST USED (UTC)", "REVOKED (UTC)"),
        [
            (
                d.name,
                "(runner)" if d.runner else d.camera_id or "-",
                _when(d.created_at),
                _when(d.last_used_at),
                _when(d.revoked_at) if not d.active else "-",
            )
            for d in devices
        ],
    )
    return 0


def _device_revoke(args: argparse.Namespace) -> int:
    from api.accounts.accounts import revoke_device
    from api.admin_log import admin_action, local_operator

    services = _services(args)
    with _account_change(services) as session:
        device, changed = revoke_device(session, name=args.name)
    if not changed:
        print(f"device {device.name} was already revoked ({_when(device.revoked_at)} UTC)")
        return 0
    services.principals.invalidate()
    admin_action(local_operator(), "device.revoke", f"device:{device.name}")
    print(f"device {device.name} revoked: its key no longer works; its uploads and cases stay")
    return 0


def _device_rotate(args: argparse.Namespace) -> int:
    from api.accounts.accounts import get_device, rotate_device
    from api.admin_log import admin_action, local_operator

    services = _services(args)
    with _account_change(services) as session:
        was_active = get_device(session, args.name).active
        device, key = rotate_device(session, name=args.name)
    services.principals.invalidate()
    admin_action(local_operator(), "device.rotate", f"device:{device.name}")
    again = "" if was_active else " (it was revoked; it is active again)"
    print(f"device {device.name} has a new key{again}; the old key no longer works.")
    print("The new key (shown only now):")
    print(key)
    return 0


def _grid_import(args: argparse.Namespace) -> int:
    from api.admin_log import admin_action, local_operator
    from api.cases.grids import GridImportError, GridReplaceRefused, import_cells, load_geojson_file

    try:
        cells = load_geojson_file(args.file)
    except GridImportError as exc:
        raise CommandError(f"{args.file}: " + "\n  ".join(exc.problems)) from None
    services = _services(args, create=True)
    with services.factory() as session:
        try:
            replacement = import_cells(session, cells=cells, force=args.force)
        except GridReplaceRefused as exc:
            raise CommandError(
                f"{args.file}: not imported: it would leave open cases behind:\n  "
                + "\n  ".join(exc.extra["stranded"])
                + "\nClose or dispatch them first, or import anyway with --force"
            ) from None
        session.commit()
    forced = args.force or None
    admin_action(local_operator(), "grid.import", "grid", cells=len(cells), forced=forced, file=args.file)
    for line in replacement.warnings():
        print(f"warning: {line}")
    print(f"imported {len(cells)} grid cells from {args.file}")
    return 0


def _evidence_verify(args: argparse.Namespace) -> int:
    """Every evidence file, the custody ledger, every case's chain and every fact it vouches for
    (api.cases.audit); with --against, the ledger up to a checkpoint kept outside the database."""
    from pathlib import Path

    from sqlalchemy import select

    from api.cases import checkpoints
    from api.cases.audit import audit
    from api.storage.models import EvidenceBlob

    checkpoint = None
    if args.against:
        try:
            checkpoint = checkpoints.load(Path(args.against))
        except checkpoints.CheckpointError as exc:
            raise CommandError(str(exc)) from None
    services = _services(args)
    problems: list[str] = []
    with services.read_factory() as session:  # one snapshot; SQLite writers are not held up
        result = audit(session, at_seqs=(checkpoint.ledger_seq,) if checkpoint else ())
        if not result.complete:  # a table is gone: no file can be told evidence or orphan
            for line in result.problems:
                print(line)
            print(f"nothing checked: {len(result.problems)} problem(s)")
            return 1
        known = set(session.scalars(select(EvidenceBlob.sha256)))
    with _store_faults():
        bad = {
            sha: problem for sha in sorted(known | result.blobs) if (problem := services.store.verify(sha))
        }
        root = getattr(services.store, "root", None)  # the local store's folder; None for S3
        if bad and root is not None and not root.exists():  # one line, not one per file of the store
            problems.append(
                f"evidence folder {root}: missing (moved, or GRIDPATROL_DATA_DIR is not the folder the "
                f"evidence was written under): its {len(bad)} evidence file(s) not found"
            )
            bad = {}
        held_by = _cases_holding(services, list(bad))
        problems += [f"evidence {sha}{held_by.get(sha, '')}: {problem}" for sha, problem in bad.items()]
        unreadable: list[str] = []
        orphans = _orphans(services, known | result.blobs, unreadable)
        problems += [f"evidence folder {folder}; its files not checked for orphans" for folder in unreadable]
        for entry, _ in orphans:
            problem = services.store.verify(entry.name) if entry.complete else None
            if problem:
                problems.append(f"evidence file {entry.where}: {problem}")
    problems += result.problems
    if checkpoint is not None:
        problems += checkpoints.compare(checkpoint, result.ledger_hashes, result.head)
    for line in problems:
        print(line)
    for entry, age_s in orphans[:ORPHANS_SHOWN]:
        print(f"orphan: evidence file {entry.where} is referenced by no case (stored {_age(age_s)} ago)")
    if len(orphans) > ORPHANS_SHOWN:
        print(f"orphan: ... and {len(orphans) - ORPHANS_SHOWN} more")
    against = f", against the checkpoint at entry {checkpoint.ledger_seq}" if checkpoint else ""
    orphan_text = (
        f"; {len(orphans)} orphan file(s) referenced by no case (not evidence of any case: an "
        "incident or after-photo whose database write failed; `gridpatrol evidence orphans "
        "--remove` deletes those older than an hour)"
        if orphans
        else ""
    )
    print(
        f"checked {len(known | result.blobs)} evidence files, {result.cases} cases and "
        f"{result.entries} custody entries (ledger head {result.head.seq}){against}: "
        f"{len(problems)} problem(s){orphan_text}"
    )
    return 1 if problems else 0


ORPHANS_SHOWN = 20


def _cases_holding(services: Services, shas: list[str]) -> dict[str, str]:
    """For each evidence file of `shas` that cases link to, the " (case N, M)" its problem line names."""
    from sqlalchemy import select

    from api.storage.models import Case, EvidenceLink

    numbers: dict[str, set[str]] = {}
    with services.read_factory() as session:
        for start in range(0, len(shas), 500):
            rows = session.execute(
                select(EvidenceLink.sha256, Case.number, Case.id)
                .join(Case, Case.id == EvidenceLink.case_id)
                .where(EvidenceLink.sha256.in_(shas[start : start + 500]))
            )
            for sha, number, case_id in rows:
                numbers.setdefault(sha, set()).add(number or str(case_id))
    return {sha: f" (case {', '.join(sorted(found))})" for sha, found in numbers.items()}


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@contextlib.contextmanager
def _store_faults() -> Iterator[None]:
    """The evidence store not answering (an S3 endpoint down, a bucket missing) is the command's
    error, said in one line."""
    from api.errors import ServiceFault

    try:
        yield
    except ServiceFault as exc:
        raise CommandError(str(exc)) from None


def _orphans(
    services: Services, referenced: set[str], unreadable: list[str]
) -> list[tuple[StoreEntry, float]]:
    """Evidence files no blob row or custody entry names, and receiving files left by a killed
    request: (the store's entry, age in seconds), oldest first. A store folder that cannot be
    listed is added to `unreadable` ("<path>: <why>")."""
    import time

    now = time.time()
    found = [
        (entry, now - entry.mtime)
        for entry in services.store.entries(unreadable=unreadable)
        if not entry.complete or entry.name not in referenced
    ]
    return sorted(found, key=lambda item: -item[1])


def _evidence_orphans(args: argparse.Namespace) -> int:
    """List (and with --remove delete) evidence files referenced by no case."""
    from sqlalchemy import select

    from api.storage.models import EvidenceBlob

    if not math.isfinite(args.older_than_min) or args.older_than_min < 0:
        minutes = f"{args.older_than_min:g}"
        raise CommandError(f"--older-than-min: must be a number of minutes, 0 or more (not {minutes})")
    services = _services(args)
    with services.read_factory() as session:
        referenced = set(session.scalars(select(EvidenceBlob.sha256)))
    unreadable: list[str] = []
    with _store_faults():
        orphans = _orphans(services, referenced, unreadable)
    for folder in unreadable:
        print(f"evidence folder {folder}; its files are not listed", file=sys.stderr)
    min_age_s = args.older_than_min * 60

    def still_orphan(name: str) -> bool:
        with services.factory() as session:  # named since the listing (a request finishing): keep it
            return session.scalar(select(EvidenceBlob.sha256).where(EvidenceBlob.sha256 == name)) is None

    removed = 0
    for entry, age_s in orphans:
        old_enough = age_s >= min_age_s
        if args.remove and old_enough:
            with _store_faults():  # checked again just before: young again, or named now: kept
                gone = services.store.delete_entry(
                    entry, min_age_s=min_age_s, if_orphan=functools.partial(still_orphan, entry.name)
                )
            if gone:
                removed += 1
                log.info("removed orphan evidence file %s (stored %s ago)", entry.where, _age(age_s))
        else:
            note = "" if old_enough else f" (younger than {args.older_than_min:g} min: may be in flight)"
            print(f"{entry.where}  stored {_age(age_s)} ago{note}")
    action = f"removed {removed}" if args.remove else "removed none (--remove deletes them)"
    print(f"{len(orphans)} orphan evidence file(s) referenced by no case; {action}")
    return 1 if unreadable else 0


def _evidence_checkpoint(args: argparse.Namespace) -> int:
    """The ledger's head to a file outside the data folder, once everything `evidence verify`
    checks in the database (the ledger, every case's chain and the facts it vouches for) agrees:
    a checkpoint of a ledger with a problem would vouch for the problem."""
    from pathlib import Path

    from api.cases import checkpoints
    from api.cases.audit import audit

    if args.out is not None and (not args.out.strip() or args.out.endswith(("/", os.sep))):
        raise CommandError(f"out: {args.out!r} is no file name: name the checkpoint's file")
    settings = _settings(args)
    services = _services(args)
    try:
        with services.read_factory() as session:  # the head checkpointed is the one audit checked
            result = audit(session)
        if result.problems:
            raise CommandError(
                f"not checkpointed: `gridpatrol evidence verify` finds {len(result.problems)} problem(s) "
                f"in the custody records (the first: {result.problems[0]})"
            )
        checkpoint = checkpoints.of_head(result.head)
        path = checkpoints.write(
            checkpoint,
            out=Path(args.out) if args.out else None,
            folder=settings.checkpoints_dir,
            data_dir=settings.data_dir,
        )
    except checkpoints.CheckpointError as exc:
        raise CommandError(str(exc)) from None
    with services.factory() as session:
        witnesses = checkpoints.send_to_witnesses(session, checkpoint)
        session.commit()
    print(f"checkpoint of custody entry {checkpoint.ledger_seq} ({checkpoint.ledger_hash}) written to {path}")
    if witnesses:
        print(f"queued for {witnesses} webhook(s) subscribed to custody.checkpoint (the server sends them)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")

    def site_config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="the site config (cameras, zones, rules, the model's classes); overrides "
            f"{ENV_SITE_CONFIG}, default configs/site.yaml in the current folder",
        )

    p = subparsers.add_parser("serve", help="run the API (with an in-process worker unless --no-worker)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-worker", action="store_true", help="do not process uploads in this process")
    site_config_option(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes on the port (one per core; background threads run in one of them)",
    )
    p.add_argument(
        "--runner",
        action="store_true",
        help="also analyse the registered live cameras here (gridpatrol runner in a child process, Ray)",
    )
    db_option(p)
    p.set_defaults(handler=_serve)

    p = subparsers.add_parser("worker", help="process uploaded footage (jobs) from the database")
    p.add_argument("--once", action="store_true", help="run at most one job and exit")
    site_config_option(p)
    db_option(p)
    p.set_defaults(handler=_worker)

    p = subparsers.add_parser("db", help="database schema")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION")
    q = sub.add_parser("upgrade", help="apply migrations up to the latest schema")
    db_option(q)
    q.set_defaults(handler=_db_upgrade)

    p = subparsers.add_parser("user", help="users")
    sub = p.add_subparsers(dest="user_command", metavar="ACTION")
    q = sub.add_parser(
        "add", help="add a user (password from a prompt, --password-stdin or GRIDPATROL_PASSWORD)"
    )
    q.add_argument("username")
    q.add_argument("--role", required=True, choices=("admin", "operator", "enforcement", "viewer"))
    q.add_argument("--team", help="the team of an enforcement user")
    q.add_argument("--password-stdin", action="store_true")
    db_option(q)
    q.set_defaults(handler=_user_add)

    q = sub.add_parser("list", help="users: role, team, active, created, last login")
    db_option(q)
    q.set_defaults(handler=_user_list)
    q = sub.add_parser("deactivate", help="a user can no longer log in; their tokens stop working at once")
    q.add_argument("username")
    db_option(q)
    q.set_defaults(handler=lambda a: _user_set_active(a, False))
    q = sub.add_parser("activate", help="let a deactivated user log in again")
    q.add_argument("username")
    db_option(q)
    q.set_defaults(handler=lambda a: _user_set_active(a, True))
    q = sub.add_parser("set", help="change a user's role and/or team (they stay logged in)")
    q.add_argument("username")
    q.add_argument("--role", choices=("admin", "operator", "enforcement", "viewer"), help="the new role")
    q.add_argument("--team", help="the new team (an enforcement user needs one); --team '' for none")
    db_option(q)
    q.set_defaults(handler=_user_set)
    q = sub.add_parser(
        "passwd",
        help="set a user's password (prompt, --password-stdin or GRIDPATROL_PASSWORD); logs them out",
    )
    q.add_argument("username")
    q.add_argument("--password-stdin", action="store_true")
    db_option(q)
    q.set_defaults(handler=_user_passwd)

    p = subparsers.add_parser("device", help="devices (patrol vehicles, cameras)")
    sub = p.add_subparsers(dest="device_command", metavar="ACTION")
    q = sub.add_parser("add", help="add a device and print its key")
    q.add_argument("name")
    q.add_argument("--camera", help="camera id its footage and incidents come from")
    q.add_argument(
        "--runner",
        action="store_true",
        help="a runner: analyses the registered cameras (gridpatrol runner --key KEY)",
    )
    db_option(q)
    q.set_defaults(handler=_device_add)
    q = sub.add_parser("list", help="devices: camera, created, last used, revoked")
    db_option(q)
    q.set_defaults(handler=_device_list)
    q = sub.add_parser("revoke", help="the device's key stops working at once (a stolen camera)")
    q.add_argument("name")
    db_option(q)
    q.set_defaults(handler=_device_revoke)
    q = sub.add_parser("rotate", help="a new key for the device, printed once; the old key stops working")
    q.add_argument("name")
    db_option(q)
    q.set_defaults(handler=_device_rotate)

    p = subparsers.add_parser("grid", help="grid cells")
    sub = p.add_subparsers(dest="grid_command", metavar="ACTION")
    q = sub.add_parser("import", help="replace the grid cells with a GeoJSON FeatureCollection")
    q.add_argument("file")
    q.add_argument(
        "--force",
        action="store_true",
        help="import although a removed or re-teamed cell holds open cases (they keep their cell and team)",
    )
    db_option(q)
    q.set_defaults(handler=_grid_import)

    p = subparsers.add_parser("evidence", help="evidence store")
    sub = p.add_subparsers(dest="evidence_command", metavar="ACTION")
    q = sub.add_parser(
        "verify", help="check every evidence file, the custody ledger and every fact the chains vouch for"
    )
    q.add_argument(
        "--against",
        metavar="CHECKPOINT",
        help="also prove the ledger up to this checkpoint was not rewritten",
    )
    db_option(q)
    q.set_defaults(handler=_evidence_verify)
    q = sub.add_parser(
        "checkpoint",
        help="write the custody ledger's head to a JSON file outside the data folder "
        "(GRIDPATROL_CHECKPOINT_DIR, default <data-dir>/../gridpatrol-checkpoints)",
    )
    q.add_argument("--out", metavar="FILE", help="write here instead (refused inside the data folder)")
    db_option(q)
    q.set_defaults(handler=_evidence_checkpoint)
    q = sub.add_parser(
        "orphans",
        help="list evidence files referenced by no case (a write that failed after its files were "
        "stored); --remove deletes those older than --older-than-min",
    )
    q.add_argument("--remove", action="store_true", help="delete them (only those old enough)")
    q.add_argument(
        "--older-than-min",
        type=float,
        default=60.0,
        metavar="MIN",
        help="leave younger files alone: they may belong to a request still in flight (default 60)",
    )
    db_option(q)
    q.set_defaults(handler=_evidence_orphans)
