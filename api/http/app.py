"""The FastAPI application, built by `create_app(settings)`; nothing is created at import time.

Routes live in api/http/routes/ and stay thin: they parse, check the caller's role, call the domain
modules and name the response's schema (api/http/schemas.py). Every client error has the same shape,
{"detail": "<field>: <reason>", "errors": [{"field": ..., "reason": ...}]}: a user's mistake is an
api.errors.InputError, answered by one handler; FastAPI's validation errors and Starlette's HTTP
errors are answered in the same shape.

Faults of the service's own are answered in that shape too, never as a plain-text 500: the database
unreachable, restarting or locked beyond its busy timeout is a 503 with Retry-After (field
"database"); a full disk is a 507 naming what filled ("evidence store", "uploads", "database"). Each
is logged as one line with its cause (no traceback, credentials in URLs masked), at most once a
minute per cause. A page (a path outside /api/) gets a readable HTML page instead of JSON.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from api.cases.reading import CaseNotFound
from api.errors import (
    DamagedRecord,
    InputError,
    NotFound,
    ServiceFault,
    StorageFull,
    Unavailable,
    error_body,
    is_disk_full,
)
from api.http.allow import AllowEveryMethod
from api.http.deps import CASE_NUMBERS
from api.http.pages import install_pages
from api.settings import Settings
from api.storage.db import DatabaseBusy

if TYPE_CHECKING:
    from api.jobs.worker import Pipeline

log = logging.getLogger(__name__)


def as_named(request: Request, error: InputError) -> InputError:
    """A case the caller may not see (or that is gone), named in the path by its number: the 404 names
    that number, as it does for a number no case has, so that guessing numbers tells another team's
    enforcement neither that the case exists nor its id."""
    if isinstance(error, CaseNotFound):
        number = (getattr(request.state, CASE_NUMBERS, None) or {}).get(error.case_id)
        if number is not None:
            return NotFound("case_id", f"no case {number}")
    return error


def error_response(error: InputError) -> JSONResponse:
    """The answer to a user's mistake: its body, its status; a 401 says how to authenticate."""
    headers = dict(error.headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.body(), status_code=error.status, headers=headers or None)


DATABASE = "database"
RETRY_AFTER_S = 5
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_SQLITE_UNREACHABLE = ("unable to open", "disk i/o error", "readonly database", "read-only database")
_PASSWORD_OPTION = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """A driver's message with any password in it (a URL's user:password@, password=...) masked."""
    return _PASSWORD_OPTION.sub(r"\1***", _URL_PASSWORD.sub(r"\g<scheme>***@", text))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return mask_credentials(text[0] if text else type(exc).__name__)


def describe_cause(exc: BaseException) -> str:
    """A fault's cause in one line, as logged: its type and the first line of its message, any
    password in it masked."""
    return f"{type(exc).__name__}: {_first_line(exc)}"


def database_fault(exc: BaseException) -> ServiceFault | None:
    """What a database error means for the caller: 503 (unreachable, disconnected, locked beyond
    the busy timeout, no pooled connection in time), 507 (SQLite: disk full); None for anything
    else (a constraint, a bad statement: a bug, left to be a 500)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return Unavailable(DATABASE, "connection lost; retry", retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sqlite3.OperationalError)):
        message = str(orig).lower()
        if "disk is full" in message or "disk full" in message:  # SQLITE_FULL
            return StorageFull(DATABASE)
        if "locked" in message or "busy" in message:
            return Unavailable(DATABASE, "busy beyond its timeout; retry", retry_after_s=RETRY_AFTER_S)
        if isinstance(orig, sqlite3.Error) and not any(m in message for m in _SQLITE_UNREACHABLE):
            return None  # SQLite says OperationalError for a bad statement or a missing table too: a bug
        return Unavailable(DATABASE, "not reachable; retry", retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, DatabaseBusy):
        return Unavailable(DATABASE, "busy beyond its timeout; retry", retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, sa_exc.TimeoutError):  # the connection pool: every connection in use
        return Unavailable(DATABASE, "too busy (no free connection); retry", retry_after_s=RETRY_AFTER_S)
    return None


class _FaultLog:
    """Logs a fault's cause as one warning line, at most once a minute per cause (an outage under
    load would otherwise write a line per request), with the number of repeats left out."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def log(self, fault: ServiceFault, cause: BaseException, request: Request) -> None:
        line = f"{fault.field}: {describe_cause(cause)}"
        now = time.monotonic()
        with self._lock:
            last, repeats = self._last.get(line, (float("-inf"), 0))
            if now - last < self.every_s:
                self._last[line] = (last, repeats + 1)
                return
            if len(self._last) >= 1000:  # causes that vary (a port, a path) must not fill memory
                self._last.clear()
            self._last[line] = (now, 0)
        more = f" (and {repeats} more since)" if repeats else ""
        log.warning("%s %s answered %d: %s%s", request.method, request.url.path, fault.status, line, more)


def fault_response(request: Request, fault: ServiceFault) -> Response:
    """A fault's answer: the error body (a page outside /api/ gets an HTML page) and Retry-After."""
    headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s is not None else None
    if wants_page(request):
        kind = (
            "storage_full"
            if isinstance(fault, StorageFull)
            else "damaged"
            if isinstance(fault, DamagedRecord)
            else "unavailable"
        )
        page = message_page(request, kind, fault.status, detail=str(fault))
        page.headers.update(headers or {})
        return page
    return JSONResponse(fault.body(), status_code=fault.status, headers=headers)


def wants_page(request: Request) -> bool:
    """A person's browser, outside the API: answered with a page, not JSON."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def message_page(request: Request, kind: str, status: int, **values: object) -> Response:
    """The pages' message page for an error of a kind the catalogue names (error.<kind>.title/body)."""
    from api.http.pages.render import render, translator

    t = translator(request)
    return render(
        request,
        "message.html",
        principal=None,
        heading=t(f"error.{kind}.title"),
        message=t(f"error.{kind}.body", **values),
        status_code=status,
    )


def _refused(request: Request, exc: sa_exc.IntegrityError) -> Response:
    """A change the database refused (a unique key another request stored first, a foreign key, a
    trigger): 409 naming the constraint by the first line of the database's message (PostgreSQL's
    DETAIL line, which shows the row's values, is left out), never a 500 with a traceback. The
    request's transaction was rolled back: nothing of it was stored. Logged as an error with its
    traceback, since a refusal no race explains is a bug."""
    reason = _first_line(exc.orig if exc.orig is not None else exc)
    log.error(
        "%s %s answered 409: the database refused the change: %s",
        request.method,
        request.url.path,
        reason,
        exc_info=exc,
    )
    said = f"refused the change ({reason}); nothing of it was stored: reload and try again"
    if wants_page(request):
        return message_page(request, "refused", 409, detail=reason)
    return JSONResponse(error_body(DATABASE, said), status_code=409)


def _install_error_handlers(app: FastAPI) -> None:
    faults = _FaultLog()

    @app.exception_handler(ServiceFault)
    async def _fault(request: Request, exc: ServiceFault) -> Response:
        faults.log(exc, exc.__cause__ or exc, request)
        return fault_response(request, exc)

    async def _database(request: Request, exc: Exception) -> Response:
        if isinstance(exc, sa_exc.DataError):  # SQLSTATE class 22: a value the column cannot hold
            reason = _first_line(exc.orig if exc.orig is not None else exc)
            log.warning(
                "%s %s answered 422: the database refused a value: %s",
                request.method,
                request.url.path,
                reason,
            )
            return error_response(InputError("input", f"a value the database cannot store: {reason}"))
        if isinstance(exc, sa_exc.IntegrityError):  # a constraint: a racing request's change, or a bug
            return _refused(request, exc)
        fault = database_fault(exc)
        if fault is None:
            raise exc  # not the database's state: a bug, answered 500 with its traceback logged
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
        faults.log(fault, cause, request)
        return fault_response(request, fault)

    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError, sqlite3.OperationalError, DatabaseBusy):
        app.add_exception_handler(kind, _database)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> Response:
        if not is_disk_full(exc):
            raise exc
        fault = StorageFull("disk")
        faults.log(fault, exc, request)
        return fault_response(request, fault)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return error_response(as_named(request, exc))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        """The sender hung up mid-body (an upload cut off): no one to answer, nothing kept (the
        receiving code removes what it had written), and no error of the service's."""
        log.info("%s %s: the client disconnected before its body ended", request.method, request.url.path)
        return error_response(InputError("body", "the client disconnected before the body ended", status=400))

    def page_error(request: Request, status: int) -> Response | None:
        """A person's browser asking for a page that is not there (an unknown path, a method the
        page does not take, a path parameter it cannot read): the pages' own "not found" page, not
        the API's JSON. None for the API and for anything but a browser's GET."""
        if request.method not in ("GET", "HEAD") or not wants_page(request):
            return None
        return message_page(request, "notfound", status)

    def form_error(request: Request, status: int, detail: str) -> Response | None:
        """A form a person's browser posted that the page's parameters refused (a field over its length,
        a body over the size limit): a page naming it, not the API's JSON. None for anything else."""
        if request.method != "POST" or not wants_page(request):
            return None
        return message_page(request, "form", status, detail=detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if (page := page_error(request, 404)) is not None:
            return page
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            if err.get("type") == "json_invalid":  # its loc is (body, byte offset): the body is at fault
                detail = (err.get("ctx") or {}).get("error", "")
                at = f" at character {loc[1]}" if len(loc) > 1 else ""
                errors.append({"field": "body", "reason": f"not valid JSON{at}: {detail}".rstrip(": ")})
                continue
            if loc and loc[0] in ("body", "query", "path", "header", "cookie") and len(loc) > 1:
                loc = loc[1:]
            errors.append({"field": ".".join(loc) or "request", "reason": err.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "request", "reason": "invalid"}
        if (page := form_error(request, 422, f"{first['field']}: {first['reason']}")) is not None:
            return page
        return JSONResponse(
            {"detail": f"{first['field']}: {first['reason']}", "errors": errors}, status_code=422
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        """Starlette's and FastAPI's own errors (an unknown path, a wrong method, a body that is no
        form) in the same shape; a browser's page that is not there, as a page."""
        if exc.status_code in (404, 405) and (page := page_error(request, exc.status_code)) is not None:
            return page
        if exc.status_code in (400, 413) and (page := form_error(request, exc.status_code, str(exc.detail))):
            return page
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
    from api.http.routes import (
        admin,
        auth,
        cameras,
        cases,
        chalk_marks,
        incidents,
        reports,
        runner_jobs,
        uploads,
    )
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
        if run_webhooks and settings.checkpoint_every_min > 0:
            from api.cases.checkpoints import CheckpointSchedule

            threads.append(
                CheckpointSchedule(
                    services.factory,
                    every_s=settings.checkpoint_every_min * 60,
                    folder=settings.checkpoints_dir,
                    data_dir=settings.data_dir,
                    read_factory=services.read_factory,
                )
            )
        if run_webhooks:
            from api.cameras.registry import CameraWatch

            threads.append(CameraWatch(services.factory, offline_after_s=settings.camera_offline_after_s))
            from api.jobs.resumable import UploadSessionSweep

            threads.append(
                UploadSessionSweep(
                    services.factory,
                    uploads_dir=settings.uploads_dir,
                    expiry=timedelta(hours=settings.upload_session_expiry_h),
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
    # the site config as the in-process worker loads it: an upload's start time without an offset is
    # read in its camera's time zone (api.http.routes.uploads)
    app.state.config_loader = config_loader
    _install_error_handlers(app)
    app.add_middleware(AllowEveryMethod, openapi=app.openapi)
    for module in (auth, incidents, uploads, cases, chalk_marks, reports, admin, cameras, runner_jobs):
        app.include_router(module.router)
    install_pages(app)

    @app.get("/api/health", tags=["meta"], response_model=schemas.Health)
    def health() -> schemas.Health:
        return schemas.Health(status="ok")

    return app


# --- several server processes (gridpatrol serve --workers N) --------------------------------------

SERVE_WORKER_ENV = "GRIDPATROL_SERVE_UPLOAD_WORKER"  # "1": the background process also runs upload jobs
SERVE_LOG_LEVEL_ENV = "GRIDPATROL_SERVE_LOG_LEVEL"
BACKGROUND_LOCK = "serve-background.lock"  # in the data folder
_background_fd: list[int] = []  # the lock's file, held open for the life of the process


def holds_background_lock(data_dir: Any) -> bool:
    """Whether this process is the one of `gridpatrol serve --workers N` that runs the background
    threads (webhooks, checkpoints, the camera watch, upload jobs): the first to lock the data
    folder's BACKGROUND_LOCK, held until it ends (a restarted process takes it again)."""
    import fcntl
    import os
    from pathlib import Path

    if _background_fd:
        return True
    path = Path(data_dir) / BACKGROUND_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _background_fd.append(fd)
    return True


def app_from_env() -> FastAPI:
    """The app of one process of `gridpatrol serve --workers N` (uvicorn's factory, in a process of
    its own): settings from the environment, as the parent resolved them. Every process serves every
    route and has its own ingest writer (the database serialises them, the custody ledger stays one
    chain); the background threads run in one process only (holds_background_lock)."""
    import os

    level = os.environ.get(SERVE_LOG_LEVEL_ENV, "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("alembic", "httpx"):  # as the CLI: other packages' INFO is noise
        logging.getLogger(name).setLevel(max(logging.getLogger().level, logging.WARNING))
    settings = Settings.from_env()
    background = holds_background_lock(settings.data_dir)
    if background:
        log.info("server process %d runs the background threads", os.getpid())
    return create_app(
        settings, run_worker=background and os.environ.get(SERVE_WORKER_ENV) == "1", run_webhooks=background
    )
