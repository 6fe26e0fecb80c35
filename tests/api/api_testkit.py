"""Helpers shared by the case-service tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.accounts.accounts import create_device, create_user
from api.cases.incident import IncidentPayload
from api.jobs.worker import Pipeline
from api.services import Services
from api.settings import Settings
from streams import SourceError

PG_URL = os.environ.get("GRIDPATROL_TEST_POSTGRES_URL")
DEMO_GRID = Path(__file__).resolve().parents[2] / "configs" / "demo-grid.geojson"


def make_settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, **overrides)


def jpeg_bytes(seed: str) -> bytes:
    """Bytes that sniff as a JPEG and are unique per seed (the store checks magic bytes only)."""
    return b"\xff\xd8\xff\xe0" + hashlib.sha256(seed.encode()).digest() * 4 + b"\xff\xd9"


def incident_json(
    incident_id: str,
    *,
    category: str = "illegal_parking",
    position: tuple[float, float] | None = (30.2741, 120.1551),
    when: str = "2026-11-20T09:00:00+08:00",
    until: str | None = None,
    plate: str | None = None,
    source_id: str = "demo-cam-01",
    files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """The JSON of a detect.values.Incident, with evidence entries for `files` (role -> bytes)."""
    files = (
        files
        if files is not None
        else {"annotated": jpeg_bytes(incident_id + "a"), "crop": jpeg_bytes(incident_id + "c")}
    )
    return {
        "id": incident_id,
        "category": category,
        "object_kind": "car",
        "source_id": source_id,
        "zone_id": "kerb-no-parking",
        "zone_kind": "no_parking",
        "first_seen_ts": 10.0,
        "last_seen_ts": 200.0,
        "best_ts": 100.0,
        "box": [10.0, 20.0, 110.0, 220.0],
        "confidence_median": 0.8,
        "confidence_max": 0.9,
        "observations": 40,
        "first_seen_wall": when,
        "last_seen_wall": until or when,
        "position": list(position) if position else None,
        "frame_index": 500,
        "track_ids": [3],
        "evidence": [
            {
                "role": role,
                "path": f"{incident_id}-{role}.jpg",
                "sha256": hashlib.sha256(data).hexdigest(),
                "media_type": "image/jpeg",
            }
            for role, data in files.items()
        ],
        "closed": True,
        "plate": plate,
        "dwell_s": 190.0,
    }


def evidence_files(
    data: dict[str, Any], files: dict[str, bytes] | None = None
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """multipart `files` parts matching an incident_json() (regenerated from its id when not given)."""
    if files is None:
        files = {"annotated": jpeg_bytes(data["id"] + "a"), "crop": jpeg_bytes(data["id"] + "c")}
    return [("files", (f"{data['id']}-{role}.jpg", body, "image/jpeg")) for role, body in files.items()]


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def footage(tag: str, size: int = 4096) -> bytes:
    """`size` bytes that sniff as an MP4 and are unique per tag (fake_pipeline decodes no frame)."""
    body = (tag.encode() * (size // max(1, len(tag)) + 1))[:size]
    return MP4_HEAD + body


class Killed(BaseException):
    """Stands for the worker process dying mid-job (not an Exception: nothing handles it)."""


def fake_pipeline(
    incidents_per_video: int = 3, *, die_after: int | None = None, calls: list[str] | None = None
) -> Pipeline:
    """A stand-in for detect.pipeline.detect_footage with the same signature.

    Footage containing b"CORRUPT" fails like undecodable video (streams.SourceError). Otherwise it
    yields `incidents_per_video` incidents with ids derived from source_id, each with one evidence file
    written under out_dir, reporting progress as it goes.
    """

    def detect_footage(
        input: str | Path,
        config: Any,
        *,
        out_dir: Path,
        camera_id: str | None = None,
        start_time: datetime | None = None,
        source_id: str | None = None,
        progress: Callable[[float], None] | None = None,
        track: Path | None = None,
    ) -> Iterator[Any]:
        if calls is not None:
            calls.append(str(source_id))
        data = Path(input).read_bytes()
        if b"CORRUPT" in data:
            raise SourceError(f"{Path(input).name}: cannot decode frame 3 (invalid NAL unit)")
        for i in range(incidents_per_video):
            if die_after is not None and i == die_after:
                raise Killed()
            image = jpeg_bytes(f"{source_id}-{i}")
            name = f"inc{i}.jpg"
            (out_dir / name).write_bytes(image)
            yield IncidentPayload.model_validate(
                {
                    "id": f"{source_id}:{i}",
                    "category": "illegal_parking",
                    "source_id": camera_id or "cam",
                    "first_seen_wall": "2026-11-20T09:00:00+08:00",
                    "position": [30.2741 + i * 0.001, 120.1551],
                    "evidence": [
                        {"role": "annotated", "path": name, "sha256": hashlib.sha256(image).hexdigest()}
                    ],
                }
            )
            if progress:
                progress((i + 1) / incidents_per_video)

    return detect_footage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: Any
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def browser(self, who: str) -> httpx.Client:
        """A person's browser on the pages: logged in, in English, sending the CSRF token."""
        from api.http.cookies import CSRF_HEADER, SESSION_COOKIE, csrf_token_for

        token = self.tokens[who]
        return httpx.Client(
            base_url=self.url,
            cookies={SESSION_COOKIE: token, "gp_lang": "en"},
            headers={CSRF_HEADER: csrf_token_for(token), "Accept": "text/html", "Origin": self.url},
            timeout=30,
        )


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def seed_people(services: Services) -> dict[str, str]:
    """Users of every role, two enforcement teams and a device; returns name -> bearer token/key."""
    from api.accounts.tokens import login

    people = {
        "admin": ("admin", None),
        "operator": ("operator", None),
        "viewer": ("viewer", None),
        "ziyang": ("enforcement", "team-ziyang"),
        "hubin": ("enforcement", "team-hubin"),
    }
    tokens = {}
    with services.factory() as session:
        for name, (role, team) in people.items():
            create_user(session, username=name, password="password-" + name, role=role, team=team)
        _, key = create_device(session, name="van-1", camera_id="demo-cam-01")
        session.commit()
    for name in people:
        tokens[name] = login(services.factory, username=name, password="password-" + name, ttl_h=1)
    tokens["device"] = key
    return tokens


def import_demo_grid(services: Services) -> None:
    from api.cases.grids import import_cells, load_geojson_file

    with services.factory() as session:
        import_cells(session, cells=load_geojson_file(str(DEMO_GRID)))
        session.commit()
    services.grid_cache.invalidate()


def post_incident(
    client: httpx.Client, data: dict[str, Any], files: dict[str, bytes] | None = None
) -> httpx.Response:
    return client.post(
        "/api/incidents", data={"incident": json.dumps(data)}, files=evidence_files(data, files)
    )


def wait_job(client: httpx.Client, job_id: int, timeout: float = 60) -> dict[str, Any]:
    """GET /api/jobs/{id} until the job is done or failed (or the timeout passes): its last state."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def upload_with_track(
    device: httpx.Client,
    video: bytes,
    track: tuple[str, bytes, str],
    start_time: str,
    *,
    name: str = "patrol.avi",
) -> httpx.Response:
    """POST /api/uploads of an AVI clip (`name`) with its GPS track (file name, bytes, media type) and
    the footage's start time, asserted taken as a new upload (201): its receipt, the job's id in it."""
    sent = device.post(
        "/api/uploads",
        files={"file": (name, video, "video/x-msvideo"), "track": track},
        data={"start_time": start_time},
    )
    assert sent.status_code == 201, sent.text
    return sent


@contextlib.contextmanager
def tmpfs(folder: Path, size_mib: int) -> Iterator[Path]:
    """`folder` made and on a file system of its own of `size_mib` MiB (a tmpfs): a disk that really
    fills. Root only, and where mounting is allowed (a container without CAP_SYS_ADMIN refuses it even
    to root); the test is skipped else, naming why."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small disk of its own needs root (mount -t tmpfs)")
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(folder)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
