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
        return {
            "detail": f"{self.field}: {self.reason}",
            "errors": [{"field": self.field, "reason": self.reason}],
            **self.extra,
        }


class NotFound(InputError):
    """The named thing does not exist, or the caller may not see it (404)."""

    status = 404
