"""`gridpatrol demo`: the main job end to end on the embedded default.

Starts the case service (SQLite in the data folder, in-process worker) on a loopback port, uploads
the sample footage over HTTP as a patrol vehicle and a fixed camera would, waits for the detection
jobs, and prints the cases they produced. Everything it makes stays in the data folder, so
`gridpatrol serve` afterwards shows the same cases. Running it again is idempotent: uploads are
recognised by their SHA-256 and no case is made twice.

Sample footage: ../shared/footage/highway-dashcam-1.mp4 (a real dashcam clip: moving traffic, so no
parking incident is expected); a fixed camera's clip of a residential garbage collection point held
for 150 s (a red car parked in its access lane's no-parking zone longer than the config's 120 s);
and a fixed lane camera's clip made from a real street photo of garbage piled on a pavement held for
90 s (longer than piled_debris' 60 s). Both photos are cn-garbage val photos (never trained on):
the collection point is the first by name in which the COCO base model (../shared/weights/
yolo26n-coco.pt at 640) sees a car, score >= 0.7, covering at least a tenth of the photo; the lane
is the first by name with a garbage box covering at least a tenth of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.cli import CommandError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DASHCAM = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
PARKING_SECONDS = 150
# The first cn-garbage val photo (by name) with a COCO-base car of score >= 0.7 over >= 10% of it.
PARKING_PHOTO = "000073_jpg.rf.bb6ffe8d45c40e86c86d0be90d08239d.jpg"
LANE_SECONDS = 90
CN_GARBAGE_VAL = REPO.parent / "shared" / "datasets" / "cn-garbage"
SITE_CONFIG = REPO / "configs" / "site.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "demo",
        help="run the main job on the embedded default: sample footage -> detection jobs -> cases (SQLite)",
    )
    p.add_argument("--footage", type=Path, default=DASHCAM, help="dashcam clip (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the jobs")
    p.add_argument(
        "--config",
        type=Path,
        help="site config (default: GRIDPATROL_SITE_CONFIG, else configs/site.yaml here or in the "
        f"repository, {SITE_CONFIG})",
    )
    p.set_defaults(handler=run_demo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _still_clip(path: Path, image_path: Path, seconds: int) -> Path:
    """A fixed camera's clip: one photo at 1 frame per second for `seconds` (made once)."""
    if path.exists():
        return path
    import cv2

    image = cv2.imread(str(image_path))
    if image is None:
        raise CommandError(f"sample photo cannot be read: {image_path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), 1.0, (image.shape[1], image.shape[0]))
    for _ in range(seconds):
        writer.write(image)
    writer.release()
    os.replace(tmp, path)
    return path


def _parking_clip(path: Path) -> Path:
    """The collection point's photo as a fixed camera's clip of PARKING_SECONDS."""
    return _still_clip(path, CN_GARBAGE_VAL / "images" / "val" / PARKING_PHOTO, PARKING_SECONDS)


def garbage_photo(dataset: Path = CN_GARBAGE_VAL) -> Path:
    """The first val photo (by name) with a garbage box (class 0) covering at least 10% of it."""
    for labels in sorted((dataset / "labels" / "val").glob("*.txt")):
        for line in labels.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0] == "0" and float(parts[3]) * float(parts[4]) >= 0.1:
                photo = dataset / "images" / "val" / f"{labels.stem}.jpg"
                if photo.is_file():
                    return photo
    raise CommandError(f"no val photo with a large garbage box under {dataset}")


def _lane_clip(path: Path) -> Path:
    return _still_clip(path, garbage_photo(), LANE_SECONDS)


def _credentials(services: Any, data_dir: Path) -> dict[str, str]:
    """The demo's admin password and device keys, made once and kept (mode 600) in the data folder."""
    from api.accounts import accounts as auth
    from api.storage.models import Device, User

    path = data_dir / "demo-credentials.json"
    creds = _saved_credentials(path)
    with services.factory() as session:
        from sqlalchemy import select

        if (
            "admin_password" not in creds
            or session.scalar(select(User).where(User.username == "demo-admin")) is None
        ):
            if session.scalar(select(User).where(User.username == "demo-admin")) is not None:
                raise CommandError(
                    f"user demo-admin exists but {path} is missing; remove the user or the database"
                )
            creds["admin_password"] = secrets.token_urlsafe(12)
            auth.create_user(
                session, username="demo-admin", password=creds["admin_password"], role=auth.Role.ADMIN
            )
        for name, camera in (
            ("demo-patrol-01", "patrol-01"),
            ("demo-cam-01", "demo-cam-01"),
            ("demo-cam-02", "demo-cam-02"),
        ):
            if name not in creds or session.scalar(select(Device).where(Device.name == name)) is None:
                if session.scalar(select(Device).where(Device.name == name)) is not None:
                    raise CommandError(f"device {name} exists but its key is not in {path}")
                _, creds[name] = auth.create_device(session, name=name, camera_id=camera)
        session.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds


def _saved_credentials(path: Path) -> dict[str, str]:
    """The credentials an earlier run kept in `path` ({} when there is none); CommandError naming the
    file when it cannot be used (the demo would otherwise make new ones and lose the old)."""
    try:
        creds = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(
            f"{path}: cannot be read as the demo's credentials ({why}); remove it together with the "
            "database, or restore it"
        ) from None
    if not isinstance(creds, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in creds.items()
    ):
        raise CommandError(
            f"{path}: not the demo's credentials (a JSON object of names and passwords or keys); "
            "remove it together with the database, or restore it"
        )
    return creds


def _site_config(option: Path | None, environ: Any = os.environ) -> Path:
    """The site config the demo's jobs use: --config, else GRIDPATROL_SITE_CONFIG, else
    configs/site.yaml in the current folder, else the repository's (the demo run from elsewhere).
    CommandError when the chosen file is not there (every job would fail on it)."""
    if option is not None:
        path, named = option, "--config"
    elif environ.get("GRIDPATROL_SITE_CONFIG"):
        path, named = Path(environ["GRIDPATROL_SITE_CONFIG"]), "GRIDPATROL_SITE_CONFIG"
    else:
        here = Path("configs") / "site.yaml"
        path, named = (here if here.is_file() else SITE_CONFIG), "site config"
    if not path.is_file():
        raise CommandError(f"{named}: {path}: no such config file")
    from detect.config import ConfigError, load_config

    try:
        load_config(path)
    except ConfigError as exc:
        raise CommandError(f"{named}: {exc}") from None
    return path.resolve()


def _grid(services: Any) -> None:
    from sqlalchemy import func, select

    from api.cases.grids import import_cells, load_geojson_file
    from api.storage.models import GridCell

    with services.factory() as session:
        if session.scalar(select(func.count()).select_from(GridCell)):
            return
        cells = load_geojson_file(str(REPO / "configs" / "demo-grid.geojson"))
        import_cells(session, cells=cells)
        session.commit()
        print(f"grid: imported {len(cells)} demo cells from configs/demo-grid.geojson")


def run_demo(args: argparse.Namespace) -> int:
    import httpx
    import uvicorn

    from api.http.app import create_app
    from api.services import Services
    from api.settings import Settings, SettingsError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise here
    if not args.footage.is_file():
        raise CommandError(f"sample footage not found: {args.footage}")
    try:
        settings = Settings.from_env(site_config=_site_config(args.config))
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    print(f"database: {settings.url.split('@')[-1]}   data folder: {settings.data_dir.resolve()}")
    print(f"site config: {settings.site_config}")
    services = Services.build(settings)
    try:
        _grid(services)
        creds = _credentials(services, settings.data_dir)
    finally:
        services.close()

    port = _free_port()
    app = create_app(settings, run_worker=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gridpatrol-demo-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60.0) as http:
            for _ in range(200):
                if server.started:
                    break
                time.sleep(0.05)
            parking_clip = _parking_clip(settings.data_dir / "demo" / "collection-point-150s.mp4")
            lane_clip = _lane_clip(settings.data_dir / "demo" / "lane-garbage-90s.mp4")
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
            uploads = [
                ("patrol vehicle dashcam", args.footage, "demo-patrol-01", "patrol-01"),
                ("fixed camera at a garbage collection point", parking_clip, "demo-cam-01", "demo-cam-01"),
                ("fixed camera over a lane", lane_clip, "demo-cam-02", "demo-cam-02"),
            ]
            jobs = []
            failed = []
            for label, path, device, camera in uploads:
                with open(path, "rb") as fh:
                    r = http.post(
                        "/api/uploads",
                        headers={"Authorization": f"Bearer {creds[device]}"},
                        files={"file": (path.name, fh, "video/mp4")},
                        data={"camera_id": camera, "start_time": start.isoformat()},
                    )
                if r.status_code not in (200, 201):
                    raise CommandError(f"upload of {path} failed: HTTP {r.status_code} {r.text[:300]}")
                job = r.json()
                state = "uploaded" if r.status_code == 201 else "already uploaded"
                print(f"{label}: {path.name} {state}, job {job['id']}")
                jobs.append((label, job["id"], creds[device]))
            token = http.post(
                "/api/auth/token", data={"username": "demo-admin", "password": creds["admin_password"]}
            ).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + args.timeout
            for label, job_id, _key in jobs:
                last = ""
                while True:
                    job = http.get(f"/api/jobs/{job_id}", headers=admin).json()
                    line = (
                        f"  job {job_id} ({label}): {job['status']} {100 * (job.get('progress') or 0):.0f}%"
                    )
                    if line != last:
                        print(line, flush=True)
                        last = line
                    if job["status"] in ("done", "failed"):
                        break
                    if time.monotonic() > deadline:
                        raise CommandError(f"job {job_id} did not finish within {args.timeout:.0f} s")
                    time.sleep(1.0)
                if job["status"] == "failed":
                    print(f"  job {job_id} failed: {job.get('error')}")
                    failed.append(f"job {job_id} ({label})")
            listing = {"sort": "last_seen", "order": "desc"}
            cases = http.get("/api/cases", headers=admin, params=listing).json()
        items = cases.get("items", cases) if isinstance(cases, dict) else cases
        print(f"\n{len(items)} case(s) in {settings.url.split('@')[-1]}:")
        for c in items:
            print(
                f"  {c['number']}  {c['category']:<16} {c['status']:<15} cell {c['grid_cell'] or '-':<12}"
                f" team {c['team'] or '-':<14} camera {c['camera_id'] or '-':<12} sightings {c['sightings']}"
            )
        print(
            "\nSee them in the web pages: `gridpatrol serve`, open http://127.0.0.1:8000/ and log in as "
            f"demo-admin (password in {settings.data_dir / 'demo-credentials.json'})."
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    if failed:
        raise CommandError(f"{len(failed)} of {len(jobs)} job(s) failed: {', '.join(failed)} (see above)")
    return 0
