"""The pages' static files (api/http/pages/assets.py) answer a conditional GET as RFC 9110 says:
If-None-Match is a list of entity-tags compared weakly, or "*"."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.http.conditional import none_match
from tests.api.api_testkit import LiveServer

ETAG = '"0123abcd4567"'

NONE_MATCH = [  # (If-None-Match field lines, whether they match ETAG)
    (['"0123abcd4567"'], True),
    (['W/"0123abcd4567"'], True),  # weak comparison: W/ ignored
    (['"other", "0123abcd4567"'], True),
    (['"other",W/"0123abcd4567" , '], True),
    ([' , "other",, "0123abcd4567"'], True),  # empty list members
    (["*"], True),
    ([" * "], True),
    (['"other"', '"0123abcd4567"'], True),  # the field sent on two lines
    (['"other"'], False),
    (['"other", W/"0123abcd4568"'], False),
    (["0123abcd4567"], False),  # no quotes: no entity-tag
    (['"0123abcd4567" "other"'], False),  # no comma between
    (['*, "other"'], False),  # "*" only alone
    (['w/"0123abcd4567"'], False),  # W/ is case-sensitive
    (['"0123abcd4567'], False),
    ([""], False),
    ([], False),
]


@pytest.mark.parametrize(("lines", "matches"), NONE_MATCH, ids=[repr(n[0]) for n in NONE_MATCH])
def test_if_none_match_is_read_as_rfc_9110_says(lines: list[str], matches: bool) -> None:
    assert none_match(lines, ETAG) is matches
    assert none_match(lines, f"W/{ETAG}") is matches  # a weak tag of ours is compared the same


@pytest.fixture
def server(make_server: Any, sqlite_url: str) -> LiveServer:
    return make_server(sqlite_url, people=False, grid=False)


def test_a_static_file_the_browser_holds_is_304_whichever_way_its_tag_is_listed(server: LiveServer) -> None:
    """Only an If-None-Match equal, character for character, to the file's ETag was a 304: a browser
    or proxy holding it as a weak tag, several versions in a list, or "*" got the whole file again."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get("/static/js/upload.js", headers={"Accept-Encoding": "gzip"})
        assert first.status_code == 200 and first.content, first.text
        etag = first.headers["ETag"]
        tag = etag.strip('"')
        assert etag == f'"{tag}"'
        for held in (etag, f"W/{etag}", f'"older", {etag}', f'W/"older",W/{etag}', "*"):
            kept = client.get("/static/js/upload.js", headers={"If-None-Match": held})
            assert kept.status_code == 304 and kept.content == b"", held
            assert kept.headers["ETag"] == etag and kept.headers["Cache-Control"] == "no-cache"
        on_two_lines = client.get(
            "/static/js/upload.js", headers=[("If-None-Match", '"older"'), ("If-None-Match", etag)]
        )
        assert on_two_lines.status_code == 304
        for stale in ('"older"', f'"older", W/"{tag}x"', tag, f"*, {etag}"):
            again = client.get("/static/js/upload.js", headers={"If-None-Match": stale})
            assert again.status_code == 200 and again.content == first.content, stale


def test_favicon_ico_is_gridpatrol_s_icon_cached_like_a_static_file(server: LiveServer) -> None:
    """/favicon.ico, which a browser asks for by itself (a picture opened on its own, an API answer),
    was a 404 on every such load, logged and shown as a broken icon. It is gridpatrol's own icon, the
    SVG the pages name in <link rel="icon">, with that file's ETag and caching."""
    from api.http.pages.assets import STATIC_DIR

    svg = (STATIC_DIR / "favicon.svg").read_bytes()
    assert svg.startswith(b"<svg") and b"http" not in svg.replace(b"http://www.w3.org/2000/svg", b"")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200, icon.text
        assert icon.headers["content-type"] == "image/svg+xml" and icon.content == svg
        static = client.get("/static/favicon.svg")
        assert icon.headers["ETag"] == static.headers["ETag"]
        assert icon.headers["Cache-Control"] == static.headers["Cache-Control"] == "no-cache"
        kept = client.get("/favicon.ico", headers={"If-None-Match": icon.headers["ETag"]})
        assert kept.status_code == 304 and kept.content == b""
        login = client.get("/login")
        link = r'<link rel="icon" href="/static/favicon\.svg\?v=[0-9a-f]{12}" type="image/svg\+xml">'
        assert re.search(link, login.text)
