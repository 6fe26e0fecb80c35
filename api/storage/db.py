"""Engine, sessions and migrations.

The schema comes only from Alembic migrations (api/migrations), run programmatically by
`migrate(engine)`: on `gridpatrol db upgrade`, and when the service or a worker starts.

SQLite: WAL journal, a busy timeout (30 s, or the URL's `?timeout=<seconds>`), foreign keys on,
and every transaction begins IMMEDIATE so that a read-then-write transaction never fails on lock
upgrade while another thread writes; sessions from `make_sessionmaker(engine, readonly=True)` begin
DEFERRED and never block writers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    String,
    Table,
    TypeDecorator,
    create_engine,
    event,
    type_coerce,
)

try:
    import fcntl
except ImportError:  # not POSIX: other processes meet SQLite's busy timeout
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.errors import DamagedRecord

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    """Naive UTC: every timestamp column stores UTC without a zone (same on SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime) -> str:
    """A stored (naive UTC) time as the API and webhooks write it: ISO 8601 ending in Z."""
    return value.isoformat() + "Z"


def as_utc(value: datetime | None) -> datetime | None:
    """Aware datetimes -> naive UTC; naive ones are taken as UTC already."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


class StoredTime(TypeDecorator[datetime]):
    """A time column (naive UTC). SQLite keeps a time as text, which an edit of the file outside the
    service can make anything: such a value is read as a DamagedRecord naming it (a 503 and one line,
    not a driver's ValueError deep in a page). PostgreSQL's driver returns times itself."""

    impl = DateTime
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        # the impl's own processor wrapped, not replaced (process_result_value would run after it fails)
        read = self.impl_instance.result_processor(dialect, coltype)
        if read is None:
            return None

        def process(value: Any) -> datetime | None:
            try:
                return read(value)
            except ValueError:
                raise DamagedRecord(unreadable_time(value)) from None

        return process


def unreadable_time(value: object) -> str:
    """What a stored time that reads as none is, in a line (cut at 60 characters)."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:59] + "…"
    return (
        f"a stored time reads {text}, which is no time: the database was edited outside the service "
        "(`gridpatrol evidence verify` names the cases)"
    )


def lenient_columns(table: Table) -> list[Any]:
    """The table's columns for a check that must read a damaged row too: each time column read as
    its stored text (SQLite's; PostgreSQL's driver still returns a time), for `read_times`."""
    return [type_coerce(c, String).label(c.name) if isinstance(c.type, StoredTime) else c for c in table.c]


def read_times(values: dict[str, Any], table: Table, dialect: Dialect) -> list[str]:
    """The time columns of `values` (a row read with lenient_columns) read as times in place; the
    names of those that read as none, which keep their text."""
    read = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    garbled = []
    for column in table.c:
        value = values.get(column.name)
        if isinstance(column.type, StoredTime) and isinstance(value, str) and read is not None:
            try:
                values[column.name] = read(value)
            except ValueError:
                garbled.append(column.name)
    return garbled


DEFAULT_SQLITE_TIMEOUT_S = 30.0


class DatabaseBusy(TimeoutError):
    """SQLite: another writer in this process held the write lock for longer than the busy timeout."""


_LOCK_KEY = "gridpatrol_write_lock"


class WriteLock:
    """The write lock of one SQLite file: a thread lock for the writers of this process, then an
    exclusive flock on `<file>-writer.lock` beside it for those of other processes (serve --workers
    N, the CLI, a worker). A waiting writer wakes within a few milliseconds of the lock freeing (the
    other process's wait polls the flock in steps of 0.5 to 5 ms) instead of sleeping in SQLite's
    busy handler, whose steps grow to 100 ms. Where flock is missing (not POSIX) only the thread
    lock is taken and other processes meet SQLite's busy timeout."""

    def __init__(self, database: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = None if database is None else database + "-writer.lock"  # None: in memory
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            return False
        try:
            if self._file_lock(deadline):
                return True
        except BaseException:
            self._thread_lock.release()
            raise
        self._thread_lock.release()
        return False

    def _file_lock(self, deadline: float) -> bool:
        if fcntl is None or self._path is None:
            return True
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.005)

    def release(self) -> None:
        try:
            if fcntl is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def _sqlite_write_lock(database: str) -> WriteLock:
    """The process-wide write lock of one SQLite file (shared by every engine on it)."""
    in_memory = database in ("", ":memory:")
    key = database if in_memory else os.path.realpath(database)
    with _write_locks_guard:
        if key not in _write_locks:
            _write_locks[key] = WriteLock(None if in_memory else key)
        return _write_locks[key]


def _end(dbapi_conn, info: dict, lock: WriteLock, statement: str) -> None:  # type: ignore[no-untyped-def]
    """Finish a write transaction on the raw connection, then let the next writer in.

    A failing COMMIT ("database or disk is full", "database is locked") rolls the transaction back
    before the lock is released and is raised as SQLAlchemy's error (OperationalError), like any
    other statement's: these listeners run outside SQLAlchemy's own wrapping, and a raw sqlite3
    error would slip past every `except SQLAlchemyError`."""
    if not info.pop(_LOCK_KEY, False):
        return
    try:
        if dbapi_conn.in_transaction:
            try:
                dbapi_conn.execute(statement)
            except sqlite3.Error as exc:
                if dbapi_conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        dbapi_conn.execute("ROLLBACK")
                raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
    finally:
        lock.release()


def table_of(model: type) -> Table:
    """The Core table of an ORM model (typed as a Table, for Core statements)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def durability_warnings(engine: Engine) -> list[str]:
    """What in the database's own settings can lose a commit the service has answered for
    (PostgreSQL: synchronous_commit or fsync off); empty when nothing does. SQLite's connections
    are set here (synchronous=FULL)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        synchronous_commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        fsync = conn.exec_driver_sql("SHOW fsync").scalar()
    warnings = []
    if synchronous_commit == "off":
        warnings.append(
            "PostgreSQL's synchronous_commit is off: after a crash of the database server, incidents "
            "already answered 201 (and dropped from the runners' spools) can be lost; set it to on"
        )
    if fsync == "off":
        warnings.append(
            "PostgreSQL's fsync is off: a power cut can lose or corrupt stored cases; set it to on"
        )
    return warnings


def _sqlite_timeout_s(value: object) -> float:
    """The busy timeout a SQLite URL's `?timeout=` asks for, in seconds (0 or more; 30 without one). A
    value that is no such number is an ArgumentError naming it, as a URL that does not parse is: -1
    was taken as waiting for ever on the write lock, and 'abc' ended a command with a traceback."""
    if value is None or value == "":
        return DEFAULT_SQLITE_TIMEOUT_S
    try:
        timeout_s = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        timeout_s = float("nan")
    if not 0 <= timeout_s < 1e6:  # NaN and infinity too
        raise ArgumentError(f"the SQLite URL's timeout={value!r} is no number of seconds (0 or more)")
    return timeout_s


def database_url(url: str) -> URL:
    """The URL parsed; one SQLAlchemy or SQLite would take wrongly is an ArgumentError naming what to
    write instead: `postgres://` (a name SQLAlchemy has no dialect for; it said "Can't load plugin:
    sqlalchemy.dialects:postgres") and a SQLite path that names a folder (`sqlite:///data/`: SQLite
    made a file `data`)."""
    parsed = make_url(url)
    if parsed.drivername.partition("+")[0] == "postgres":
        raise ArgumentError(
            "a database URL starting postgres:// names no SQLAlchemy dialect: write "
            "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        )
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and (path.endswith(("/", os.sep)) or Path(path).is_dir()):
            raise ArgumentError(
                f"the SQLite URL names a folder ({path}), not a database file: add the file's name, "
                f"e.g. sqlite:///{path.rstrip('/' + os.sep) or '/'}/gridpatrol.db"
            )
    return parsed


def sqlite_file(parsed: URL) -> str | None:
    """The file a SQLite URL opens (None: in memory). With `?uri=true` its database is a URI filename
    (`file:PATH`, `file:///PATH`, percent-encoded; SQLite's own query, e.g. `mode=ro`, is in the URL's
    query): its PATH, not the text `file:...`, which was made a folder of (`file:`) and then not
    opened."""
    database = parsed.database or ""
    uri = str(parsed.query.get("uri", "")).lower() in ("1", "true", "yes", "on")
    if not uri:
        return None if database in ("", ":memory:") else database
    if not database.startswith("file:"):  # SQLite takes it as a plain file name
        return database or None
    path = database.removeprefix("file:")
    if path.startswith("//"):
        authority, _, rest = path[2:].partition("/")
        if authority not in ("", "localhost"):
            raise ArgumentError(
                f"the SQLite URI filename {database!r} names a host ({authority}): "
                "write file:///PATH or file:PATH"
            )
        path = "/" + rest
    path = unquote(path.partition("#")[0])
    if path in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    return path


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        timeout_s = _sqlite_timeout_s(parsed.query.get("timeout"))
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": timeout_s},
            pool_size=8,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsync'ed at each commit, so a commit a caller was answered for (a
            # runner then drops its spooled copy) survives a power cut; NORMAL could roll it back.
            # The ingest writer commits many incidents at once, so it costs one fsync a batch.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            cur.close()

        # One writer at a time, queued on a lock (WriteLock: this process's writers on a Python lock,
        # other processes' on a flock): a waiting writer wakes the moment the lock frees, instead of
        # sleeping in SQLite's busy handler (which polls in steps of up to 100 ms and halves write
        # throughput under contention). COMMIT / ROLLBACK are issued here on the raw connection so
        # that the lock is released only after they finished (pysqlite's own commit() is then a
        # no-op).
        write_lock = _sqlite_write_lock(path or "")  # sqlite:// is in memory too

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            if conn.get_execution_options().get("gridpatrol_readonly", False):
                conn.exec_driver_sql("BEGIN")
                return
            if not write_lock.acquire(timeout=timeout_s):
                raise DatabaseBusy(f"database is busy: no write lock within {timeout_s:g} s")
            conn.connection.info[_LOCK_KEY] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _end(conn.connection.dbapi_connection, conn.connection.info, write_lock, "ROLLBACK")
                raise

        @event.listens_for(engine, "commit")
        def _sqlite_commit(conn) -> None:  # type: ignore[no-untyped-def]
            _end(conn.connection.dbapi_connection, conn.connection.info, write_lock, "COMMIT")

        @event.listens_for(engine, "rollback")
        def _sqlite_rollback(conn) -> None:  # type: ignore[no-untyped-def]
            _end(conn.connection.dbapi_connection, conn.connection.info, write_lock, "ROLLBACK")

        @event.listens_for(engine.pool, "reset")
        def _sqlite_reset(dbapi_conn, record, reset_state) -> None:  # type: ignore[no-untyped-def]
            _end(dbapi_conn, record.info, write_lock, "ROLLBACK")

        return engine
    # hide_parameters: a database error's message (logged, or a traceback) names no values, which
    # may be secrets (a camera's stream URL, a token's hash)
    return create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
    )


def make_sessionmaker(
    engine: Engine, *, readonly: bool = False, one_statement: bool = False
) -> sessionmaker[Session]:
    """Sessions on the engine; readonly ones are for reading only (SQLite: a deferred transaction).
    `one_statement` (readonly): for a reader whose answer is one statement (the case list: its page
    and count together); on PostgreSQL it runs outside a transaction (autocommit), saving the
    BEGIN and ROLLBACK round trips, and the statement is its own snapshot. Anything that reads
    twice and needs both reads to agree uses a plain readonly session: each reads one moment
    (PostgreSQL: REPEATABLE READ, the snapshot taken at its first statement; SQLite: a WAL read
    transaction does the same)."""
    if not (readonly or one_statement):
        return sessionmaker(engine, expire_on_commit=False)
    options: dict[str, object] = {"gridpatrol_readonly": True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT" if one_statement else "REPEATABLE READ"
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)


def without_jit(session: Session) -> None:
    """On PostgreSQL, no JIT compilation for the rest of the session's transaction, for a reader
    whose queries pass jit_above_cost on a district's rows and then spend longer compiling (LLVM,
    0.5 s and more) than running: the periodic report (api.cases.period_report) and /api/stats
    (api.cases.stats); benchmarks/period_report.py and benchmarks/stats.py measure both ways. SET
    LOCAL ends with the transaction: the pooled connection goes back with the server's setting."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL jit = off")


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


class SchemaTooNew(RuntimeError):
    """The database's schema is at a revision this release does not know: a newer gridpatrol upgraded
    it (the software was rolled back). Nothing is changed; its message names both revisions."""


def migrate(engine: Engine, revision: str = "head") -> bool:
    """Bring the schema up to `revision` (the latest by default); True when a migration ran.

    Logs "migrating database ..." only when the schema is behind: every command calls this on start, and
    a line about a migration that did not happen is noise. A schema at a revision this release does not
    have raises SchemaTooNew before anything is written."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = _alembic_config(engine)
    scripts = ScriptDirectory.from_config(config)
    target = {script.revision for script in scripts.get_revisions(revision)}
    with _reading(engine) as conn:
        from alembic.migration import MigrationContext

        current = set(MigrationContext.configure(conn).get_current_heads())
    url = engine.url.render_as_string(hide_password=True)
    unknown = current - {script.revision for script in scripts.walk_revisions()}
    if unknown:
        raise SchemaTooNew(
            f"database {url} is at revision {', '.join(sorted(unknown))}, which this gridpatrol (schema "
            f"{', '.join(scripts.get_heads())}) does not know: a newer release upgraded it; run that "
            "release, or restore the backup taken before the upgrade"
        )
    if current == target:
        log.debug("database %s is at %s", url, revision)
        return False
    log.info("migrating database %s from %s to %s", url, ", ".join(sorted(current)) or "empty", revision)
    command.upgrade(config, revision)
    return True


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with _reading(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _reading(engine: Engine) -> Connection:
    """A connection that only reads (SQLite: a deferred transaction, no write lock): a command that
    checks the schema's revision does not wait behind another process's long write."""
    return engine.execution_options(gridpatrol_readonly=True).connect()
