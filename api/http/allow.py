"""A 405's Allow header names every method of its path (RFC 9110 §15.5.6).

A path served by two routes (GET and POST /api/users) is answered, for a third method, by the first
route that matched it by path, with that route's methods alone in Allow ("POST", as if GET were not
there). `AllowEveryMethod` rewrites a 405's Allow to every method the OpenAPI document gives its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class AllowEveryMethod:
    """ASGI middleware: a 405 under a documented path lists all of that path's methods."""

    def __init__(self, app: ASGIApp, *, openapi: Callable[[], Mapping[str, Any]]) -> None:
        self.app = app
        self.openapi = openapi
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    def allowed(self, path: str) -> str | None:
        """The methods of the documented path matching `path` ("GET, POST"), or None."""
        if self._paths is None:  # built on the first 405: the document is complete by then
            self._paths = [
                (compile_path(template)[0], ", ".join(sorted(m.upper() for m in item if m in METHODS)))
                for template, item in self.openapi().get("paths", {}).items()
            ]
        return next((methods for regex, methods in self._paths if regex.match(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self.allowed(scope["path"])
                if allow:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_allow)
