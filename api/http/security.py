"""Security headers for the pages (a pure ASGI middleware: nothing is added to /api/ responses, whose
hot paths are benchmarked, and nothing buffers a body).

The Content-Security-Policy allows scripts, styles, images and fetches from this origin only: no
inline script (`script-src 'self'`), no framing, no form posts elsewhere. Styles allow inline ones
because Apache ECharts styles its tooltips with inline style attributes; a style cannot run code.
Data a page's script needs is handed over in `<script type="application/json">` blocks, which are
data, not code. A response that sets one of these headers itself keeps its own (/docs allows its one
inline script by hash: api.http.pages.docs).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(self), geolocation=(self), microphone=()"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {name.lower() for name, _ in headers}
                message["headers"] = headers + [(name, value) for name, value in HEADERS if name not in own]
            await send(message)

        await self.app(scope, receive, send_with_headers)
