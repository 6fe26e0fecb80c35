"""A property-based run over the OpenAPI schema (schemathesis): no input makes a 5xx, and every
answer is one the schema documents (its status, content type and body).

Bounded: a handful of examples per operation, no deadline, one server for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode

from tests.api.api_testkit import LiveServer, _Server, import_demo_grid, make_settings, seed_people

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from api.http.app import create_app

    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(tmp, f"sqlite:///{tmp / 'fuzz.db'}"), run_webhooks=False)
    services = app.state.services
    import_demo_grid(services)
    tokens = seed_people(services)
    server = _Server(app)
    url = server.__enter__()
    try:
        yield LiveServer(url, app, services, tokens)
    finally:
        server.__exit__()


def _operations(live: LiveServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _check(live: LiveServer, case: Any) -> None:
    who = "device" if case.path in ("/api/incidents", "/api/uploads") else "admin"
    response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {live.tokens[who]}"})
    assert response.status_code < 500, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
    )
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )
    ctype = response.headers.get("content-type") or [""]
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if 400 <= response.status_code < 500 and ctype.startswith("application/json"):
        body = response.json()
        assert body.get("errors") and body["errors"][0]["field"] and body["errors"][0]["reason"], body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(live: LiveServer, mode: GenerationMode) -> None:
    operations = _operations(live)
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def run(case: Any) -> None:
            _check(live, case)

        try:
            run()
        except Unsatisfiable:  # nothing invalid to generate for this operation (e.g. GET /api/health)
            continue
