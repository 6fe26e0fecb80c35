"""Tokens: logging in (a bearer token for a user), who a token or device key stands for, logging out,
and the cache of resolved principals that every credential change empties (PrincipalCache)."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.accounts import throttle
from api.accounts.accounts import (
    DEVICE_KEY_PREFIX,
    DEVICE_ROLE,
    RUNNER_ROLE,
    LoginFailed,
    Principal,
    find_login_user,
    hash_password,
    password_needs_rehash,
    spend_password_time,
    token_hash,
    verify_password,
)
from api.accounts.throttle import DEFAULT_POLICY, LoginPolicy
from api.storage.db import session_scope, utcnow
from api.storage.models import ApiToken, Device, User

log = logging.getLogger(__name__)

DEVICE_USE_RESOLUTION_S = 60.0  # devices.last_used_at is written at most once a minute per device
CREDENTIALS_EPOCH_FILE = "credentials.epoch"  # in the data folder; see PrincipalCache

Stamp = tuple[int, int, int] | None


def login(
    factory: sessionmaker[Session],
    *,
    username: str,
    password: str,
    ttl_h: float,
    policy: LoginPolicy = DEFAULT_POLICY,
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
    wait_s = throttle.throttled_now(read_factory, username, now, policy)
    if wait_s is not None:
        raise throttle.refuse(read_factory, username, client, wait_s)
    with session_scope(factory) as session:
        failures, window_start = throttle.count_attempt(session, username, now, policy)
    if failures == 1:  # a new window: time to drop the ended ones (the table stays small)
        throttle.forget_ended_windows(factory, now, policy)
    if failures > policy.max_failures:  # parallel attempts got there first
        raise throttle.refuse(
            read_factory, username, client, throttle.retry_after_s(window_start, now, policy)
        )

    with read_factory() as session:
        user = find_login_user(session, username)  # 'Admin' is 'admin': names are unique in any case
    if user is None or not user.active:
        spend_password_time()
        ok = False
    else:
        ok = verify_password(user.password_hash, password)
    if not ok or user is None:
        log.warning(
            "failed login for %s from %s (%d of %d allowed in %.0f s)",
            f"username {username!r}" if user is not None else throttle.unknown_username(username),
            client,
            failures,
            policy.max_failures,
            policy.window_s,
        )
        raise LoginFailed("password", "username or password is wrong")

    token = secrets.token_urlsafe(32)
    with session_scope(factory) as session:
        throttle.clear_failures(session, username)
        values: dict[str, object] = {"last_login_at": now}
        if password_needs_rehash(user.password_hash):
            values["password_hash"] = hash_password(password)
        session.execute(update(User).where(User.id == user.id).values(**values))
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at < now))
        session.add(
            ApiToken(token_hash=token_hash(token), user_id=user.id, expires_at=now + timedelta(hours=ttl_h))
        )
    log.info("user %s logged in from %s", user.username, client)
    return token


# --- who a request comes from ------------------------------------------------------------------


class Resolved(NamedTuple):
    principal: Principal | None
    device_use_due: bool  # a device whose last_used_at is older than DEVICE_USE_RESOLUTION_S
    expires_at: datetime | None = None  # naive UTC: when a login token ends; None for device keys


def resolve_request(session: Session, token: str) -> Resolved:
    """The principal a bearer token or device key stands for (None when unknown, expired, revoked
    or deactivated), whether a device's last use should be recorded (`note_device_use`), and when a
    login token expires (PrincipalCache.put must not remember it longer)."""
    if not token or len(token) > 200:
        return Resolved(None, False)
    digest = token_hash(token)
    if token.startswith(DEVICE_KEY_PREFIX):
        device = session.scalar(select(Device).where(Device.key_hash == digest, Device.active.is_(True)))
        if device is None:
            return Resolved(None, False)
        principal = Principal(
            kind="device",
            name=device.name,
            role=RUNNER_ROLE if device.runner else DEVICE_ROLE,
            device_id=device.id,
            camera_id=device.camera_id,
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
    return Resolved(principal, False, expires_at)


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


class PrincipalCache:
    """Who a token or device key stands for, remembered for `ttl_s` seconds (keyed by the key's
    SHA-256, never the key itself), so a busy camera does not cost a lookup per request.

    Revoking a key, deactivating a user or changing a password ends in `invalidate()`: it empties
    this cache and replaces `epoch_file` (in the data folder), and every cache whose process shares
    that folder (`serve`, workers, the CLI run with the same GRIDPATROL_DATA_DIR) compares each
    entry's stamp of that file with the file's current one (a stat, about a microsecond), so the old
    credential stops working at once in all of them. A process that does not share the folder (the
    same PostgreSQL database but another data folder, or a network file system caching attributes)
    sees the change when its entry expires, within ttl_s; ttl_s = 0 turns the cache off.

    An entry never outlives its credential: a login token's own expiry (naive UTC, as stored) is
    kept with it, and from that moment the entry is dropped and the token looked up (and refused)
    again, however recently it was cached."""

    def __init__(self, ttl_s: float = 10.0, max_size: int = 10_000, epoch_file: Path | None = None) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self.epoch_file = epoch_file
        self._items: dict[str, tuple[float, datetime | None, Stamp, Principal]] = {}
        self._lock = threading.Lock()

    def stamp(self) -> Stamp:
        """The epoch file as it is now; take it before resolving a key, hand it to put()."""
        if self.epoch_file is None:
            return None
        try:
            st = os.stat(self.epoch_file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def get(self, token: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        key = token_hash(token)
        with self._lock:
            item = self._items.get(key)
        if item is None:
            return None
        deadline, expires_at, stamp, principal = item
        if expires_at is not None and expires_at <= utcnow():  # the credential itself has ended
            with self._lock:
                if self._items.get(key) is item:
                    del self._items[key]
            return None
        if deadline < time.monotonic() or stamp != self.stamp():
            return None
        return principal

    def put(self, token: str, principal: Principal, stamp: Stamp, *, expires_at: datetime | None) -> None:
        """Remember who `token` stands for; `expires_at` (naive UTC) is when the credential itself
        ends (Resolved.expires_at; None for a key that does not expire)."""
        if self.ttl_s <= 0 or (expires_at is not None and expires_at <= utcnow()):
            return
        with self._lock:
            if len(self._items) >= self.max_size:
                self._items.clear()
            self._items[token_hash(token)] = (time.monotonic() + self.ttl_s, expires_at, stamp, principal)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def invalidate(self) -> None:
        """Credentials changed (call after the commit): forget every cached principal, here and in
        every process sharing the epoch file."""
        self.clear()
        if self.epoch_file is None:
            return
        tmp = self.epoch_file.with_name(f".{self.epoch_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            self.epoch_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(secrets.token_hex(8))
            os.replace(tmp, self.epoch_file)  # a new file: a new inode, whatever the clock's resolution
        except OSError as exc:
            log.warning(
                "cannot replace %s (%s): other processes honour cached credentials for up to %.0f s",
                self.epoch_file,
                exc,
                self.ttl_s,
            )
            tmp.unlink(missing_ok=True)
