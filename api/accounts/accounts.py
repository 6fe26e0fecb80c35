"""Users, roles, devices and bearer tokens, and the operations a district runs on them.

Passwords are hashed with Argon2id (argon2-cffi). Login tokens and device keys are random
(secrets.token_urlsafe) and stored only as their SHA-256, so a database leak gives no usable key.
Device keys start with "gpd_" and reach only the upload and incident endpoints.

Revoking a device, rotating its key, deactivating a user and setting a password change the
database; the caller then calls `PrincipalCache.invalidate()` (api/services.py) so that running
servers stop honouring the old credential at once instead of when their cache entry expires.

Login throttling lives in the database (table login_failures), so it holds across several server
processes on one database and across restarts; see `login`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.storage.db import session_scope, table_of, utcnow
from api.storage.models import ApiToken, Device, LoginFailure, User

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "enforcement", "viewer")
DEVICE_KEY_PREFIX = "gpd_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # not "." or "..": names sit in URL paths
PASSWORD_MIN, PASSWORD_MAX = 8, 256  # the login form takes at most 256 characters
DEVICE_USE_RESOLUTION_S = 60.0  # devices.last_used_at is written at most once a minute per device

_hasher = PasswordHasher()


class AuthError(ValueError):
    """Bad credentials or a bad user/device definition; the message is "<field>: <reason>"."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        field, sep, reason = message.partition(": ")
        self.field, self.reason = (field, reason) if sep else ("request", message)


class AccountConflict(AuthError):
    """The name is taken, or the change would leave the district without an active admin (409)."""


class AccountNotFound(AuthError):
    """No user or device of that name (404)."""


class LoginFailed(AuthError):
    """Unknown user, inactive user or wrong password: one message for all three (401)."""


class LoginThrottled(AuthError):
    """Too many failed logins for this username in the window (429); the password was not checked."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"username: too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (with role and team) or a device."""

    kind: str  # "user" | "device" | "system"
    name: str
    role: str  # a user role, "device" or "system"
    team: str | None = None
    user_id: int | None = None
    device_id: int | None = None
    camera_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Principal(kind="system", name="gridpatrol", role="system")


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """`max_failures` failed logins for one username within `window_s` seconds (counted from the
    first of them) and that username is refused until the window ends."""

    max_failures: int = 5
    window_s: float = 900.0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_rules(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AuthError(f"password: at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise AuthError(f"password: at most {PASSWORD_MAX} characters")


def create_user(
    session: Session, *, username: str, password: str, role: str, team: str | None = None
) -> User:
    if not NAME_RE.match(username):
        raise AuthError("username: 1-64 letters, digits or _ . @ -, starting with a letter or digit")
    if role not in ROLES:
        raise AuthError(f"role: '{role}' is not one of {', '.join(ROLES)}")
    if role == "enforcement" and not team:
        raise AuthError("team: an enforcement user must belong to a team")
    _check_password_rules(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountConflict(f"username: '{username}' already exists")
    user = User(username=username, password_hash=hash_password(password), role=role, team=team or None)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise AccountConflict(f"username: '{username}' already exists") from None
    return user


def _new_device_key() -> tuple[str, str]:
    """A device key and its hash."""
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, token_hash(key)


def create_device(session: Session, *, name: str, camera_id: str | None = None) -> tuple[Device, str]:
    """A new device and its key (shown once; only its hash is kept)."""
    if not NAME_RE.match(name):
        raise AuthError("name: 1-64 letters, digits or _ . @ -, starting with a letter or digit")
    taken = f"name: device '{name}' already exists (a new key for it: gridpatrol device rotate {name})"
    if session.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise AccountConflict(taken)
    key, digest = _new_device_key()
    device = Device(name=name, key_hash=digest, camera_id=camera_id or None)
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        raise AccountConflict(taken) from None
    return device, key


# --- users and devices of a running district ---------------------------------------------------


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.name)))


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountNotFound(f"username: no user '{username}'")
    return user


def get_device(session: Session, name: str) -> Device:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise AccountNotFound(f"name: no device '{name}'")
    return device


def set_user_active(session: Session, *, username: str, active: bool) -> tuple[User, bool]:
    """Activate or deactivate a user; returns the user and whether anything changed.

    Deactivating deletes the user's tokens (activating again does not bring them back: the user
    logs in anew). Their case history stays: it names them, it does not point at the row. The last
    active admin cannot be deactivated."""
    user = get_user(session, username)
    if user.active == active:
        return user, False
    if not active:
        if user.role == "admin":
            others = session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.role == "admin", User.active.is_(True), User.id != user.id)
            )
            if not others:
                raise AccountConflict(f"username: '{username}' is the last active admin")
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    user.active = active
    session.flush()
    log.info("user %s %s", username, "activated" if active else "deactivated")
    return user, True


def set_password(session: Session, *, username: str, password: str) -> User:
    """A new password; the user's tokens are deleted (logged out everywhere) and the failed-login
    count of the username is cleared."""
    user = get_user(session, username)
    _check_password_rules(password)
    user.password_hash = hash_password(password)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    session.flush()
    log.info("password of user %s set", username)
    return user


def revoke_device(session: Session, *, name: str) -> tuple[Device, bool]:
    """Revoke a device's key; returns the device and whether it was active. Its uploads, incidents
    and cases stay."""
    device = get_device(session, name)
    if not device.active:
        return device, False
    device.active = False
    device.revoked_at = utcnow()
    session.flush()
    log.info("device %s revoked", name)
    return device, True


def rotate_device(session: Session, *, name: str) -> tuple[Device, str]:
    """A new key for a device (shown once); the old key stops working. A revoked device is active
    again with the new key (a replacement camera in the same vehicle)."""
    device = get_device(session, name)
    key, digest = _new_device_key()
    device.key_hash = digest
    device.active = True
    device.revoked_at = None
    session.flush()
    log.info("device %s has a new key", name)
    return device, key


# --- login -------------------------------------------------------------------------------------


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _retry_after_s(window_start: datetime, now: datetime, policy: LoginPolicy) -> int:
    left = (window_start + timedelta(seconds=policy.window_s) - now).total_seconds()
    return max(1, math.ceil(left))


def _count_attempt(
    session: Session, username: str, now: datetime, policy: LoginPolicy
) -> tuple[int, datetime]:
    """Count one more failure for `username` (a fresh window when the last one ended), atomically
    on both backends, in one statement; returns the count and the window's start."""
    cutoff = now - timedelta(seconds=policy.window_s)
    table = table_of(LoginFailure)
    live = table.c.window_start > cutoff
    stmt = (
        _insert_for(session)(table)
        .values(username=username, failures=1, window_start=now)
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


def _forget_ended_windows(factory: sessionmaker[Session], now: datetime, policy: LoginPolicy) -> None:
    """Delete the rows of ended windows, in a transaction of its own: one holding a row lock from
    the count while waiting for another's could deadlock on PostgreSQL."""
    try:
        with session_scope(factory) as session:
            cutoff = now - timedelta(seconds=policy.window_s)
            session.execute(delete(LoginFailure).where(LoginFailure.window_start <= cutoff))
    except (SQLAlchemyError, TimeoutError) as exc:  # housekeeping; the next window start retries
        log.warning("cannot delete ended login-failure windows: %s", exc)


def _unknown(username: str) -> str:
    # A username no account has is often a password typed into the wrong field: log a fingerprint
    # (repeated attempts still correlate), never the text.
    return f"an unknown username (fingerprint {hashlib.sha256(username.encode()).hexdigest()[:10]})"


def _loggable(read_factory: sessionmaker[Session], username: str) -> str:
    with read_factory() as session:
        known = session.scalar(select(User.id).where(User.username == username)) is not None
    return f"username {username!r}" if known else _unknown(username)


def _throttled(
    read_factory: sessionmaker[Session], username: str, client: str | None, retry: int
) -> LoginThrottled:
    log.warning(
        "login refused for %s from %s: throttled for %d s", _loggable(read_factory, username), client, retry
    )
    return LoginThrottled(retry)


def login(
    factory: sessionmaker[Session],
    *,
    username: str,
    password: str,
    ttl_h: float,
    policy: LoginPolicy = LoginPolicy(),
    read_factory: sessionmaker[Session] | None = None,
    client: str | None = None,
) -> str:
    """A new bearer token for a user; LoginThrottled or LoginFailed otherwise.

    Three short transactions, none of them open while Argon2 runs (on SQLite a write transaction
    holds the process's write lock):

    1. A username with `policy.max_failures` failures in a window that has not ended is refused
       before anything about the user is read or the password checked. Unknown usernames are counted
       and refused the same way, so neither the answer nor its timing tells whether a user exists.
       Otherwise the attempt is counted as a failure up front, atomically, so that parallel guesses
       cannot overshoot the limit.
    2. The password is checked (reads only).
    3. On success the username's failures are cleared and a token is issued.

    Failed and refused logins are logged with the client and the username when an account has it
    (an unknown one only as a fingerprint: it may be a password typed into the wrong field).
    """
    read_factory = read_factory or factory
    now = utcnow()
    with read_factory() as session:
        row = session.get(LoginFailure, username)
        if (
            row is not None
            and row.failures >= policy.max_failures
            and row.window_start > now - timedelta(seconds=policy.window_s)
        ):
            raise _throttled(read_factory, username, client, _retry_after_s(row.window_start, now, policy))
    with session_scope(factory) as session:
        failures, window_start = _count_attempt(session, username, now, policy)
    if failures == 1:  # a new window: time to drop the ended ones (the table stays small)
        _forget_ended_windows(factory, now, policy)
    if failures > policy.max_failures:  # parallel attempts got there first
        raise _throttled(read_factory, username, client, _retry_after_s(window_start, now, policy))

    with read_factory() as session:
        user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        _hasher.hash("timing-equaliser")
        ok = False
    else:
        try:
            ok = _hasher.verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    if not ok or user is None:
        log.warning(
            "failed login for %s from %s (%d of %d allowed in %.0f s)",
            f"username {username!r}" if user is not None else _unknown(username),
            client,
            failures,
            policy.max_failures,
            policy.window_s,
        )
        raise LoginFailed("password: username or password is wrong")

    token = secrets.token_urlsafe(32)
    with session_scope(factory) as session:
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        values: dict[str, object] = {"last_login_at": now}
        if _hasher.check_needs_rehash(user.password_hash):
            values["password_hash"] = hash_password(password)
        session.execute(update(User).where(User.id == user.id).values(**values))
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at < now))
        session.add(
            ApiToken(token_hash=token_hash(token), user_id=user.id, expires_at=now + timedelta(hours=ttl_h))
        )
    log.info("user %s logged in from %s", username, client)
    return token


# --- who a request comes from ------------------------------------------------------------------


class Resolved(NamedTuple):
    principal: Principal | None
    device_use_due: bool  # a device whose last_used_at is older than DEVICE_USE_RESOLUTION_S


def resolve_request(session: Session, token: str) -> Resolved:
    """The principal a bearer token or device key stands for (None when unknown, expired, revoked
    or deactivated), and whether a device's last use should be recorded (`note_device_use`)."""
    if not token or len(token) > 200:
        return Resolved(None, False)
    digest = token_hash(token)
    if token.startswith(DEVICE_KEY_PREFIX):
        device = session.scalar(select(Device).where(Device.key_hash == digest, Device.active.is_(True)))
        if device is None:
            return Resolved(None, False)
        principal = Principal(
            kind="device", name=device.name, role="device", device_id=device.id, camera_id=device.camera_id
        )
        due = device.last_used_at is None or device.last_used_at < utcnow() - timedelta(
            seconds=DEVICE_USE_RESOLUTION_S
        )
        return Resolved(principal, due)
    row = session.execute(
        select(User, ApiToken.expires_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if row is None:
        return Resolved(None, False)
    user, expires_at = row
    if expires_at < utcnow() or not user.active:
        return Resolved(None, False)
    principal = Principal(kind="user", name=user.username, role=user.role, team=user.team, user_id=user.id)
    return Resolved(principal, False)


def resolve(session: Session, token: str) -> Principal | None:
    """The principal a bearer token or device key stands for; None when unknown or expired."""
    return resolve_request(session, token).principal


def note_device_use(session: Session, device_id: int) -> None:
    """Record that a device used its key now (skipped when recorded within the resolution)."""
    now = utcnow()
    session.execute(
        update(Device)
        .where(
            Device.id == device_id,
            or_(
                Device.last_used_at.is_(None),
                Device.last_used_at < now - timedelta(seconds=DEVICE_USE_RESOLUTION_S),
            ),
        )
        .values(last_used_at=now)
    )


def logout(session: Session, token: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(token)))
