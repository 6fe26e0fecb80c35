"""The FastAPI application, built by `create_app(settings)`; nothing is created at import time.

Routes live in api/routes/ and stay thin: they parse, check the caller's role and call the domain
modules. Every client error has the same shape: {"detail": "<field>: <reason>", "errors":
[{"field": ..., "reason": ...}]}.
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

from api.settings import Settings

if TYPE_CHECKING:
    from api.jobs.worker import Pipeline

log = logging.getLogger(__name__)


def error_response(status: int, field: str, reason: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"detail": f"{field}: {reason}", "errors": [{"field": field, "reason": reason}]}
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    from api.accounts.accounts import AccountConflict, AccountNotFound, AuthError
    from api.cases.acting import ForbiddenMove
    from api.cases.grids import GridImportError
    from api.cases.incident import IncidentInputError
    from api.cases.reading import NotFound
    from api.cases.webhooks import WebhookInputError
    from api.cases.workflow import TransitionError, TransitionInputError
    from api.http.incident_form import IncidentFormError
    from api.jobs.uploads import UploadError
    from api.storage.evidence_store import EvidenceError

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
        detail = exc.detail
        if isinstance(detail, dict) and "field" in detail:
            response = error_response(exc.status_code, detail["field"], detail["reason"])
        else:
            field = (
                "body" if exc.status_code == 400 else "path" if exc.status_code in (404, 405) else "request"
            )
            response = error_response(exc.status_code, field, str(detail))
        for key, value in (exc.headers or {}).items():  # e.g. Retry-After of a 429
            response.headers[key] = value
        return response

    def handler(status: int, field_of: Callable[[Any], tuple[str, str]]) -> Callable[..., Any]:
        async def _handle(_: Request, exc: Exception) -> JSONResponse:
            field, reason = field_of(exc)
            return error_response(status, field, reason)

        return _handle

    app.add_exception_handler(NotFound, handler(404, lambda e: (e.field, e.reason)))
    app.add_exception_handler(IncidentInputError, handler(422, lambda e: (e.field, e.reason)))
    app.add_exception_handler(TransitionInputError, handler(422, lambda e: (e.field, e.reason)))
    app.add_exception_handler(WebhookInputError, handler(422, lambda e: (e.field, e.reason)))
    app.add_exception_handler(ForbiddenMove, handler(403, lambda e: ("to", str(e))))
    app.add_exception_handler(AuthError, handler(422, lambda e: (e.field, e.reason)))
    app.add_exception_handler(AccountConflict, handler(409, lambda e: (e.field, e.reason)))
    app.add_exception_handler(AccountNotFound, handler(404, lambda e: (e.field, e.reason)))
    app.add_exception_handler(EvidenceError, handler(422, lambda e: ("files", str(e))))
    app.add_exception_handler(GridImportError, handler(422, lambda e: ("features", "; ".join(e.problems))))

    async def _upload(_: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, exc.field, exc.reason)

    async def _transition(_: Request, exc: TransitionError) -> JSONResponse:
        return error_response(409, "to", str(exc), current=exc.current, allowed=list(exc.allowed))

    async def _incident_form(_: Request, exc: IncidentFormError) -> JSONResponse:
        return error_response(exc.status, "body", exc.reason)

    app.add_exception_handler(UploadError, _upload)  # type: ignore[arg-type]
    app.add_exception_handler(IncidentFormError, _incident_form)  # type: ignore[arg-type]
    app.add_exception_handler(TransitionError, _transition)  # type: ignore[arg-type]


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
    )
    app.state.services = services
    _install_error_handlers(app)
    for module in (auth, incidents, uploads, cases, reports, admin):
        app.include_router(module.router)

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
