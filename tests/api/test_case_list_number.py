"""The case list's number box finds a case as people read its number out: the whole number in any case,
without its leading zeros, or its digits alone; text that names no case finds none, never a 500."""

from __future__ import annotations

import re
from typing import Any

from tests.api.api_testkit import LiveServer, incident_json, post_incident

FOUND = ["GP-2026-000002", "gp-2026-000002", "2", "000002", " 2 ", "GP-2026-2", "gp2026000002"]
NONE = ["GP-2025-000002", "3", "9999999999", "99999999999", "GP-2026", "x2"]


def test_the_number_box_finds_a_case_by_its_number_or_its_digits(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with server.client("device") as device, server.browser("operator") as op:
        for name, position in (("first", (30.2741, 120.1551)), ("second", (30.2841, 120.1651))):
            assert post_incident(device, incident_json(name, position=position)).status_code == 201

        def listed(number: str) -> list[str]:
            page = op.get("/cases", params={"number": number})
            assert page.status_code == 200, page.text[:300]
            return re.findall(r'data-number="([^"]+)"', page.text)

        assert {typed: listed(typed) for typed in FOUND} == {typed: ["GP-2026-000002"] for typed in FOUND}
        assert {typed: listed(typed) for typed in NONE} == {typed: [] for typed in NONE}


# text of no number form: the API names `number` (the page says so above the list, and finds none)
NO_FORM = ["GP-2026", "x2", "99999999999", "GP-2026-000002x", "2026-000002"]


def test_the_api_takes_a_number_as_the_number_box_does(make_server: Any, sqlite_url: str) -> None:
    """GET /api/cases?number= took only the whole number as stored (GP-2026-000002): 2, 000002 and
    GP-2026-2, which the case list's box finds, found nothing. Both read a number with one parser
    (api.cases.reading.number_query); text of no number form is a 422 naming number."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.browser("operator") as web,
    ):
        for name, position in (("first", (30.2741, 120.1551)), ("second", (30.2841, 120.1651))):
            assert post_incident(device, incident_json(name, position=position)).status_code == 201

        def found(number: str) -> list[str]:
            got = op.get("/api/cases", params={"number": number})
            assert got.status_code == 200, (number, got.text)
            return [case["number"] for case in got.json()["items"]]

        assert {typed: found(typed) for typed in FOUND} == {typed: ["GP-2026-000002"] for typed in FOUND}
        assert {typed: found(typed) for typed in NONE if typed not in NO_FORM} == {
            typed: [] for typed in NONE if typed not in NO_FORM
        }
        for typed in NO_FORM:
            got = op.get("/api/cases", params={"number": typed})
            assert got.status_code == 422, (typed, got.text)
            assert [e["field"] for e in got.json()["errors"]] == ["number"], got.text
            page = web.get("/cases", params={"number": typed})
            assert page.status_code == 200 and 'id="filter-problems"' in page.text, typed
            assert re.findall(r'data-number="([^"]+)"', page.text) == [], typed


def test_sort_by_number_follows_the_number_not_the_id(make_server: Any, sqlite_url: str) -> None:
    """A case's number is GP-<year of its first sighting>-<its id>: last year's footage filed after
    this year's case has the later id and the earlier number. "Sort by number" sorted by id, so
    GP-2025-000002 came after GP-2026-000001; it follows the number now, on the page and in the API."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    with (
        server.client("device") as device,
        server.client("operator") as op,
        server.browser("operator") as web,
    ):
        for name, when, position in (
            ("this-year", "2026-11-20T09:00:00+08:00", (30.2741, 120.1551)),
            ("last-year", "2025-12-30T09:00:00+08:00", (30.2841, 120.1651)),
            ("this-year-2", "2026-11-21T09:00:00+08:00", (30.2941, 120.1751)),
        ):
            assert post_incident(device, incident_json(name, position=position, when=when)).status_code == 201
        in_order = ["GP-2025-000002", "GP-2026-000001", "GP-2026-000003"]
        for order, expected in (("asc", in_order), ("desc", in_order[::-1])):
            api = op.get("/api/cases", params={"sort": "number", "order": order}).json()["items"]
            assert [c["number"] for c in api] == expected, order
            page = web.get("/cases", params={"sort": "number", "order": order}).text
            assert re.findall(r'data-number="([^"]+)"', page) == expected, order


def _cells_offered(browser: Any) -> list[str]:
    page = browser.get("/cases")
    assert page.status_code == 200, page.text[:300]
    select = re.search(r'<select name="grid_cell">(.*?)</select>', page.text, re.S)
    assert select is not None, page.text
    return [v for v in re.findall(r'<option value="([^"]*)"', select.group(1)) if v not in ("", "unassigned")]


def test_a_team_leaders_cell_filter_offers_the_teams_cells_only(make_server: Any, sqlite_url: str) -> None:
    """A team leader's case list offered every cell of the district in its grid cell filter (36 in the
    demo grid, thousands in a district's), other teams' cells among them, which list none of the
    team's cases. It offers the team's cells now, and a cell of another team where one of the team's
    cases lies (dispatched to it there); the office still gets every cell."""
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    hubin_02 = (30.2592, 120.1342)  # in DEMO-HUBIN-02 (demo grid)
    with server.client("device") as device, server.client("operator") as operator:
        sent = post_incident(device, incident_json("lent", position=hubin_02))
        assert sent.status_code == 201, sent.text
        case = sent.json()["case_id"]
        assert operator.post(f"/api/cases/{case}/transitions", json={"to": "filed"}).status_code == 200
        dispatch = {"to": "dispatched", "team": "team-ziyang"}
        assert operator.post(f"/api/cases/{case}/transitions", json=dispatch).status_code == 200
        assert operator.get(f"/api/cases/{case}").json()["grid_cell"] == "DEMO-HUBIN-02"
        grid = operator.get("/api/grids").json()
    teams = {f["properties"]["id"]: f["properties"]["team"] for f in grid["features"]}
    assert teams["DEMO-HUBIN-02"] == "team-hubin"
    ziyang = sorted(cell for cell, team in teams.items() if team == "team-ziyang")
    with server.browser("ziyang") as leader, server.browser("operator") as office:
        assert _cells_offered(leader) == sorted([*ziyang, "DEMO-HUBIN-02"])
        assert _cells_offered(office) == sorted(teams)
        # the cell of the team's case lists it
        listed = leader.get("/cases", params={"grid_cell": "DEMO-HUBIN-02"}).text
        assert re.findall(r'data-number="([^"]+)"', listed) == ["GP-2026-000001"]
