"""Web pages benchmark: with 100,000 cases on SQLite, the server time of the review page and of the
next-case fragment, the time from a keypress to the next case shown in the browser, and the bytes a
first visit loads.

The server is `gridpatrol serve --no-worker` in a subprocess on 127.0.0.1 over a fresh SQLite data
folder. The cases are bulk-inserted as benchmarks/api.py does (random categories, statuses, cells and
times over 90 days); each pending case gets a sighting whose evidence (a raw frame, a crop and a dwell
strip) is one of a few real street photos from ../shared/datasets/cn-garbage, stored in the evidence
store like any evidence. Server times are measured at the client over loopback (an upper bound of the
server's own time), with a logged-in operator's session cookie. The keypress time is measured in
Debian's chromium (Playwright): from the keydown event to the frame painted after the next case is in
place (two animation frames), one case at a time at an operator's pace (the next case loaded ahead).
First-visit bytes: what a browser with an empty cache transfers for the login page and the operator's
first page, and for the dashboard (the chart library) — the Resource Timing transfer sizes.

    python benchmarks/web.py                        # 100,000 cases, 200 requests, 60 keypresses
    python benchmarks/web.py --cases 20000 --requests 100 --keys 30

Targets (issue 11): p95 under 100 ms for the review page and the fragment; p95 under 150 ms from a
keypress to the next case; a first visit under 1.5 MB with the chart library.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
PHOTOS = SHARED / "datasets" / "cn-garbage" / "images" / "val"
CHROMIUM = os.environ.get("GRIDPATROL_TEST_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "bench-operator-password"


def _api_bench():  # type: ignore[no-untyped-def]
    """benchmarks/api.py as a module: its bulk case loader and server runner."""
    spec = importlib.util.spec_from_file_location("bench_api", REPO / "benchmarks" / "api.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def add_review_evidence(url: str, evidence_dir: Path, photos: int = 4) -> int:
    """Give every pending case a sighting with real evidence images; returns how many."""
    from sqlalchemy import insert, select

    from api.cases import workflow
    from api.storage.db import make_engine, make_sessionmaker
    from api.storage.evidence_store import EvidenceStore
    from api.storage.models import Case, EvidenceBlob, EvidenceLink, Sighting

    store = EvidenceStore(evidence_dir)
    stored = []
    for photo in sorted(PHOTOS.glob("*.jpg"))[:photos]:
        with photo.open("rb") as fh:
            stored.append(store.put_stream(fh))
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    now = datetime(2026, 12, 1)
    with factory() as session:
        session.execute(
            insert(EvidenceBlob),
            [
                {"sha256": s.sha256, "size": s.size, "media_type": s.media_type, "created_at": now}
                for s in stored
            ],
        )
        pending = list(
            session.execute(select(Case.id, Case.last_seen).where(Case.status == workflow.PENDING_REVIEW))
        )
        sightings, links = [], []
        for case_id, last_seen in pending:
            image = stored[case_id % len(stored)]
            evidence = [
                {"role": role, "path": f"{role}.jpg", "sha256": image.sha256, "media_type": "image/jpeg"}
                | (
                    {"ts": ts, "window": [0, 0, 640, 640], "box": [100, 100, 300, 300]}
                    if ts is not None
                    else {}
                )
                for role, ts in (
                    ("raw", None),
                    ("crop", None),
                    ("dwell_first", 0.0),
                    ("dwell_middle", 60.0),
                    ("dwell_last", 120.0),
                )
            ]
            incident = {
                "id": f"bench-{case_id}",
                "category": "illegal_parking",
                "object_kind": "car",
                "box": [100.0, 100.0, 300.0, 300.0],
                "confidence_median": 0.8,
                "confidence_max": 0.9,
                "evidence": evidence,
            }
            sightings.append(
                {
                    "id": case_id,
                    "case_id": case_id,
                    "incident_id": incident["id"],
                    "seen_at": last_seen,
                    "incident_json": json.dumps(incident),
                    "recurrence": False,
                    "created_at": now,
                }
            )
            links += [
                {"case_id": case_id, "sighting_id": case_id, "sha256": e["sha256"], "role": e["role"]}
                for e in evidence
            ]
        for start in range(0, len(sightings), 5000):
            session.execute(insert(Sighting), sightings[start : start + 5000])
        for start in range(0, len(links), 20000):
            session.execute(insert(EvidenceLink), links[start : start + 20000])
        session.commit()
    engine.dispose()
    return len(pending)


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    form = client.get("/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert token, "no login form"
    r = client.post(
        "/login",
        data={"username": "bench-op", "password": PASSWORD, "login_csrf": token.group(1), "next": "/"},
    )
    assert r.status_code == 303, r.text[:300]
    return client


def time_requests(client: httpx.Client, path_of: object, count: int) -> list[float]:
    times = []
    for i in range(count):
        path = path_of(i) if callable(path_of) else str(path_of)
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return times


KEY_PROBE = """
() => new Promise(resolve => {
  const start = performance.now();
  window.__gpKeyAt = null;
  const note = () => { window.__gpKeyAt = performance.now(); };
  document.addEventListener('keydown', note, {capture: true, once: true});
  resolve(start);
})
"""
WAIT_SHOWN = """
(before) => new Promise(resolve => {
  const check = () => {
    if (Number(document.body.dataset.reviewSwaps || 0) > before) {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - window.__gpKeyAt)));
    } else { setTimeout(check, 1); }
  };
  check();
})
"""


def browser_figures(base: str, keys: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        # first visits with an empty cache
        figures: dict[str, float] = {}
        for label, path in (("review", "/review"), ("dashboard", "/dashboard")):
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            page = context.new_page()
            transferred: dict[str, int] = {}

            def count(response, box=transferred):  # type: ignore[no-untyped-def]
                sizes = response.request.sizes()
                path = response.url.removeprefix(base).split("?")[0]
                box[path] = box.get(path, 0) + sizes.get("responseBodySize", 0)
                box[path] += sizes.get("responseHeadersSize", 0)

            page.on("requestfinished", lambda request, count=count: count(request.response()))
            page.goto(base + "/login")
            page.fill("input[name=username]", "bench-op")
            page.fill("input[name=password]", PASSWORD)
            page.click("button.primary")
            page.wait_for_load_state("networkidle")
            if path != "/review":
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
            figures[f"first_visit_{label}_bytes"] = sum(transferred.values())
            largest = sorted(transferred.items(), key=lambda item: -item[1])[:4]
            figures[f"first_visit_{label}_largest"] = ", ".join(  # type: ignore[assignment]
                f"{path} {size / 1024:.0f} KiB" for path, size in largest
            )
            context.close()
        # keypress -> next case shown
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.goto(base + "/login")
        page.fill("input[name=username]", "bench-op")
        page.fill("input[name=password]", PASSWORD)
        page.click("button.primary")
        page.wait_for_selector("#current article[data-case-id]")
        times = []
        for _ in range(keys):
            page.wait_for_selector("#upcoming article[data-case-id]", state="attached")
            page.wait_for_timeout(150)  # an operator looks at the case
            swaps = int(page.evaluate("() => Number(document.body.dataset.reviewSwaps || 0)"))
            page.evaluate(KEY_PROBE)
            page.keyboard.press("y")
            times.append(float(page.evaluate(WAIT_SHOWN, swaps)))
        context.close()
        browser.close()
    figures["key_p50_ms"] = statistics.median(times)
    figures["key_p95_ms"] = p95(times)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keys", type=int, default=60)
    args = parser.parse_args()
    bench_api = _api_bench()
    with tempfile.TemporaryDirectory(prefix="gridpatrol-web-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        url = f"sqlite:///{data / 'gridpatrol.db'}"
        server = bench_api.Server(data, url)
        server.cli("db", "upgrade")
        server.cli("grid", "import", str(REPO / "configs" / "demo-grid.geojson"))
        server.cli("user", "add", "bench-op", "--role", "operator", "--password-stdin", stdin=PASSWORD)
        t0 = time.perf_counter()
        bench_api.bulk_cases(url, args.cases)
        pending = add_review_evidence(url, data / "evidence")
        print(
            f"bulk-inserted {args.cases} cases ({pending} pending, each with evidence) in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        base = server.start()
        try:
            client = login(base)
            time_requests(client, "/review", 5)  # warm up
            page_ms = time_requests(client, "/review", args.requests)
            fragment_ms = time_requests(client, lambda i: f"/review/next?skip={i}", args.requests)
            print(
                f"review page: p50 {statistics.median(page_ms):.1f} ms, p95 {p95(page_ms):.1f} ms "
                f"({args.requests} requests)"
            )
            print(
                f"next-case fragment: p50 {statistics.median(fragment_ms):.1f} ms, "
                f"p95 {p95(fragment_ms):.1f} ms ({args.requests} requests)"
            )
            figures = browser_figures(base, args.keys)
            print(
                f"keypress -> next case shown: p50 {figures['key_p50_ms']:.1f} ms, "
                f"p95 {figures['key_p95_ms']:.1f} ms ({args.keys} keypresses)"
            )
            for label in ("review", "dashboard"):
                size = figures[f"first_visit_{label}_bytes"]
                print(
                    f"first visit (login + {label}): {size / 1024:.0f} KiB transferred "
                    f"(largest: {figures[f'first_visit_{label}_largest']})"
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
