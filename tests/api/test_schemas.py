"""The OpenAPI document tells the truth about every answer, and user errors have one base and one handler.

The answers themselves are checked against these schemas by tests/api/test_schema_fuzz.py.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import api
from api.accounts.accounts import (
    AccountConflict,
    AccountNotFound,
    AuthError,
    LoginFailed,
    RoleNotAllowed,
    Unauthenticated,
)
from api.accounts.throttle import LoginThrottled
from api.cases.acting import ForbiddenMove
from api.cases.grids import GridImportError
from api.cases.incident import IncidentInputError
from api.cases.webhooks import WebhookInputError
from api.cases.workflow import TransitionError, TransitionInputError
from api.errors import InputError, NotFound
from api.http.app import error_response
from api.http.incident_form import IncidentFormError
from api.http.multipart import MalformedBody
from api.jobs.uploads import UploadError
from api.storage.evidence_store import EvidenceError
from tests.api.api_testkit import make_settings

# Exceptions of api/ that never answer a request, and why.
NOT_ANSWERS = {
    "api.cli.CommandError": "the CLI prints it and exits 1",
    "api.settings.SettingsError": "raised where the service starts; the CLI reports it",
    "api.storage.db.SchemaTooNew": "raised where the service starts or a command opens the database; "
    "both print it in one line",
    "api.jobs.worker.JobFailed": "a job's failure, written on the job",
    "api.jobs.worker.LeaseLost": "another worker took the job",
    "api.cases.audit._BadDetail": "a custody entry edited into something unreadable: a line of the audit",
    "api.cases.webhook_targets.TargetRefused": "a webhook delivery's failure, written on the delivery",
    "api.cases.webhook_targets.TargetUnresolved": "a webhook delivery's failure, retried and logged",
    "api.cases.ingest._StaleCase": "a case changed under the writer's batch: written again one at a time",
    "api.http.multipart._Malformed": "the parser's own finding, raised as MalformedBody (400) by read_parts",
    # the runner is a client of the API, not part of it: its errors are the runner's to report
    "api.runner.spool.SpoolError": "the runner reports it (the CLI exits 1 naming the spool folder)",
    "api.runner.spool.SpoolBusy": "another runner has the spool folder open: the runner's CLI says so",
    "api.runner.spool.IncidentNotSpoolable": "the runner's own incident does not match its files: logged",
    "api.runner.spool.ItemGone": "the forwarder's item left the spool meanwhile: it goes on to the next",
    "api.runner.forwarder._Abandoned": "a send stop() gave up on: its thread ends, the spool untouched",
    "api.runner.engine.EngineError": "the runner's supervisor cannot go on (key refused): its CLI exits 1",
    "api.runner.uploads.JobFailed": "a runner's upload job's failure, sent to the job as its error",
    "api.runner.uploads.AttemptStopped": "a runner's upload job attempt left to its lease: logged, retried",
}
PAGES = "api.http.pages."  # the pages answer their own errors as pages (a redirect to the login form, a
# 403 page), with the handlers api.http.pages.install_pages registers


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    from api.http.app import create_app

    tmp = tmp_path_factory.mktemp("schemas")
    app = create_app(make_settings(tmp, f"sqlite:///{tmp / 'schemas.db'}"), run_webhooks=False)
    yield app
    app.state.services.close()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_route_documents_its_success_body(app: FastAPI) -> None:
    doc = app.openapi()
    operations = list(_operations(doc))
    assert len(operations) >= 20
    for name, operation in operations:
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert successes, f"{name}: no 2xx response"
        for code, response in successes.items():
            content = response.get("content")
            assert content, f"{name} {code}: no content"
            for media_type, body in content.items():
                schema = body.get("schema") or {}
                if media_type == "application/json":
                    target = _resolve(doc, schema.get("items", schema))
                    assert target.get("properties"), f"{name} {code}: no JSON schema ({schema})"
                else:
                    assert schema == {"type": "string", "format": "binary"}, f"{name} {code} {media_type}"


def test_every_error_is_documented_with_the_error_body(app: FastAPI) -> None:
    doc = app.openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's shape, not ours
    for name, operation in _operations(doc):
        responses = operation["responses"]
        if operation.get("security"):
            assert {"401", "403"} <= set(responses), f"{name}: needs a token but documents no 401/403"
        for code, response in responses.items():
            if not code.startswith("4"):
                continue
            schema = _resolve(doc, response["content"]["application/json"]["schema"])
            assert {"detail", "errors"} <= set(schema["properties"]), f"{name} {code}"
    conflict = doc["paths"]["/api/cases/{case_id}/transitions"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"]["$ref"].endswith("/TransitionConflict")


def test_statuses_and_roles_are_openapi_enums(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    assert schemas["Status"]["enum"] == [
        "pending_review",
        "filed",
        "dispatched",
        "handled",
        "verified",
        "closed",
        "rejected",
    ]
    assert schemas["Role"]["enum"] == ["admin", "operator", "enforcement", "viewer"]
    assert schemas["RejectReason"]["enum"] == ["false_positive", "duplicate", "not_a_violation", "exempt"]


def _api_exceptions() -> Iterator[type[BaseException]]:
    """Every exception class defined in a module of api/ (migrations and __main__ are scripts)."""
    root = Path(api.__file__).parent
    for module_info in pkgutil.walk_packages([str(root)], prefix="api."):
        name = module_info.name
        if name.startswith("api.storage.migrations") or name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                yield value


def test_user_errors_are_input_errors_with_one_handler(app: FastAPI) -> None:
    exceptions = set(_api_exceptions())
    assert InputError in exceptions and len(exceptions) >= 20
    own_handlers = {cls for cls in app.exception_handlers if isinstance(cls, type)}
    for cls in exceptions:
        name = f"{cls.__module__}.{cls.__qualname__}"
        assert not issubclass(cls, ValueError), f"{name} is a ValueError"
        if issubclass(cls, InputError):
            assert cls is InputError or cls not in own_handlers, f"{name} has a handler of its own"
        else:
            # a handled base answers its subclasses (ServiceFault: Unavailable 503, StorageFull 507)
            ours = [h for h in own_handlers if h.__module__.startswith("api.")]
            answered = cls in own_handlers or any(issubclass(cls, h) for h in ours)
            answered = answered or name.startswith(PAGES)
            assert name in NOT_ANSWERS or answered, f"{name} is neither an InputError nor handled"
    assert InputError in own_handlers


@pytest.mark.parametrize(
    ("error", "status", "field"),
    [
        (NotFound("case_id", "no case 7"), 404, "case_id"),
        (IncidentInputError("incident.position", "bad"), 422, "incident.position"),
        (ForbiddenMove("viewer", "filed"), 403, "to"),
        (TransitionInputError("reason", "needed"), 422, "reason"),
        (GridImportError(["feature 0: bad", "feature 1: worse"]), 422, "features"),
        (WebhookInputError("url", "bad"), 422, "url"),
        (AuthError("team", "needed"), 422, "team"),
        (AccountConflict("username", "taken"), 409, "username"),
        (AccountNotFound("name", "no device 'x'"), 404, "name"),
        (LoginFailed("password", "wrong"), 401, "password"),
        (Unauthenticated("a bearer token is required"), 401, "Authorization"),
        (RoleNotAllowed("device"), 403, "Authorization"),
        (EvidenceError("empty file"), 422, "files"),
        (UploadError("file", "too large", 413), 413, "file"),
        (IncidentFormError("must be multipart/form-data with a boundary"), 415, "body"),
        (MalformedBody("malformed multipart body (MultipartParseError)"), 400, "body"),
    ],
)
def test_error_bodies(error: InputError, status: int, field: str) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert error.body() == {
        "detail": f"{field}: {error.reason}",
        "errors": [{"field": field, "reason": error.reason}],
    }
    assert str(error) == f"{field}: {error.reason}"
    assert (response.headers.get("www-authenticate") == "Bearer") is (status == 401)


def test_error_bodies_with_more() -> None:
    conflict = TransitionError("pending_review", "closed", ("filed", "rejected"))
    assert conflict.status == 409
    assert conflict.body()["current"] == "pending_review" and conflict.body()["allowed"] == [
        "filed",
        "rejected",
    ]
    assert GridImportError(["a", "b"]).reason == "a; b"
    throttled = error_response(LoginThrottled(42))
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "42"
