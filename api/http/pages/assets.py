"""The pages' static files (our scripts and styles, vendored libraries with their licences), served by
gridpatrol itself: nothing a page loads comes from another host.

Each file is read once, its SHA-256 names its version (`/static/app.js?v=<12 hex>`), and it is sent
gzip-compressed when the browser accepts that (ECharts: 1.1 MB -> 0.37 MB), with a year's cache for a
versioned URL. Compression is done here for these files only, so API responses are never compressed
on the hot path. A large vendored file is kept in the repository gzip-compressed only (`NAME.gz`,
e.g. vendor/echarts-6.1.0/echarts.min.js.gz) and served as NAME.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from api.http.conditional import none_match

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".txt", ".html", "LICENSE", "NOTICE", "LICENSE-d3")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    version: str


class Assets:
    """The files under STATIC_DIR, loaded on first use and kept in memory."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root
        self._items: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Asset | None:
        asset = self._items.get(name)
        if asset is not None:
            return asset
        path = (self.root / name).resolve()
        packed = path.with_name(path.name + ".gz")
        if not path.is_relative_to(self.root) or name.endswith(".gz"):
            return None
        if path.is_file():
            body = path.read_bytes()
            gzipped = gzip.compress(body, 6, mtime=0) if path.name.endswith(COMPRESSIBLE) else None
        elif packed.is_file():
            gzipped = packed.read_bytes()
            body = gzip.decompress(gzipped)
        else:
            return None
        media_type = mimetypes.guess_type(path.name)[0] or "text/plain"
        if media_type.startswith("text/") or media_type.endswith(("javascript", "json")):
            media_type += "; charset=utf-8"
        asset = Asset(body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:12])
        with self._lock:
            self._items[name] = asset
        return asset

    def url(self, name: str) -> str:
        asset = self.get(name)
        if asset is None:
            raise FileNotFoundError(f"no static file {name} under {self.root}")
        return f"/static/{name}?v={asset.version}"

    def response(self, request: Request, name: str) -> Response:
        asset = self.get(name)
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain")
        versioned = request.query_params.get("v") == asset.version
        headers = {
            "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
            "ETag": f'"{asset.version}"',
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if none_match(request.headers.getlist("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
