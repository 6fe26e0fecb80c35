"""User errors by name: one base class, caught by one HTTP handler (api.http.app); imports nothing of
gridpatrol, so every room may raise these.

An `InputError` is a mistake in what a user, a device or a file sent: it names the input (`field`),
says what is wrong with it (`reason`) and carries the HTTP status it answers with (`status`, 422
unless a subclass or the raiser says otherwise). Its body is the API's one error shape,
{"detail": "<field>: <reason>", "errors": [{"field": ..., "reason": ...}]}, plus `extra` keys when a
caller needs more (a 409 names the current status and the allowed ones). A programming error is
never an InputError, and no InputError is a ValueError, so an `except ValueError` around a library
call can never swallow a user's mistake, nor a user's mistake hide a bug.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Any


class InputError(Exception):
    """A user's mistake, named: `field` (the input), `reason` (what is wrong), `status` (HTTP)."""

    status: int = 422

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        if status is not None:
            self.status = status
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The error as the API answers it."""
        return error_body(self.field, self.reason, self.extra)


def error_body(field: str, reason: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The API's one error shape."""
    return {"detail": f"{field}: {reason}", "errors": [{"field": field, "reason": reason}], **(extra or {})}


class NotFound(InputError):
    """The named thing does not exist, or the caller may not see it (404)."""

    status = 404


class ServiceFault(Exception):
    """The service cannot do the work now, through no fault of the caller: `field` names the part
    that failed ("database", "evidence store", "uploads"), `reason` what happened, `status` the
    HTTP status, `retry_after_s` when a retry may succeed (sent as Retry-After)."""

    status: int = 503

    def __init__(self, field: str, reason: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return error_body(self.field, self.reason)


class Unavailable(ServiceFault):
    """A part the service needs does not answer (503): the database down, restarting or locked
    beyond its busy timeout; retry after `retry_after_s`."""

    status = 503

    def __init__(self, field: str, reason: str, *, retry_after_s: int = 5) -> None:
        super().__init__(field, reason, retry_after_s=retry_after_s)


class DamagedRecord(ServiceFault):
    """A stored value that reads as nothing its column holds (SQLite keeps times as text, which an
    edit of the file outside the service can make anything): answered 503 naming the value, never a
    traceback; `gridpatrol evidence verify` names the rows of the cases it damages."""

    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__("database", reason)


class StorageFull(ServiceFault):
    """A disk the service writes to is full (507 Insufficient Storage); nothing half-written stays."""

    status = 507

    def __init__(self, field: str, reason: str = "no space left on device") -> None:
        super().__init__(field, reason)


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """An OSError saying the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
