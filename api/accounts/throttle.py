"""Login throttling: `max_failures` failed logins for one username within a window and that username
is refused until the window ends. A username is counted in any case ('Admin' and 'admin' are one
count, accounts.username_key), as login finds its user. The count lives in the database (table
login_failures), so it holds across several server processes on one database and across restarts;
see api.accounts.tokens.login.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import AuthError, find_login_user, username_key
from api.storage.db import session_scope, table_of
from api.storage.models import LoginFailure

log = logging.getLogger(__name__)


class LoginThrottled(AuthError):
    """Too many failed logins for this username in the window (429, with Retry-After); the password
    was not checked."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "username",
            f"too many failed logins; try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """`max_failures` failed logins for one username within `window_s` seconds (counted from the
    first of them) and that username is refused until the window ends."""

    max_failures: int = 5
    window_s: float = 900.0


DEFAULT_POLICY = LoginPolicy()


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def retry_after_s(window_start: datetime, now: datetime, policy: LoginPolicy) -> int:
    left = (window_start + timedelta(seconds=policy.window_s) - now).total_seconds()
    return max(1, math.ceil(left))


def count_attempt(
    session: Session, username: str, now: datetime, policy: LoginPolicy
) -> tuple[int, datetime]:
    """Count one more failure for `username` (a fresh window when the last one ended), atomically
    on both backends, in one statement; returns the count and the window's start."""
    cutoff = now - timedelta(seconds=policy.window_s)
    table = table_of(LoginFailure)
    live = table.c.window_start > cutoff
    stmt = (
        _insert_for(session)(table)
        .values(username=username_key(username), failures=1, window_start=now)
        .on_conflict_do_update(
            index_elements=[table.c.username],
            set_={
                "failures": case((live, table.c.failures + 1), else_=1),
                "window_start": case((live, table.c.window_start), else_=now),
            },
        )
        .returning(table.c.failures, table.c.window_start)
    )
    failures, window_start = session.execute(stmt).one()
    return failures, window_start


def forget_ended_windows(factory: sessionmaker[Session], now: datetime, policy: LoginPolicy) -> None:
    """Delete the rows of ended windows, in a transaction of its own: one holding a row lock from
    the count while waiting for another's could deadlock on PostgreSQL."""
    try:
        with session_scope(factory) as session:
            cutoff = now - timedelta(seconds=policy.window_s)
            session.execute(delete(LoginFailure).where(LoginFailure.window_start <= cutoff))
    except (SQLAlchemyError, TimeoutError) as exc:  # housekeeping; the next window start retries
        log.warning("cannot delete ended login-failure windows: %s", exc)


def unknown_username(username: str) -> str:
    # A username no account has is often a password typed into the wrong field: log a fingerprint
    # (repeated attempts still correlate), never the text.
    return f"an unknown username (fingerprint {hashlib.sha256(username.encode()).hexdigest()[:10]})"


def _loggable(read_factory: sessionmaker[Session], username: str) -> str:
    with read_factory() as session:
        known = find_login_user(session, username) is not None
    return f"username {username!r}" if known else unknown_username(username)


def refuse(
    read_factory: sessionmaker[Session], username: str, client: str | None, retry: int
) -> LoginThrottled:
    log.warning(
        "login refused for %s from %s: throttled for %d s", _loggable(read_factory, username), client, retry
    )
    return LoginThrottled(retry)


def throttled_now(
    read_factory: sessionmaker[Session], username: str, now: datetime, policy: LoginPolicy
) -> int | None:
    """Seconds until `username` may try again, or None when it is not throttled (reads only)."""
    with read_factory() as session:
        row = session.get(LoginFailure, username_key(username))
    if (
        row is not None
        and row.failures >= policy.max_failures
        and row.window_start > now - timedelta(seconds=policy.window_s)
    ):
        return retry_after_s(row.window_start, now, policy)
    return None


def clear_failures(session: Session, username: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.username == username_key(username)))
