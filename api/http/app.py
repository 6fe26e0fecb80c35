"""The FastAPI application, built by `create_app(settings)`; nothing is created at import time.

Routes live in api/http/routes/ and stay thin: they parse, check the caller's role, call the domain
modules and name the response's schema (api/http/schemas.py). Every client error has the same shape,
{"detail": "<field>: <reason>", "errors": [{"field": ..., "reason": ...}]}: a user's mistake is an
api.errors.InputError, answered by one handler; FastAPI's validation errors and Starlette's HTTP
errors are answered in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.errors import InputError
from api.http.pages import install_pages
from api.settings import Settings

if TYPE_CHECKING:
    from api.jobs.worker import Pipeline

log = logging.getLogger(__name__)


def error_response(error: InputError) -> JSONResponse:
    """The answer to a user's mistake: its body, its status; a 401 says how to authenticate."""
    headers = dict(error.headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.body(), status_code=error.status, headers=headers or None)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            if loc and loc[0] in ("body", "query", "path", "header", "cookie") and len(loc) > 1:
                loc = loc[1:]
            errors.append({"field": ".".join(loc) or "request", "reason": err.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "request", "reason": "invalid"}
        return JSONResponse(
            {"detail": f"{first['field']}: {first['reason']}", "errors": errors}, status_code=422
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's and FastAPI's own errors (an unknown path, a wrong method, a body that is no
        form) in the same shape."""
        field = "body" if exc.status_code == 400 else "path" if exc.status_code in (404, 405) else "request"
        return error_response(InputError(field, str(exc.detail), status=exc.status_code, headers=exc.headers))


def create_app(
    settings: Settings,
    *,
    run_worker: bool = False,
    run_webhooks: bool = True,
    pipeline: Pipeline | None = None,
    config_loader: Callable[[], Any] | None = None,
) -> FastAPI:
    """The API for these settings. The database is migrated here; background threads (webhook
    dispatcher, and the in-process worker when run_worker) start with the app's lifespan."""
    from api.http import schemas
    from api.http.routes import admin, auth, cases, incidents, reports, uploads
    from api.services import Services

    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads: list[Any] = []
        if run_webhooks:
            from api.cases.webhooks import WebhookDispatcher

            threads.append(
                WebhookDispatcher(
                    services.factory,
                    timeout_s=settings.webhook_timeout_s,
                    max_attempts=settings.webhook_max_attempts,
                    backoff_s=settings.webhook_backoff_s,
                    poll_s=settings.webhook_poll_s,
                    targets=services.webhook_targets,
                )
            )
        if run_worker:
            from api.jobs.worker import Worker

            threads.append(
                Worker(
                    services.factory,
                    settings,
                    pipeline=pipeline,
                    config_loader=config_loader,
                    grid_cache=services.grid_cache,
                )
            )
        for thread in threads:
            thread.start()
        app.state.background = threads
        try:
            yield
        finally:
            for thread in threads:
                thread.stop()
            services.close()

    app = FastAPI(
        title="gridpatrol",
        version="0.1.0",
        description="Patrol-camera incidents become evidence cases in grid cells (网格化管理).",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from vendored files (api.http.pages.docs); no ReDoc
        redoc_url=None,
    )
    app.state.services = services
    _install_error_handlers(app)
    for module in (auth, incidents, uploads, cases, reports, admin):
        app.include_router(module.router)
    install_pages(app)

    @app.get("/api/health", tags=["meta"], response_model=schemas.Health)
    def health() -> schemas.Health:
        return schemas.Health(status="ok")

    return app
