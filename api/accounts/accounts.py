"""Users, roles and devices (with their keys), and the operations a district runs on them.

Passwords are hashed with Argon2id (argon2-cffi). Login tokens and device keys are random
(secrets.token_urlsafe) and stored only as their SHA-256, so a database leak gives no usable key.
Device keys start with "gpd_" and reach only the upload and incident endpoints.

Revoking a device, rotating its key, deactivating a user, setting a password and changing a user's
role or team change the database; the caller then calls `PrincipalCache.invalidate()`
(api.accounts.tokens) so that running servers stop honouring the old credential (or the old role and
team) at once instead of when their cache entry expires.

Logging in and resolving tokens: api.accounts.tokens; login throttling: api.accounts.throttle.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import InputError
from api.storage.db import utcnow
from api.storage.models import TEAM_MAX, ApiToken, Device, LoginFailure, User

log = logging.getLogger(__name__)


class Role(StrEnum):
    """A user's role (stored and sent as its value)."""

    ADMIN = "admin"
    OPERATOR = "operator"
    ENFORCEMENT = "enforcement"  # sees its team's cases only
    VIEWER = "viewer"


ROLES: tuple[Role, ...] = tuple(Role)
DEVICE_ROLE = "device"  # the role of a principal that is a device key, not a user
RUNNER_ROLE = "runner"  # a device key that runs the registry's cameras (api.cameras, api.runner)
DEVICE_KEY_PREFIX = "gpd_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # not "." or "..": names sit in URL paths
# a camera id as the site config and the registry take it (detect.config.CAMERA_ID_PATTERN; the
# domain imports no detect): a device's camera must be one a camera can be, or its cases miss it
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 256  # the login form takes at most 256 characters
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_hasher = PasswordHasher()


class AuthError(InputError):
    """Bad credentials or a bad user/device definition; names the field (422 unless a subclass says)."""


class AccountConflict(AuthError):
    """The name is taken, or the change would leave the district without an active admin (409)."""

    status = 409


class AccountNotFound(AuthError):
    """No user or device of that name (404)."""

    status = 404


class LoginFailed(AuthError):
    """Unknown user, inactive user or wrong password: one message for all three (401)."""

    status = 401


class Unauthenticated(AuthError):
    """A request without a usable bearer token or device key (401)."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__("Authorization", reason)


class RoleNotAllowed(AuthError):
    """A caller whose role may not use the endpoint (403)."""

    status = 403

    def __init__(self, role: str) -> None:
        super().__init__("Authorization", f"role {role} may not use this endpoint")
        self.role = role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (with role and team) or a device."""

    kind: str  # "user" | "device" | "system" | "operator" (the CLI, api.admin_log.local_operator)
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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_rules(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AuthError("password", f"at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise AuthError("password", f"at most {PASSWORD_MAX} characters")
    if not password.strip():
        raise AuthError("password", "not only spaces")


def _checked_role_team(role: str, team: str | None) -> str | None:
    """The rules a user's role and team follow, made or changed: the role is one of ROLES, an
    enforcement user belongs to a team. Returns the team as stored: a team is a grid cell's team
    name, so spaces around it (which would match none) are dropped, and "" is no team. A team no grid
    cell names is allowed (the grid may be imported later): the caller says so (no_cells_notice)."""
    if role not in ROLES:
        raise AuthError("role", f"'{role}' is not one of {', '.join(ROLES)}")
    team = (team or "").strip() or None
    if role == Role.ENFORCEMENT and not team:
        raise AuthError("team", "an enforcement user must belong to a team")
    if team is not None and (len(team) > TEAM_MAX or any(unicodedata.category(c) == "Cc" for c in team)):
        raise AuthError("team", f"at most {TEAM_MAX} characters, no control characters")
    return team


def create_user(
    session: Session, *, username: str, password: str, role: str, team: str | None = None
) -> User:
    if not NAME_RE.fullmatch(username):
        raise AuthError("username", "1-64 letters, digits or _ . @ -, starting with a letter or digit")
    team = _checked_role_team(role, team)
    _check_password_rules(password)
    taken = session.scalar(select(User.username).where(func.lower(User.username) == username.lower()))
    if taken is not None:
        also = "" if taken == username else f" as '{taken}' (usernames must differ by more than case)"
        raise AccountConflict("username", f"'{username}' already exists{also}")
    user = User(username=username, password_hash=hash_password(password), role=role, team=team)
    try:  # in a savepoint: a refusal other than the name's (a trigger) is raised as it is, not as taken
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is None:
            raise
        raise AccountConflict("username", f"'{username}' already exists") from None
    return user


def _new_device_key() -> tuple[str, str]:
    """A device key and its hash."""
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, token_hash(key)


def create_device(
    session: Session, *, name: str, camera_id: str | None = None, runner: bool = False
) -> tuple[Device, str]:
    """A new device and its key (shown once; only its hash is kept). A runner analyses the
    registry's cameras, so it is bound to none. A camera id is taken as it is: "cam-1 " is refused
    rather than trimmed, since the device's incidents are filed under it (its team, its cell)."""
    if not NAME_RE.fullmatch(name):
        raise AuthError("name", "1-64 letters, digits or _ . @ -, starting with a letter or digit")
    taken = f"device '{name}' already exists (a new key for it: gridpatrol device rotate {name})"
    if session.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise AccountConflict("name", taken)
    if runner and camera_id is not None:
        raise AuthError("camera_id", "a runner runs the registry's cameras: it is bound to none")
    if camera_id and not CAMERA_ID_RE.fullmatch(camera_id):
        raise AuthError(
            "camera_id",
            f"{camera_id!r} is no camera id: 1-64 letters, digits or _ . : -, starting with a letter"
            " or digit",
        )
    key, digest = _new_device_key()
    device = Device(name=name, key_hash=digest, camera_id=camera_id or None, runner=runner)
    try:  # as create_user: only the name's refusal is "already exists"
        with session.begin_nested():
            session.add(device)
            session.flush()
    except IntegrityError:
        if session.scalar(select(Device.id).where(Device.name == name)) is None:
            raise
        raise AccountConflict("name", taken) from None
    return device, key


# --- users and devices of a running district ---------------------------------------------------


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.name)))


def username_key(username: str) -> str:
    """A username as login and the throttle compare it: usernames are unique regardless of case, so
    'Admin' (a phone's capital first letter) is the account 'admin'. Only ASCII letters are folded:
    NAME_RE allows no others, and the key keeps the length of what was typed."""
    return username.translate(_ASCII_LOWER)


def find_login_user(session: Session, username: str) -> User | None:
    """The user a login names, in any case (the uniqueness rule leaves at most one), or None."""
    return session.scalar(select(User).where(func.lower(User.username) == username_key(username)))


def get_user(session: Session, username: str) -> User:
    """The user a name stands for, in any case, as login finds them (find_login_user): the admin
    routes, pages and `gridpatrol user` commands take 'Alice' for the account 'alice'."""
    user = find_login_user(session, username)
    if user is None:
        raise AccountNotFound("username", f"no user '{username}'")
    return user


def get_device(session: Session, name: str) -> Device:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise AccountNotFound("name", f"no device '{name}'")
    return device


def set_user_active(session: Session, *, username: str, active: bool) -> tuple[User, bool]:
    """Activate or deactivate a user; returns the user and whether anything changed.

    Deactivating deletes the user's tokens (activating again does not bring them back: the user
    logs in anew). Their case history stays: it names them, it does not point at the row. The last
    active admin cannot be deactivated, even by two admins deactivating each other at once: see
    _lock_active_admins."""
    user = get_user(session, username)
    if user.active == active:
        return user, False
    if not active:
        if user.role == Role.ADMIN:
            admins = _lock_active_admins(session)
            if user.id not in admins:  # deactivated meanwhile by another transaction
                session.refresh(user)
                return user, False
            if admins == [user.id]:
                raise AccountConflict("username", f"'{user.username}' is the last active admin")
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    user.active = active
    session.flush()
    log.info("user %s %s", user.username, "activated" if active else "deactivated")
    return user, True


def change_user(
    session: Session, *, username: str, role: str | None = None, team: str | None = None
) -> tuple[User, bool]:
    """Change a user's role and/or team (a district reorganised); returns the user and whether
    anything changed. `role` None: unchanged; `team` None: unchanged, "" (or spaces): no team. The
    result follows create_user's rules (_checked_role_team): an enforcement user keeps a team.

    The last active admin cannot be demoted, even by two admins demoting (or deactivating) each
    other at once: the active admins are locked first, as set_user_active does (_lock_active_admins),
    and the user read again after the wait. The user stays logged in: their tokens resolve to the new
    role and team once the caller has called PrincipalCache.invalidate() after the commit."""
    user = get_user(session, username)
    if role is not None and role != Role.ADMIN and user.role == Role.ADMIN:
        admins = _lock_active_admins(session)
        session.refresh(user)  # demoted or deactivated meanwhile by another transaction
        if admins == [user.id]:
            raise AccountConflict("role", f"'{user.username}' is the last active admin")
    new_role = user.role if role is None else role
    new_team = _checked_role_team(new_role, user.team if team is None else team)
    if (new_role, new_team) == (user.role, user.team):
        return user, False
    was = f"{user.role}, team {user.team or '-'}"
    user.role, user.team = new_role, new_team
    session.flush()
    log.info("user %s changed from %s to %s, team %s", user.username, was, new_role, new_team or "-")
    return user, True


def _lock_active_admins(session: Session) -> list[int]:
    """The ids of the active admins, locked until this transaction ends, so that counting them and
    deactivating one is atomic. PostgreSQL: SELECT ... ORDER BY id FOR NO KEY UPDATE; a second
    deactivation waits here for the first to commit, then no longer sees the admin it deactivated
    (READ COMMITTED re-reads a locked row after the wait), and the order keeps two from deadlocking.
    NO KEY UPDATE leaves logins of those admins (a token's key share on its user) unblocked. SQLite
    drops the clause: every write transaction begins IMMEDIATE (api.storage.db), so a second
    deactivation cannot even read before the first ends."""
    return list(
        session.scalars(
            select(User.id)
            .where(User.role == Role.ADMIN, User.active.is_(True))
            .order_by(User.id)
            .with_for_update(key_share=True)
        )
    )


def set_password(session: Session, *, username: str, password: str) -> User:
    """A new password; the user's tokens are deleted (logged out everywhere) and the failed-login
    count of the username is cleared."""
    user = get_user(session, username)
    _check_password_rules(password)
    user.password_hash = hash_password(password)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.execute(delete(LoginFailure).where(LoginFailure.username == username_key(username)))
    session.flush()
    log.info("password of user %s set", user.username)
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


class KeyChanged(AccountConflict):
    """A rotation asked for from a page that showed an earlier key (the form sent twice: a reload)."""


def key_version(device: Device) -> str:
    """Which key a page showed a device with (the start of its key's hash: no use for finding the key)."""
    return device.key_hash[:12]


def rotate_device(session: Session, *, name: str, seen: str | None = None) -> tuple[Device, str]:
    """A new key for a device (shown once); the old key stops working. A revoked device is active
    again with the new key (a replacement camera in the same vehicle). `seen`: the key_version the
    asking page showed; KeyChanged when the key changed since, so that a form sent again (a reload of
    the page that showed the new key) does not silently replace the key just handed out."""
    device = get_device(session, name)
    if seen is not None and seen != key_version(device):
        raise KeyChanged("key", f"device {name}'s key was changed after that page was shown")
    key, digest = _new_device_key()
    device.key_hash = digest
    device.active = True
    device.revoked_at = None
    session.flush()
    log.info("device %s has a new key", name)
    return device, key


# --- login -------------------------------------------------------------------------------------


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def spend_password_time() -> None:
    """As long as a password check: an unknown or inactive user answers no faster than a known one."""
    _hasher.hash("timing-equaliser")
