"""Case service benchmark: incidents ingested per second (with evidence, over HTTP) and the p95
latency of filtered GET /api/cases with 100,000 cases, on SQLite and on PostgreSQL.

The server is `gridpatrol serve --no-worker` in a subprocess on 127.0.0.1 with a fresh database
(SQLite file in a temporary folder; a fresh schema on PostgreSQL, dropped afterwards). Ingestion
posts incidents with two evidence images each (a 60 kB annotated frame and a 12 kB crop) from
client connections (keep-alive, bodies encoded before the clock starts). For the latency part the
cases are bulk-inserted through the ORM, then a mix of filtered, sorted, paginated queries is timed
over HTTP, first alone, then while incidents are ingested at the same time (the district-scale
figure: ingest at 100k+ cases with the case list in use).

    python benchmarks/api.py                       # SQLite, and PostgreSQL when a URL is given
    python benchmarks/api.py --postgres-url postgresql+psycopg://user:pw@localhost/db
    (or GRIDPATROL_BENCH_POSTGRES_URL / GRIDPATROL_TEST_POSTGRES_URL in the environment)
    python benchmarks/api.py --cases 100000 --incidents 2000 --threads 16 --queries 400

Where the time goes: the server's ingest writer logs its transactions and the seconds of each
phase (begin, ingest statements, batched rows, commit, answering the callers), printed per
incident; and, unless --no-profile, the server is sampled with py-spy during one more ingest round
at 100k+ cases (with the case list being read): the share of the server's busy samples in each
part of the request (HTTP, multipart, evidence files, SQL by statement group, commit, ...) and
the functions the samples end in. The client's own CPU per incident is printed beside the
server's: both share this machine's cores.

Targets (issue 14): at least 400 incidents/s over HTTP at 100,000+ cases on SQLite and on
PostgreSQL, with the case list's p95 under 50 ms while ingest runs.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CATEGORIES = ["illegal_parking", "street_vending", "piled_debris"]
STATUSES = ["pending_review"] * 4 + [
    "filed",
    "dispatched",
    "dispatched",
    "handled",
    "verified",
    "closed",
    "closed",
    "rejected",
]
CENTRE = (30.27, 120.155)
TARGET_RATE = 400  # incidents/s at 100k+ cases (issue 14), with the case list's p95 under 50 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg(seed: str, size: int) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return b"\xff\xd8\xff\xe0" + (block * (size // 32 + 1))[: size - 6] + b"\xff\xd9"


class Database:
    """A fresh database for one run: a SQLite file, or a new schema on a PostgreSQL server."""

    def __init__(self, backend: str, tmp: Path, pg_url: str | None) -> None:
        self.backend = backend
        self.schema: str | None = None
        self.pg_url = pg_url
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp / 'bench.db'}"
        else:
            from sqlalchemy import create_engine, text

            self.schema = f"bench_{uuid.uuid4().hex[:10]}"
            engine = create_engine(pg_url)  # type: ignore[arg-type]
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            engine.dispose()
            sep = "&" if "?" in pg_url else "?"  # type: ignore[operator]
            self.url = f"{pg_url}{sep}options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        if self.schema:
            from sqlalchemy import create_engine, text

            engine = create_engine(self.pg_url)  # type: ignore[arg-type]
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            engine.dispose()


class Server:
    def __init__(self, data_dir: Path, url: str, workers: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.env = dict(os.environ, GRIDPATROL_DATA_DIR=str(data_dir), GRIDPATROL_DATABASE_URL=url)
        self.log = open(data_dir / "server.log", "w")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "-q", *args],
            env=self.env,
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def start(self) -> str:
        self.proc = subprocess.Popen(  # not -q: the ingest writer's INFO lines say where time goes
            [
                sys.executable,
                *("-m", "api.cli", "serve", "--no-worker", "--port", str(self.port)),
                *("--workers", str(self.workers)),
            ],
            env=self.env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start; see {self.log.name}")

    def verify(self) -> tuple[int, str]:
        """`gridpatrol evidence verify` on this server's data: its exit status and last lines."""
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "-q", "evidence", "verify"],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        lines = (out.stdout + out.stderr).strip().splitlines()
        return out.returncode, " / ".join(lines[-3:])

    def writer_report(self, seen: int, wait_s: float = 8.0) -> tuple[dict | None, int]:
        """The ingest writers' report after line `seen` of the server log (each server process's
        writer writes one when it goes idle, a few seconds after its last incident; summed), and the
        number of lines read."""
        deadline = time.monotonic() + wait_s
        while True:
            self.log.flush()
            lines = Path(self.log.name).read_text(errors="replace").splitlines()
            reports = [
                json.loads(line.split("since it started: ", 1)[1])
                for line in lines[seen:]
                if "ingest writer idle; since it started: " in line
            ]
            if len(reports) >= self.workers or (reports and time.monotonic() > deadline):
                return _summed(reports), len(lines)
            if time.monotonic() > deadline:
                return None, len(lines)
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


def _summed(reports: list[dict]) -> dict:
    """Several writers' reports as one (counts and seconds added, the largest batch of any)."""
    total = dict(reports[0], seconds=dict(reports[0]["seconds"]))
    for report in reports[1:]:
        for key in ("incidents", "batches", "retried_alone", "held_back", "waited"):
            total[key] = total.get(key, 0) + report.get(key, 0)
        total["largest_batch"] = max(total["largest_batch"], report["largest_batch"])
        for phase, seconds in report["seconds"].items():
            total["seconds"][phase] = total["seconds"].get(phase, 0.0) + seconds
    return total


REPEAT_GAP = 41  # --repeat-sightings: an odd incident is a second sighting of the one this many before


def place(i: int) -> tuple[float, float]:
    """Incident i's position: anywhere in a 4 x 4 km square (the same for i whichever run makes it)."""
    rng = random.Random(i * 7919)
    return CENTRE[0] + rng.uniform(-0.02, 0.02), CENTRE[1] + rng.uniform(-0.02, 0.02)


def incident(i: int, repeats: bool = False) -> tuple[dict, list]:
    """Incident i: a new violation in the square, or with `repeats` and i odd, a second sighting of
    incident i - REPEAT_GAP (even, so never a repeat itself; sent a few requests earlier), 3 m from
    it with the same category, camera and plate: it merges into that incident's case."""
    base = i - REPEAT_GAP if repeats and i % 2 == 1 and i % 100_000 >= REPEAT_GAP else i
    lat, lon = place(base)
    if base != i:
        lat += 3 / 111_195  # 3 m north
    when = datetime(2026, 11, 20, 8, 0) + timedelta(seconds=i * 7)
    files = {"annotated": jpeg(f"a{i}", 60_000), "crop": jpeg(f"c{i}", 12_000)}
    data = {
        "id": f"bench-{i}",
        "category": CATEGORIES[base % 3],
        "object_kind": "car",
        "source_id": f"cam-{base % 20}",
        "first_seen_wall": when.isoformat() + "+08:00",
        "last_seen_wall": (when + timedelta(seconds=150)).isoformat() + "+08:00",
        "position": [lat, lon],
        "plate": f"浙A{base:05d}" if base % 3 == 0 else None,
        "evidence": [
            {"role": role, "path": f"{i}-{role}.jpg", "sha256": hashlib.sha256(body).hexdigest()}
            for role, body in files.items()
        ],
    }
    parts = [("files", (f"{i}-{role}.jpg", body, "image/jpeg")) for role, body in files.items()]
    return data, parts


def multipart_body(data: dict, parts: list, boundary: str) -> bytes:
    """The multipart/form-data body a device sends: the incident JSON and its evidence files."""
    return batch_body([(data, parts)], boundary)


def batch_body(incidents: list[tuple[dict, list]], boundary: str) -> bytes:
    """Several incident forms in one body (POST /api/incidents/batch; one is POST /api/incidents's)."""
    out = []
    for data, parts in incidents:
        out += [
            f'--{boundary}\r\nContent-Disposition: form-data; name="incident"\r\n\r\n'.encode(),
            json.dumps(data).encode(),
            b"\r\n",
        ]
        for field, (filename, body, media_type) in parts:
            out += [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                f"Content-Type: {media_type}\r\n\r\n".encode(),
                body,
                b"\r\n",
            ]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def process_cpu_s(pid: int | None) -> tuple[float, float] | None:
    """(user, system) CPU seconds a process and its children (the server processes of serve
    --workers N) have used so far (Linux /proc), or None elsewhere."""
    if pid is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for one in [pid, *child_pids(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if one == pid:
                return None
            continue
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def machine_cpu_s() -> float | None:
    """CPU seconds this machine's cores have been busy so far, all processes (Linux /proc/stat:
    every state but idle and iowait), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in fields[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def child_pids(pid: int) -> list[int]:
    """The children of a process (Linux /proc), none where that cannot be read."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def bench_ingest(
    base: str,
    key: str,
    count: int,
    threads: int,
    rounds: int = 3,
    server_pid: int | None = None,
    first_id: int = 0,
    paced_per_s: float | None = None,
    batch: int = 1,
    repeats: bool = False,
) -> dict:
    """Incidents/s over HTTP from `threads` keep-alive connections. Request bodies are encoded before
    the clock starts and sent with http.client, so the client takes as little of the machine's CPU
    from the server as it can. `count` incidents in `rounds` timed rounds (after 20 warm-up ones).
    Returns each round's incidents/s ("rates"; another process's load on the machine shows as a
    slow round), the p95 request latency over all rounds ("p95_s"), the server's (user, system) CPU
    milliseconds per incident ("server_cpu_ms": the robust figure on a shared machine, user time
    above all; None where /proc is not there) and this process's ("client_cpu_ms", all its threads:
    a reader running beside counts too). `paced_per_s`: send at that rate at most (a steady load
    rather than as fast as the server answers); a round's rate is then the rate the requests were
    sent at (from its first due time to the last send, plus one interval: a request sent late,
    because every connection waited for an answer, lowers it), "late_p95_ms" says how late the
    sends were, and "taken" the rate the server answered them at while they were sent: the
    requests answered from a quarter of the round's sending on until its last send, over that time
    (the first quarter fills the pipeline; a server that cannot keep up answers below the rate
    sent however many connections wait). `batch`: incidents per request; above 1 they go to
    POST /api/incidents/batch, as a runner sends its backlog (p95_s is then per request of `batch`).
    `repeats`: half the incidents are second sightings of earlier ones (incident())."""
    import http.client
    from urllib.parse import urlsplit

    boundary = "gridpatrol-bench-boundary"
    made = [incident(first_id + i, repeats) for i in range(count)]
    count -= count % batch  # whole requests
    path = "/api/incidents" if batch == 1 else "/api/incidents/batch"
    bodies = [batch_body(made[i : i + batch], boundary) for i in range(0, count, batch)]
    host = urlsplit(base)
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    local = threading.local()
    latencies: list[float] = []
    schedule = {"t0": 0.0, "first": 0}
    sent: dict[int, float] = {}  # paced: request -> when it was sent
    answered: list[float] = []  # when each request was answered
    late: list[float] = []  # paced: seconds each request was sent after it was due

    def post(i: int) -> None:  # request i: incidents i * batch ...
        if paced_per_s:
            due = schedule["t0"] + (i - schedule["first"]) * batch / paced_per_s
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            sent[i] = time.perf_counter()
            late.append(sent[i] - due)
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        t0 = time.perf_counter()
        local.conn.request("POST", path, body=bodies[i], headers=headers)
        response = local.conn.getresponse()
        text = response.read()
        answered.append(time.perf_counter())
        latencies.append(answered[-1] - t0)
        if response.status not in (200, 201):
            raise RuntimeError(f"request {i}: {response.status} {text[:200]!r}")
        if batch > 1:
            failed = [e for e in json.loads(text)["results"] if e["status_code"] not in (200, 201)]
            if failed:
                raise RuntimeError(f"request {i}: {failed[0]}")

    requests = len(bodies)
    warm = min(max(1, 20 // batch), requests // 4)
    for i in range(warm):  # warm up (not counted: not paced, so not late either)
        post(i)
    for kept in (latencies, late, answered):
        kept.clear()
    rates = []
    taken = []
    cpu0 = process_cpu_s(server_pid)
    client0 = os.times()
    machine0 = machine_cpu_s()
    bounds = [warm + (requests - warm) * r // rounds for r in range(rounds + 1)]
    with ThreadPoolExecutor(threads) as pool:
        for start, end in zip(bounds, bounds[1:], strict=False):
            t0 = time.perf_counter()
            schedule.update(t0=t0, first=start)
            list(pool.map(post, range(start, end)))
            if paced_per_s:
                last_sent = max(sent[i] for i in range(start, end))
                span = last_sent - t0 + batch / paced_per_s
                begin = t0 + (last_sent - t0) / 4
                inside = sum(1 for at in answered if begin <= at <= last_sent)
                taken.append(inside * batch / (last_sent - begin))
            else:
                span = time.perf_counter() - t0
            rates.append((end - start) * batch / span)
    client1 = os.times()
    cpu1 = process_cpu_s(server_pid)
    machine1 = machine_cpu_s()
    n = (requests - warm) * batch
    cpu_ms = None
    if cpu0 is not None and cpu1 is not None:
        cpu_ms = ((cpu1[0] - cpu0[0]) * 1000 / n, (cpu1[1] - cpu0[1]) * 1000 / n)
    client_ms = ((client1.user - client0.user) * 1000 / n, (client1.system - client0.system) * 1000 / n)
    return {
        "rates": rates,
        "rate": statistics.median(rates),
        "p95_s": statistics.quantiles(latencies, n=100)[94],
        "server_cpu_ms": cpu_ms,
        "client_cpu_ms": client_ms,
        "machine_cpu_ms": None if machine0 is None or machine1 is None else (machine1 - machine0) * 1000 / n,
        "count": n,
        "batch": batch,
        "late_p95_ms": statistics.quantiles(late, n=100)[94] * 1000 if len(late) > 1 else None,
        "taken": statistics.median(taken) if taken else None,
    }


def ingest_line(backend: str, what: str, result: dict, threads: int) -> str:
    cpu = result["server_cpu_ms"]
    client = result["client_cpu_ms"]
    cpu_text = (
        ""
        if cpu is None
        else f"; server CPU {sum(cpu):.2f} ms per incident (user {cpu[0]:.2f}, system {cpu[1]:.2f})"
    )
    return (
        f"[{backend}] {what}: median {result['rate']:.0f} incidents/s "
        f"(rounds: {', '.join(f'{r:.0f}' for r in result['rates'])}; {threads} client connections; "
        + (
            f"{result['batch']} incidents a request (POST /api/incidents/batch); "
            if result["batch"] > 1
            else ""
        )
        + f"p95 {result['p95_s'] * 1000:.0f} ms per request{cpu_text}; "
        f"client CPU {sum(client):.2f} ms per incident)" + machine_text(result)
    )


def machine_text(result: dict) -> str:
    """The CPU the whole machine spent per incident (server, database, client, anything else), and
    the rate its cores could take at that cost: the ceiling on a machine where all of them share."""
    machine = result.get("machine_cpu_ms")
    if not machine:
        return ""
    cores = os.cpu_count() or 1
    rest = machine - sum(result["server_cpu_ms"] or (0.0, 0.0)) - sum(result["client_cpu_ms"])
    return (
        f"; machine CPU {machine:.2f} ms per incident (the database and everything else "
        f"{max(0.0, rest):.2f}): {cores} cores take at most {cores * 1000 / machine:.0f} incidents/s "
        "at that cost"
    )


def writer_lines(backend: str, report: dict | None) -> list[str]:
    """The server's ingest writer report (api.cases.ingest.IngestWriter), per incident."""
    if not report or not report.get("incidents"):
        return [f"[{backend}]     (no ingest writer report in the server log)"]
    n = report["incidents"]
    per = ", ".join(f"{phase} {sec * 1000 / n:.2f}" for phase, sec in report["seconds"].items())
    return [
        f"[{backend}]     server ingest writer: {n} incidents in {report['batches']} transactions "
        f"({n / max(1, report['batches']):.1f} a transaction, largest {report['largest_batch']}, "
        f"{report['retried_alone']} written again alone; {report.get('held_back', 0)} left for the next "
        f"batch and {report.get('waited', 0)} batches waited: their places were the other writer's)",
        f"[{backend}]     writer thread ms per incident: {per}"
        " (alone: a batch of one, or written again alone)",
    ]


def bench_service_ingest(url: str, data_dir: Path, count: int, repeats: bool = False) -> float:
    """Incidents/s through the service layer alone (evidence store + case ingestion, one thread, no
    HTTP): the ceiling the HTTP figure is measured against."""
    import io

    from api.accounts.accounts import SYSTEM
    from api.cases.incident import IncidentPayload
    from api.cases.ingest import IncidentIn, ingest_committed
    from api.services import Services
    from api.settings import Settings

    services = Services.build(Settings(data_dir=data_dir, database_url=url))
    payloads = [incident(100_000 + i, repeats) for i in range(count)]
    t0 = time.perf_counter()
    for data, parts in payloads:
        payload = IncidentPayload.model_validate(data)
        stored = [services.store.put_stream(io.BytesIO(body)) for _, (_, body, _) in parts]
        evidence = list(zip(["annotated", "crop"], stored, strict=True))
        inc = IncidentIn.from_payload(payload, evidence=evidence)
        ingest_committed(
            services.factory, inc, grid_cache=services.grid_cache, policy=services.policy, actor=SYSTEM
        )
    rate = count / (time.perf_counter() - t0)
    services.close()
    return rate


def bulk_cases(url: str, total: int) -> None:
    """Insert cases straight through the ORM (bulk INSERT ... VALUES), as the service would store them."""
    from sqlalchemy import func, insert, select

    from api.cases.merge import bucket_of
    from api.storage.db import make_engine, make_sessionmaker
    from api.storage.models import Case

    rng = random.Random(2)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with factory() as session:
        existing = session.scalar(select(func.coalesce(func.max(Case.id), 0))) or 0
    cells = [
        f"DEMO-{s}-{r:02d}"
        for s in ("HUBIN", "XIAOYING", "QINGBO", "ZIYANG", "WANGJIANG", "NANXING")
        for r in range(1, 7)
    ]
    start = datetime(2026, 9, 1)
    batch = 5000
    next_id = existing + 1
    while next_id <= existing + total:
        rows = []
        for case_id in range(next_id, min(next_id + batch, existing + total + 1)):
            cell_index = rng.randrange(len(cells) + 1)
            cell = cells[cell_index] if cell_index < len(cells) else "unassigned"
            team = f"team-{cell.split('-')[1].lower()}" if cell != "unassigned" else None
            first = start + timedelta(minutes=rng.randrange(90 * 24 * 60))
            rows.append(
                {
                    "id": case_id,
                    "number": f"GP-{first.year}-{case_id:06d}",
                    "category": rng.choice(CATEGORIES),
                    "status": rng.choice(STATUSES),
                    "grid_cell_id": cell,
                    "team": team,
                    "lat": CENTRE[0] + rng.uniform(-0.02, 0.02),
                    "lon": CENTRE[1] + rng.uniform(-0.02, 0.02),
                    "plate": f"浙B{case_id:05d}" if rng.random() < 0.3 else None,
                    "camera_id": f"cam-{rng.randrange(40)}",
                    "first_seen": first,
                    "last_seen": first + timedelta(minutes=rng.randrange(600)),
                    "sightings_count": 1 + rng.randrange(3),
                    "recurrence_count": 0,
                    "created_at": first,
                    "updated_at": first,
                }
            )
            row = rows[-1]  # reached from where first seen, as ingest stores an anchored case
            row.update(
                merge_lat=row["lat"], merge_lon=row["lon"], merge_bucket=bucket_of(row["lat"], row["lon"])
            )
        with factory() as session:
            session.execute(insert(Case), rows)
            session.commit()
        next_id += batch
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))"
            )
        # what autovacuum does after a bulk load: statistics and the visibility map (index-only counts)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE cases")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def query_mix(rng: random.Random, total: int) -> list[tuple[str, dict]]:
    def day(d: int) -> str:
        return (datetime(2026, 9, 1) + timedelta(days=d)).isoformat() + "Z"

    teams = ["hubin", "xiaoying", "qingbo", "ziyang", "wangjiang", "nanxing"]
    mix = []
    for _ in range(40):
        cell = f"DEMO-{rng.choice(teams).upper()}-{rng.randrange(1, 7):02d}"
        d = rng.randrange(80)
        mix += [
            ("status", {"status": "pending_review"}),
            (
                "category+status",
                {"category": rng.choice(CATEGORIES), "status": rng.choice(["filed", "dispatched"])},
            ),
            ("cell+status", {"grid_cell": cell, "status": "dispatched"}),
            ("team+since", {"team": f"team-{rng.choice(teams)}", "since": day(d)}),
            (
                "date range+category",
                {"since": day(d), "until": day(d + 7), "category": rng.choice(CATEGORIES)},
            ),
            ("camera+since, page 3", {"camera": f"cam-{rng.randrange(40)}", "since": day(d), "page": 3}),
            ("plate", {"plate": f"浙B{rng.randrange(1, total):05d}"}),
            ("number", {"number": f"GP-2026-{rng.randrange(1, total):06d}"}),
            (
                "open, oldest first",
                {"status": ["filed", "dispatched", "handled"], "sort": "first_seen", "order": "asc"},
            ),
        ]
    rng.shuffle(mix)
    return mix


def bench_queries(base: str, token: str, total: int, rounds: int) -> tuple[float, dict[str, float]]:
    rng = random.Random(3)
    mix = query_mix(rng, total)
    per: dict[str, list[float]] = {}
    all_ms: list[float] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for _name, params in mix[:20]:  # warm up
            client.get("/api/cases", params=params)
        for i in range(rounds):
            name, params = mix[i % len(mix)]
            t0 = time.perf_counter()
            r = client.get("/api/cases", params=params)
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"GET /api/cases {params}: {r.status_code} {r.text[:200]}")
            per.setdefault(name, []).append(ms)
            all_ms.append(ms)
    p95 = statistics.quantiles(all_ms, n=100)[94]
    return p95, {k: statistics.quantiles(v, n=100)[94] if len(v) > 1 else v[0] for k, v in per.items()}


class Reader:
    """Reads the case list (the query mix on one keep-alive connection) in a thread until stopped:
    the p95 a member of staff sees while ingest runs. One request after another (as much list load
    as one client can make: 45-100 requests/s here), or `per_s` requests a second on a schedule (the
    district's staff paging through lists: no web page polls it)."""

    def __init__(self, base: str, token: str, total: int, per_s: float | None = None) -> None:
        self.per_s = per_s
        self.mix = query_mix(random.Random(4), total)
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.ms: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        began = time.perf_counter()
        while not self._stop.is_set():
            due = began + i / self.per_s if self.per_s else 0.0
            if self._stop.wait(max(0.0, due - time.perf_counter())):
                break
            _name, params = self.mix[i % len(self.mix)]
            i += 1
            t0 = time.perf_counter()
            r = self.client.get("/api/cases", params=params)
            self.ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                self.failures.append(f"{params}: {r.status_code} {r.text[:200]}")

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()
        if self.failures:
            raise RuntimeError(f"GET /api/cases during ingest: {self.failures[0]}")

    def p95(self) -> float:
        return statistics.quantiles(self.ms, n=100)[94] if len(self.ms) > 1 else float("nan")


# Where a sample of the server is, by what its stack holds: the first rule that matches wins, so
# the specific ones (a commit inside the ingest writer) come before the general ones.
PROFILE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("database: COMMIT", ("Session.commit (sqlalchemy", "_sqlite_commit (", "Connection.commit (")),
    ("database: BEGIN (and SQLite's write lock)", ("_sqlite_begin (", "Connection.begin (", "_begin_impl (")),
    ("database: rows written per batch (evidence, events, custody)", ("batched (api/cases/ingest.py",)),
    ("database: merge-candidate query", ("_best_candidate (",)),
    ("database: custody entry lookup", ("append (api/cases/custody.py",)),
    ("grid cell lookup", ("grids.py",)),
    ("database: other ingest statements (duplicate check, case, sighting)", ("ingest (api/cases/ingest.py",)),
    ("ingest writer: answering callers", ("_answer (api/cases/ingest.py",)),
    ("case list (GET /api/cases)", ("api/http/routes/cases.py", "api/cases/reading.py")),
    ("evidence files: write, hash, rename", ("evidence_store.py",)),
    ("multipart parsing", ("read_parts (", "python_multipart")),
    ("incident JSON validation", ("parse_incident (", "prepare_payload (")),
    ("authentication (principal cache)", ("get_principal (", "principal_for (", "tokens.py")),
    (
        "thread hand-offs (wake-ups, thread pool)",
        (
            "call_soon_threadsafe",
            "_write_to_self",
            "_read_from_self",
            "run_in_threadpool",
            "WorkerThread",
            "SimpleQueue",
        ),
    ),
    ("HTTP: uvicorn, Starlette, FastAPI, responses", ("uvicorn", "starlette", "fastapi", "h11", "httptools")),
    ("event loop: waiting on sockets", ("select (selectors.py",)),
]


def profile_server(pid: int, seconds: float, out: Path) -> list[str]:
    """Sample the server with py-spy (in this venv) for `seconds` while it works; the report lines:
    the share of its busy samples (threads not waiting) in each part of the work (PROFILE_RULES),
    and the functions most samples end in."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return ["profile skipped: py-spy is not installed (pip install py-spy)"]
    done = subprocess.run(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--subprocesses",  # serve --workers N: its server processes
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not out.is_file():
        return [f"profile skipped: py-spy failed ({(done.stderr or done.stdout).strip()[-300:]})"]
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        label = next((name for name, marks in PROFILE_RULES if any(m in stack for m in marks)), "other")
        parts[label] += n
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += n
        where = (
            "ingest writer thread"
            if "IngestWriter._run" in stack
            else (
                "thread pool"
                if "WorkerThread" in stack
                else "event loop thread"
                if "run_forever" in stack
                else "other threads"
            )
        )
        threads[where] += n
    if not total:
        return ["profile: no samples"]
    lines = [f"profile of the server, {total} busy samples over {seconds:.0f} s (py-spy, 250/s per thread):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common()]
    lines.append("  by part of the work:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in parts.most_common()]
    lines.append("  functions the samples end in (self time):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(15)]
    return lines


def run(backend: str, args: argparse.Namespace, pg_url: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"gp-bench-{backend}-") as tmp_name:
        tmp = Path(tmp_name)
        db = Database(backend, tmp, pg_url)
        server = Server(tmp, db.url, workers=args.server_workers)
        try:
            server.cli("db", "upgrade")
            server.cli("grid", "import", str(REPO / "configs" / "demo-grid.geojson"))
            key = server.cli("device", "add", "bench-van").strip().splitlines()[-1]
            server.cli(
                "user", "add", "bench", "--role", "operator", "--password-stdin", stdin="bench-password\n"
            )
            base = server.start()
            pid = server.proc.pid if server.proc else None
            print(f"[{backend}] load average {load_average()}")
            first = bench_ingest(
                base,
                key,
                args.incidents,
                args.threads,
                server_pid=pid,
                batch=args.batch,
                repeats=args.repeats,
            )
            print(
                ingest_line(
                    backend,
                    f"ingested {first['count']} incidents with 2 evidence files each over HTTP",
                    first,
                    args.threads,
                )
            )
            report, seen = server.writer_report(0)
            for line in writer_lines(backend, report):
                print(line)
            # every stored file, chain and ledger place of what was just ingested (before the bulk
            # cases, which have no custody entries and would be named by verify)
            rc, said = server.verify()
            print(f"[{backend}] gridpatrol evidence verify after that ingest: exit {rc}: {said}")
            service_rate = bench_service_ingest(db.url, tmp, min(1000, args.incidents), args.repeats)
            print(
                f"[{backend}] service layer alone (no HTTP, one thread, a transaction each): "
                f"{service_rate:.0f} incidents/s"
            )
            t0 = time.perf_counter()
            bulk_cases(db.url, args.cases)
            print(f"[{backend}] bulk-inserted {args.cases} cases in {time.perf_counter() - t0:.1f} s")
            token = httpx.post(
                base + "/api/auth/token", data={"username": "bench", "password": "bench-password"}
            ).json()["access_token"]
            count = httpx.get(
                base + "/api/cases", params={"per_page": 1}, headers={"Authorization": f"Bearer {token}"}
            ).json()["total"]
            p95, per = bench_queries(base, token, count, args.queries)
            print(
                f"[{backend}] filtered GET /api/cases at {count} cases: "
                f"p95 {p95:.1f} ms over {args.queries} requests"
            )
            for name, value in sorted(per.items()):
                print(f"[{backend}]     {name:<24} p95 {value:6.1f} ms")

            def again(first_id: int) -> dict:  # ingest as fast as it goes, at the bulk-inserted cases
                return bench_ingest(
                    base,
                    key,
                    max(200, args.incidents),
                    args.threads,
                    server_pid=pid,
                    first_id=first_id,
                    batch=args.batch,
                    repeats=args.repeats,
                )

            # ingestion again with the big table: merging looks up open cases, which must stay cheap
            print(f"[{backend}] load average {load_average()}")
            alone = again(300_000)
            print(ingest_line(backend, f"ingest again at {count}+ cases", alone, args.threads))
            report, seen = server.writer_report(seen)
            for line in writer_lines(backend, report):
                print(line)
            # and with the case list read at the same time, one request after another: staff must
            # not wait for the writers
            with Reader(base, token, count) as reader:
                late = again(500_000)
            print(
                ingest_line(
                    backend, f"ingest again at {count}+ cases, case list read meanwhile", late, args.threads
                )
            )
            report, seen = server.writer_report(seen)
            for line in writer_lines(backend, report):
                print(line)
            print(
                f"[{backend}] GET /api/cases during that ingest: p95 {reader.p95():.1f} ms "
                f"over {len(reader.ms)} requests"
            )
            # the same at the target's steady rate (issue 14: 400/s), not as fast as the server goes:
            # what staff see while the district's cameras post at that rate. The cameras are many
            # and independent: each sends when it has an incident, whether or not another waits for
            # an answer, so the sender has connections enough (--paced-threads) that the requests
            # in flight never hold back the next one due (with 8, a request answered in more than
            # 8 x 40 ms delays the ones after it and the load falls below 400/s)
            steady_figures: dict[str, float] = {}
            for list_rate, first_id in ((None, 650_000), (args.list_rate, 700_000)):
                with Reader(base, token, count, per_s=list_rate) as paced_reader:
                    paced = bench_ingest(
                        base,
                        key,
                        args.paced_incidents,
                        args.paced_threads,
                        first_id=first_id,
                        rounds=1,
                        paced_per_s=TARGET_RATE,
                        batch=args.batch,
                        repeats=args.repeats,
                    )
                tail = "_listed" if list_rate else ""  # the figures of the list read at --list-rate
                steady_figures.update(
                    {
                        f"paced_per_s{tail}": paced["rate"],
                        f"paced_taken_per_s{tail}": paced["taken"],
                        f"p95_paced_ms{tail}": paced_reader.p95(),
                    }
                )
                reading = f"at {list_rate:g}/s" if list_rate else "one request after another"
                print(
                    f"[{backend}] GET /api/cases ({reading}) while ingest is sent steadily at "
                    f"{TARGET_RATE}/s (sent at {paced['rate']:.0f}/s, p95 {paced['late_p95_ms']:.0f} ms "
                    f"behind schedule, taken at {paced['taken']:.0f}/s meanwhile; "
                    f"{args.paced_threads} client connections, p95 {paced['p95_s'] * 1000:.0f} ms per "
                    f"request): p95 {paced_reader.p95():.1f} ms "
                    f"over {len(paced_reader.ms)} requests"
                )
            if args.profile and pid is not None:
                with Reader(base, token, count):
                    holder: dict = {}
                    load = threading.Thread(
                        target=lambda: holder.update(
                            bench_ingest(
                                base,
                                key,
                                args.incidents,
                                args.threads,
                                first_id=800_000,
                                batch=args.batch,
                                repeats=args.repeats,
                            )
                        )
                    )
                    load.start()
                    time.sleep(2)
                    lines = profile_server(pid, args.profile_s, tmp / "profile.txt")
                    load.join()
                for line in lines:
                    print(f"[{backend}] {line}")
            print(f"[{backend}] load average {load_average()}")
            return {
                "backend": backend,
                "incidents_per_s": first["rate"],
                "alone_per_s": alone["rate"],
                "late_per_s": late["rate"],
                "service_per_s": service_rate,
                "cases": count,
                "p95_ms": p95,
                "p95_during_ingest_ms": reader.p95(),
                "list_rate": args.list_rate,
                **steady_figures,
            }
        finally:
            server.stop()
            db.drop()


def summary(r: dict) -> str:
    """A backend's figures against the targets, in one line."""

    def steady(tail: str) -> str:
        sent, taken, p95 = (
            r[f"{name}{tail}"] for name in ("paced_per_s", "paced_taken_per_s", "p95_paced_ms")
        )
        ok = p95 < 50 and sent >= TARGET_RATE * 0.97 and taken >= TARGET_RATE * 0.97
        return (
            f"{p95:.1f} ms (sent at {sent:.0f}/s, taken at {taken:.0f}/s){'' if ok else ' (target missed)'}"
        )

    below = f" (below {TARGET_RATE})"
    return (
        f"{r['backend']:>8}: {r['alone_per_s']:6.0f} incidents/s at {r['cases']}+ cases, as fast as it goes"
        f"{'' if r['alone_per_s'] >= TARGET_RATE else below}, {r['late_per_s']:.0f}/s with the case list "
        f"read one request after another{'' if r['late_per_s'] >= TARGET_RATE else below} "
        f"({r['incidents_per_s']:.0f}/s on an empty store); case list p95 with ingest sent at "
        f"{TARGET_RATE}/s: read at {r['list_rate']:g}/s {steady('_listed')}, read one request after "
        f"another {steady('')}; {r['p95_during_ingest_ms']:.1f} ms with ingest as fast as it goes, "
        f"{r['p95_ms']:.1f} ms alone"
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument(
        "--threads", type=int, default=16, help="client connections (cameras posting at once)"
    )
    parser.add_argument("--queries", type=int, default=360)
    parser.add_argument(
        "--paced-incidents",
        type=int,
        default=4000,
        help="incidents sent steadily at 400/s (default: %(default)s, 10 s: the rate taken is measured "
        "over its last three quarters, and a window of a few seconds moves by a pause of the machine)",
    )
    parser.add_argument(
        "--list-rate",
        type=float,
        default=20.0,
        help="case-list requests a second in the second steady run (default: %(default)s: a district's "
        "100 staff each paging every 5 s; the first reads one request after another)",
    )
    parser.add_argument(
        "--paced-threads",
        type=int,
        default=32,
        help="client connections for the ingest sent steadily at 400/s (cameras posting independently)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="server processes (gridpatrol serve --workers N); the CPU figures are of them all",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="incidents per request: 1 posts each alone (a camera), more posts batches (a runner's backlog)",
    )
    parser.add_argument(
        "--repeat-sightings",
        dest="repeats",
        action="store_true",
        help=f"every odd incident is a second sighting (3 m away) of the one {REPEAT_GAP} before: half merge",
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="no py-spy profile")
    parser.add_argument("--profile-s", type=float, default=6.0, help="seconds the profile samples")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("GRIDPATROL_BENCH_POSTGRES_URL")
        or os.environ.get("GRIDPATROL_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not args.postgres_url:
        if args.backend == "postgres":
            parser.error("--postgres-url (or GRIDPATROL_BENCH_POSTGRES_URL) is needed for PostgreSQL")
        print("PostgreSQL skipped: no --postgres-url / GRIDPATROL_BENCH_POSTGRES_URL")
        backends = ["sqlite"]
    results = [run(b, args, args.postgres_url) for b in backends]
    print()
    for r in results:
        print(summary(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
