"""/docs: Swagger UI over the OpenAPI document, from gridpatrol's own files (a district network has no
internet, and a page that loads its scripts from a CDN is blank there).

The page is FastAPI's own (`get_swagger_ui_html`) pointed at the vendored Swagger UI
(api/http/static/vendor/swagger-ui-5.35.0). Its one inline script, which starts Swagger UI, is
allowed on this page only, by its SHA-256 in this response's Content-Security-Policy (the pages'
policy otherwise: api.http.security); no other inline script can run on it. The app is built with
`docs_url=None` and `redoc_url=None`: ReDoc is not served (it would need a CDN or another bundle).
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.http.security import CSP

router = APIRouter(include_in_schema=False)

SWAGGER_UI = "vendor/swagger-ui-5.35.0"
# validatorUrl null: no badge fetched from validator.swagger.io
PARAMETERS = {"validatorUrl": None}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: str) -> list[str]:
    """CSP sources ('sha256-...') for each inline script of a page."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def with_script_hashes(csp: str, hashes: list[str]) -> str:
    """The policy with these inline scripts allowed besides the site's own files."""
    return csp.replace("script-src 'self'", " ".join(["script-src 'self'", *hashes]), 1)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    assets = request.app.state.assets
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=assets.url(f"{SWAGGER_UI}/swagger-ui-bundle.js"),
        swagger_css_url=assets.url(f"{SWAGGER_UI}/swagger-ui.css"),
        swagger_favicon_url=assets.url(f"{SWAGGER_UI}/favicon-32x32.png"),
        swagger_ui_parameters=PARAMETERS,
    )
    html = bytes(page.body).decode()
    policy = with_script_hashes(CSP, script_hashes(html))
    return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})
