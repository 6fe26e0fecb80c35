"""/docs is Swagger UI from gridpatrol's own files: no other host is referenced, every file it names is
served, and the page's one inline script is allowed by its hash on /docs only (tests/web/test_docs.py
opens it in chromium)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from api.http.security import CSP
from tests.api.api_testkit import LiveServer

VENDOR = "/static/vendor/swagger-ui-5.35.0/"


@pytest.fixture
def server(make_server, sqlite_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    return make_server(sqlite_url, run_webhooks=False, people=False, grid=False)


def test_docs_reference_nothing_but_this_server(server: LiveServer) -> None:
    with server.client() as anyone:
        page = anyone.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        hosts = re.findall(r"(?:https?:)?//[^\s\"'<>)]+", html)
        assert hosts == [], hosts
        referenced = re.findall(r"(?:src|href)=\"([^\"]+)\"", html) + re.findall(r"url: '([^']+)'", html)
        assert any(r.startswith(VENDOR + "swagger-ui-bundle.js?v=") for r in referenced), referenced
        assert any(r.startswith(VENDOR + "swagger-ui.css?v=") for r in referenced), referenced
        assert "/openapi.json" in referenced
        for url in referenced:
            assert url.startswith("/"), url
            response = anyone.get(url)
            assert response.status_code == 200, url
        bundle_url = next(r for r in referenced if "swagger-ui-bundle.js" in r)
        bundle = anyone.get(bundle_url, headers={"Accept-Encoding": "identity"})
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert "content-encoding" not in bundle.headers
        assert len(bundle.content) > 1_000_000 and b"SwaggerUIBundle" in bundle.content
        packed = anyone.get(bundle_url, headers={"Accept-Encoding": "gzip"})  # as kept in the repository
        assert packed.headers["content-encoding"] == "gzip" and packed.content == bundle.content
        for name in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
            assert anyone.get(VENDOR + name).status_code == 200, name
        assert anyone.get("/redoc").status_code == 404


def test_only_the_docs_inline_script_may_run_there(server: LiveServer) -> None:
    with server.client() as anyone:
        page = anyone.get("/docs")
        login = anyone.get("/login")
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1 and "SwaggerUIBundle(" in inline[0] and '"validatorUrl": null' in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    policy = page.headers.get_list("content-security-policy")
    assert policy == [CSP.replace("script-src 'self'", f"script-src 'self' 'sha256-{digest}'")]
    assert "unsafe-inline" not in policy[0].split("script-src", 1)[1].split(";", 1)[0]
    assert page.headers["x-frame-options"] == "DENY"  # the other headers as on every page
    assert login.headers.get_list("content-security-policy") == [CSP]
