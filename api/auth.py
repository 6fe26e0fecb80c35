"""Users, roles, devices and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi). Login tokens and device keys are random
(secrets.token_urlsafe) and stored only as their SHA-256, so a database leak gives no usable key.
Device keys start with "gpd_" and reach only the upload and incident endpoints.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db import utcnow
from api.models import ApiToken, Device, User

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "enforcement", "viewer")
DEVICE_KEY_PREFIX = "gpd_"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

_hasher = PasswordHasher()


class AuthError(ValueError):
    """Bad credentials or a bad user/device definition; the message names the field."""


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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(
    session: Session, *, username: str, password: str, role: str, team: str | None = None
) -> User:
    if not NAME_RE.match(username):
        raise AuthError("username: 1-64 letters, digits or _ . @ -")
    if role not in ROLES:
        raise AuthError(f"role: '{role}' is not one of {', '.join(ROLES)}")
    if role == "enforcement" and not team:
        raise AuthError("team: an enforcement user must belong to a team")
    if len(password) < 8:
        raise AuthError("password: at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AuthError(f"username: '{username}' already exists")
    user = User(username=username, password_hash=hash_password(password), role=role, team=team or None)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise AuthError(f"username: '{username}' already exists") from None
    return user


def create_device(session: Session, *, name: str, camera_id: str | None = None) -> tuple[Device, str]:
    """A new device and its key (shown once; only its hash is kept)."""
    if not NAME_RE.match(name):
        raise AuthError("name: 1-64 letters, digits or _ . @ -")
    if session.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise AuthError(f"name: device '{name}' already exists")
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    device = Device(name=name, key_hash=token_hash(key), camera_id=camera_id or None)
    session.add(device)
    session.flush()
    return device, key


def login(session: Session, *, username: str, password: str, ttl_h: float) -> str:
    """A new bearer token for a user, or AuthError (same message for unknown user and bad password)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        _hasher.hash("timing-equaliser")
        raise AuthError("username or password is wrong")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise AuthError("username or password is wrong") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at < now))
    session.add(
        ApiToken(token_hash=token_hash(token), user_id=user.id, expires_at=now + timedelta(hours=ttl_h))
    )
    log.info("user %s logged in", user.username)
    return token


def resolve(session: Session, token: str) -> Principal | None:
    """The principal a bearer token or device key stands for; None when unknown or expired."""
    if not token or len(token) > 200:
        return None
    digest = token_hash(token)
    if token.startswith(DEVICE_KEY_PREFIX):
        device = session.scalar(select(Device).where(Device.key_hash == digest, Device.active.is_(True)))
        if device is None:
            return None
        return Principal(
            kind="device", name=device.name, role="device", device_id=device.id, camera_id=device.camera_id
        )
    row = session.execute(
        select(User, ApiToken.expires_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if row is None:
        return None
    user, expires_at = row
    if expires_at < utcnow() or not user.active:
        return None
    return Principal(kind="user", name=user.username, role=user.role, team=user.team, user_id=user.id)


def logout(session: Session, token: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(token)))
