"""The web pages, served by the same app as the API: the API's first client.

Server-rendered Jinja2 templates (api/http/templates) with a little of our own JavaScript and the
vendored Apache ECharts (api/http/static); nothing is loaded from another host, /docs included (the
vendored Swagger UI: api.http.pages.docs). Pages call the same domain services as the API routes and
check roles the same way; every string comes from one catalogue (api/http/i18n.py, zh-CN and English).
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.responses import Response

from api.http.pages.assets import Assets
from api.http.pages.render import render, see_other, translator
from api.http.pages.session import CsrfRejected, LoginRequired, PageForbidden, session_principal
from api.http.security import SecurityHeaders

# one module per part of the pages, each with a `router`
PAGE_MODULES = (
    "auth",
    "review",
    "cases",
    "chalk",
    "tasks",
    "map",
    "dashboard",
    "reports",
    "upload",
    "admin",
    "docs",
)


def install_pages(app: FastAPI) -> None:
    """Mount the pages, their static files, their error pages and the security headers."""
    app.state.assets = Assets()
    app.add_middleware(SecurityHeaders)
    for name in PAGE_MODULES:
        try:
            module = importlib.import_module(f"api.http.pages.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"api.http.pages.{name}":
                raise
            continue  # a part not built yet
        app.include_router(module.router)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        if _wants_json(request):
            return Response('{"detail":"Authorization: log in first"}', 401, media_type="application/json")
        from api.http.pages.auth import login_redirect

        return see_other(request, login_redirect(request))

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> Response:
        t = translator(request)
        if _wants_json(request):
            return Response(
                '{"detail":"Authorization: not allowed for this role"}', 403, media_type="application/json"
            )
        principal = await session_principal(request)
        return render(
            request,
            "message.html",
            principal=principal,
            heading=t("error.forbidden.title"),
            message=t("error.forbidden.body", role=t(f"role.{exc.role}")),
            status_code=403,
        )

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _: CsrfRejected) -> Response:
        t = translator(request)
        if _wants_json(request):
            return Response('{"detail":"csrf_token: missing or wrong"}', 403, media_type="application/json")
        return render(
            request,
            "message.html",
            principal=await session_principal(request),
            heading=t("error.csrf.title"),
            message=t("error.csrf.body"),
            status_code=403,
        )


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept
