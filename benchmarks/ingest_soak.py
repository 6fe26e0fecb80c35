"""Ingest soak: incidents posted over HTTP for N minutes into one day's cases, the rate per minute.

Every incident falls on the same day (2026-11-20, local time) and within about 2 km of one point,
so each new case stays a merge candidate of every later incident of its category (the window is
24 h): the candidate query must not grow with the day. The server is `gridpatrol serve
--no-worker` in a subprocess on a fresh database (as benchmarks/api.py), posts come from
`--threads` keep-alive connections, each incident with two evidence images (60 kB and 12 kB).

    python benchmarks/ingest_soak.py                        # SQLite, 5 minutes
    python benchmarks/ingest_soak.py --minutes 2 --backend postgres --postgres-url postgresql+psycopg://...
    python benchmarks/ingest_soak.py --no-buckets           # the candidate query without the bucket index

Prints incidents/s for each minute and the last minute's rate over the first's (target: >= 0.9).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib.util
import itertools
import os
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_api", BENCH / "api.py")
assert _spec is not None and _spec.loader is not None
bench_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_api)

DAY_START = datetime(2026, 11, 20, 0, 0)  # local time (+08:00)
DAY_S = 86_000  # every incident's sighting falls within this many seconds of DAY_START


def soak_incident(i: int) -> tuple[dict, list]:
    """Incident i of the soak: random position within ~2 km of the centre, a time on the one day."""
    rng = random.Random(i)
    lat = bench_api.CENTRE[0] + rng.uniform(-0.02, 0.02)
    lon = bench_api.CENTRE[1] + rng.uniform(-0.02, 0.02)
    when = DAY_START + timedelta(seconds=rng.randrange(DAY_S - 300))
    files = {"annotated": bench_api.jpeg(f"soak-a{i}", 60_000), "crop": bench_api.jpeg(f"soak-c{i}", 12_000)}
    data = {
        "id": f"soak-{i}",
        "category": bench_api.CATEGORIES[i % 3],
        "object_kind": "car",
        "source_id": f"cam-{i % 20}",
        "first_seen_wall": when.isoformat() + "+08:00",
        "last_seen_wall": (when + timedelta(seconds=150)).isoformat() + "+08:00",
        "position": [lat, lon],
        "plate": f"浙A{i:06d}" if i % 3 == 0 else None,
        "evidence": [
            {"role": role, "path": f"{i}-{role}.jpg", "sha256": hashlib.sha256(body).hexdigest()}
            for role, body in files.items()
        ],
    }
    parts = [("files", (f"{i}-{role}.jpg", body, "image/jpeg")) for role, body in files.items()]
    return data, parts


def soak(base: str, key: str, minutes: int, threads: int) -> list[int]:
    """Post incidents from `threads` connections for `minutes` minutes (after 20 warm-up ones);
    returns how many were answered in each minute."""
    boundary = "gridpatrol-soak-boundary"
    host = urlsplit(base)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    counter = itertools.count()
    lock = threading.Lock()
    done = [0] * minutes
    errors: list[str] = []

    def post(conn: http.client.HTTPConnection, i: int) -> None:
        body = bench_api.multipart_body(*soak_incident(i), boundary)
        conn.request("POST", "/api/incidents", body=body, headers=headers)
        response = conn.getresponse()
        text = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"incident {i}: {response.status} {text[:200]!r}")

    warm = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    for _ in range(20):
        post(warm, next(counter))
    warm.close()
    start = time.monotonic()
    end = start + minutes * 60

    def worker() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        try:
            while time.monotonic() < end and not errors:
                with lock:
                    i = next(counter)
                post(conn, i)
                minute = int((time.monotonic() - start) // 60)
                if minute < minutes:
                    with lock:
                        done[minute] += 1
        except Exception as exc:  # reported by the main thread
            errors.append(repr(exc))
        finally:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return done


def run(backend: str, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix=f"gp-soak-{backend}-") as tmp_name:
        tmp = Path(tmp_name)
        db = bench_api.Database(backend, tmp, args.postgres_url)
        server = bench_api.Server(tmp, db.url)
        server.env["GRIDPATROL_MERGE_BUCKETS"] = "false" if args.no_buckets else "true"
        try:
            server.cli("db", "upgrade")
            server.cli("grid", "import", str(bench_api.REPO / "configs" / "demo-grid.geojson"))
            key = server.cli("device", "add", "soak-van").strip().splitlines()[-1]
            base = server.start()
            done = soak(base, key, args.minutes, args.threads)
            rates = [n / 60 for n in done]
            label = f"[{backend}{', no buckets' if args.no_buckets else ''}]"
            for minute, rate in enumerate(rates, 1):
                print(f"{label} minute {minute}: {rate:.0f} incidents/s", flush=True)
            ratio = rates[-1] / rates[0] if rates and rates[0] else 0.0
            print(
                f"{label} {sum(done) + 20} incidents in {args.minutes} min, {args.threads} connections: "
                f"last/first minute {ratio:.2f} ({'ok' if ratio >= 0.9 else 'below 0.9'})",
                flush=True,
            )
            return ratio
        finally:
            server.stop()
            db.drop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--no-buckets", action="store_true", help="GRIDPATROL_MERGE_BUCKETS=false (to compare)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("GRIDPATROL_BENCH_POSTGRES_URL")
        or os.environ.get("GRIDPATROL_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not args.postgres_url:
        parser.error("--postgres-url (or GRIDPATROL_BENCH_POSTGRES_URL) is needed for PostgreSQL")
    for backend in backends:
        run(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
