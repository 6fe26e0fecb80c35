"""A case's duration on its page is in the page's language however long it lasted: an hour or more was
written "9 h 59 min" on the Chinese page, the English units built into the code."""

from __future__ import annotations

import re
from typing import Any

from tests.api.api_testkit import LiveServer, incident_json, post_incident


def test_a_duration_of_hours_is_in_the_pages_language(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    long = incident_json("long", when="2026-11-20T08:00:00+08:00", until="2026-11-20T17:59:30+08:00")
    short = incident_json(
        "short",
        position=(30.2841, 120.1651),
        when="2026-11-20T08:00:00+08:00",
        until="2026-11-20T08:02:29+08:00",
    )
    with server.client("device") as device, server.browser("operator") as op:
        long_id = post_incident(device, long).json()["case_id"]
        short_id = post_incident(device, short).json()["case_id"]

        def duration(case_id: int, lang: str) -> str:
            op.cookies.set("gp_lang", lang)
            page = op.get(f"/cases/{case_id}")
            assert page.status_code == 200, page.text[:300]
            found = re.search(r"<dt>(?:持续时间|Duration)</dt><dd>([^<]*)</dd>", page.text)
            assert found, page.text[:300]
            return found.group(1)

        assert duration(long_id, "zh-CN") == "9 小时 59 分"
        assert duration(long_id, "en") == "9 h 59 min"
        assert duration(short_id, "zh-CN") == "2 分 29 秒"
        assert duration(short_id, "en") == "2 min 29 s"
