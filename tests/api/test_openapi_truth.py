"""/openapi.json tells the truth: every operation documents the error statuses it answers with, in the
API's one error body, and schemathesis, run in-process with every check it has, finds nothing.

The schemathesis run is the one `schemathesis run URL/openapi.json --checks all` makes (its examples,
coverage, fuzzing and stateful phases), against the real app on SQLite with an admin's token, with a
small, fixed budget (a few examples per operation, one seed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from api.http.deps import MAX_ID
from tests.api.api_testkit import import_demo_grid, make_settings, seed_people

# Operations whose inputs are checked beyond what a JSON schema can say, so that schema-valid input
# is refused with 415/422 naming the field: schemathesis' positive_data_acceptance takes those
# answers from them (every other check still applies).
BEYOND_THE_SCHEMA = {
    "/api/incidents": "the `incident` part must be an incident's JSON, its evidence the files it lists",
    "/api/incidents/batch": "as /api/incidents, for each incident of the batch",
    "/api/uploads": "the file must be a video container, the track a GPS track (sniffed, not declared)",
    "/api/upload-sessions": "the size must be within the footage size limit, start_time a time",
    "/api/upload-sessions/{session_id}": "the chunk must start at the session's offset, end by its size",
    "/api/upload-sessions/{session_id}/finish": "all the session's bytes must have come, and hash right",
    "/api/webhooks": "the URL's host must resolve to a public address",
    "/api/grids": "the body must be a GeoJSON FeatureCollection of valid polygons with ids and teams",
    "/api/cameras": "zones must be simple polygons with area, the time zone must exist, the grid cell too",
    "/api/cameras/{camera_id}": "as /api/cameras, for the fields sent",
    "/api/users/{username}": "an enforcement user keeps a team; the last active admin stays an admin",
    "/api/cases": "until must not be before since",
    "/api/stats": "until must not be before since",
    "/api/coverage": "until must not be before since",
    "/api/chalk-marks": "until must not be before since",
    "/api/reports/period": "until must not be before since, nor more than 732 days after it",
    "/api/reports/period.csv": "until must not be before since, nor more than 732 days after it",
}
# a declared size over the footage limit; a chunk past the size its session declared
SIZED = {"/api/upload-sessions", "/api/upload-sessions/{session_id}"}
EXAMPLES_PER_OPERATION = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    from api.http.app import create_app

    tmp = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(tmp, f"sqlite:///{tmp / 'openapi.db'}"), run_webhooks=False)
    yield app
    app.state.services.close()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", path, operation


def _schema_name(response: dict[str, Any]) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


def test_every_operation_documents_its_error_statuses(app: FastAPI) -> None:
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)  # FastAPI's 422, not ours
    error = schemas["ErrorBody"]
    assert error["properties"]["detail"]["type"] == "string" and set(error["required"]) == {
        "detail",
        "errors",
    }
    for name, path, operation in _operations(doc):
        responses = operation["responses"]
        # the errors: not a 2xx, nor a 304 (a picture the client holds, api.cases.box_pictures)
        statuses = {int(code) for code in responses if not code.startswith(("2", "3"))}
        parameters = operation.get("parameters", [])
        body = operation.get("requestBody", {}).get("content", {})
        expected = set()
        if operation.get("security"):
            expected |= {401, 403, 503}
        if parameters or body:
            expected.add(422)
        if any(p["in"] == "path" for p in parameters):
            expected.add(404)
        if body:
            expected.add(400)
        if not name.startswith("GET "):  # it writes: the database, the evidence store or the uploads
            expected |= {503, 507}
        if set(body) - {"application/json"}:
            expected.add(415)
        if path == "/api/auth/token":
            expected |= {401, 429}
        assert expected <= statuses, f"{name}: {sorted(expected - statuses)} not documented"
        for status in statuses:  # ErrorBody, or one with more keys (TransitionConflict)
            schema = _schema_name(responses[str(status)])
            assert {"detail", "errors"} <= set(schemas[schema]["properties"]), f"{name} {status}: {schema}"
    health = doc["paths"]["/api/health"]["get"]
    assert not health.get("security") and set(health["responses"]) == {"200"}


def test_a_405_allows_every_method_of_its_path(app: FastAPI) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for path, allow in [("/api/users", "GET, POST"), ("/api/grids", "GET, PUT"), ("/api/me", "GET")]:
            response = client.request("OPTIONS", path)
            assert response.status_code == 405 and response.headers["allow"] == allow, path
            assert response.json()["errors"][0]["field"] == "path"


def test_query_times_are_iso_text_and_case_ids_in_range(app: FastAPI) -> None:
    from fastapi.testclient import TestClient

    token = seed_people(app.state.services)["viewer"]
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for value, status in [
            ("2026-11-20T09:00:00+08:00", 200),
            ("2026-11-20T09:00:00", 200),  # no offset: UTC
            ("0.5", 422),  # pydantic would read Unix seconds
            ("1700000000", 422),
            ("1351-06-21T23:04:48+06:09", 422),
        ]:
            response = client.get("/api/cases", params={"until": value})
            assert response.status_code == status, (value, response.text)
        too_far = client.get(f"/api/cases/{MAX_ID + 1}")
        assert too_far.status_code == 422 and "at most" in too_far.json()["detail"]
    documented = app.openapi()["paths"]["/api/cases/{case_id}"]["get"]["parameters"][0]["schema"]["pattern"]
    ids = re.compile(documented)  # the ids there can be, no more
    assert all(ids.match(str(n)) for n in (1, 9, 10, 999_999_999, 1_000_000_000, 2_147_483_639, MAX_ID))
    assert not any(ids.match(str(n)) for n in (0, MAX_ID + 1, 2_147_483_650, 2_200_000_000, 9_999_999_999))


@pytest.mark.slow
def test_schemathesis_finds_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    from api.http.app import create_app

    tmp = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(tmp, f"sqlite:///{tmp / 'st.db'}"), run_webhooks=False)
    try:
        import_demo_grid(app.state.services)
        token = seed_people(app.state.services)["admin"]
        config = SchemathesisConfig.from_dict(
            {
                "seed": 1,
                "workers": 1,
                "headers": {"Authorization": f"Bearer {token}"},
                "generation": {"max-examples": EXAMPLES_PER_OPERATION, "database": "none"},
                "operations": [
                    {
                        "include-path": path,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "401", "403", "404", "409", "415", "422"]
                                + (["413"] if path in SIZED else [])
                            }
                        },
                    }
                    for path in BEYOND_THE_SCHEMA
                ],
            }
        )
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        failures: list[str] = []
        checks: set[str] = set()
        requests = 0
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                requests += len(event.recorder.interactions)
                for node in event.recorder.checks.values():
                    for check in node:
                        checks.add(check.name)
                        if check.failure_info is not None:
                            failure = check.failure_info.failure
                            failures.append(f"{event.recorder.label} {check.name}: {failure.title}")
            elif isinstance(event, events.NonFatalError):
                failures.append(f"{event.label}: error {event.value!r}")
            elif isinstance(event, events.EngineFinished):
                assert event.stop_reason == "completed", event.stop_reason
        assert requests > 500, requests
        assert len(checks) >= 12, sorted(checks)  # every check ran, not only not_a_server_error
        assert failures == [], json.dumps(sorted(set(failures)), indent=1)
    finally:
        app.state.services.close()
