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
