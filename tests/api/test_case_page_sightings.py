"""A case with many sightings (a camera watching a pile that stays merges them into one case) shows its
latest sightings on its page, numbered among all, and says how many there are with a link to all of
them; only the sightings shown carry their pictures (and box editors), so the page stays small."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from api.http.pages.cases import SIGHTINGS_SHOWN
from tests.api.api_testkit import LiveServer, incident_json, post_incident

START = datetime.fromisoformat("2026-11-20T09:00:00+08:00")


def _numbers(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"<h3>#(\d+) ·", page)]


def test_a_case_page_shows_the_latest_sightings_and_links_to_all(make_server: Any, sqlite_url: str) -> None:
    server: LiveServer = make_server(sqlite_url, run_webhooks=False)
    count = SIGHTINGS_SHOWN + 5
    with server.client("device") as device, server.browser("operator") as op:
        cases = set()
        for n in range(count):
            when = (START + timedelta(minutes=10 * n)).isoformat()
            answer = post_incident(device, incident_json(f"pile-{n}", category="piled_debris", when=when))
            assert answer.status_code == 201, answer.text
            cases.add(answer.json()["case_id"])
        [case_id] = cases  # one place, one camera: every incident a sighting of one case

        page = op.get(f"/cases/{case_id}")
        assert page.status_code == 200, page.text[:300]
        assert f"Sightings ({count})" in page.text
        assert _numbers(page.text) == list(range(count - SIGHTINGS_SHOWN + 1, count + 1))
        assert f"Showing the latest {SIGHTINGS_SHOWN} of {count} sightings." in page.text
        assert page.text.count('<article class="sighting">') == SIGHTINGS_SHOWN
        assert f'href="/cases/{case_id}?sightings=all#sightings"' in page.text

        everything = op.get(f"/cases/{case_id}", params={"sightings": "all"})
        assert everything.status_code == 200
        assert _numbers(everything.text) == list(range(1, count + 1))
        assert 'id="sightings-hidden"' not in everything.text
        assert everything.text.count('<article class="sighting">') == count
