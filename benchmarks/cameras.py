"""How many live cameras a runner analyses at 5 frames per second on this machine (issue 14), and what
the runner's plumbing and the engine (Ray) cost beside a bare loop.

The cameras: the shared dashcam clip (../shared/footage/highway-dashcam-1.mp4, 640x360) played as
live RTSP (MJPEG, in real time at 30 frames per second, looped), one stream per camera, by
benchmarks/rtsp_clip_server.py under the system Python with GStreamer's RTSP server. The model: the
shipped one as configs/site.yaml loads it (backend auto: the OpenVINO export on a CPU), one per
process, shared by the process's cameras (api.runner.camera.SharedDetector). Every camera has three
whole-frame zones (no parking, no vending, no dumping), so every rule runs on every frame.

1. One runner process: N cameras as a runner runs them (api.runner.camera.CameraJob: stream ->
   shared model -> tracker and rules -> spool -> forwarder, state reported to a real
   `gridpatrol serve`), N = 1, 2, 3, 4, 6, 8, ... until a camera analyses fewer than 95% of its 5
   frames per second: the last N that kept up is what one process sustains.
2. Two runner processes at once, the cameras split between them, the same ladder.
3. Overhead at one N (--overhead-cameras): the bare loop (detect_footage on each stream in a thread
   of one process, incidents dropped), the runner process (1.), and the engine (api.runner.engine:
   the same cameras in one Ray slot, frames per second read from the state the cameras report),
   CPU per camera and memory, Ray's own processes counted apart.

    .venv/bin/python benchmarks/cameras.py                        # about 15 minutes
    .venv/bin/python benchmarks/cameras.py --seconds 20 --max-cameras 6 --no-engine

Needs: /usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0 (and GStreamer's base and
good plugins), the shared clip, the shipped model (models/), and Ray for 3's engine part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_clip_server.py")
STREAM_FPS = 30
TARGET_FPS = 5.0  # configs/site.yaml's analysis_fps
KEEPS_UP = 0.95  # a camera keeps up when it analyses at least 95% of its 5 frames per second
LADDER = (1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
ZONES = [
    {"id": kind, "kind": kind, "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    for kind in ("no_parking", "no_vending", "no_dumping")
]

log = logging.getLogger("benchmarks.cameras")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def camera(n: int, port: int) -> dict[str, Any]:
    """Camera n as the registry gives it to a runner (GET /api/runner/cameras)."""
    return {
        "id": f"cam{n}",
        "name": f"benchmark camera {n}",
        "stream_url": f"rtsp://127.0.0.1:{port}/cam{n}",
        "position": None,
        "timezone": "Asia/Shanghai",
        "zones": ZONES,
        "active_hours": None,
    }


# --- a runner process (run as a child of the benchmark) ----------------------------------------


class Counting:
    """One camera's view of its process's shared model: counts the frames it analyses."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared
        self.frames = 0

    def detect(self, image: Any) -> Any:
        self.frames += 1
        return self.shared.detect(image)


def child(args: argparse.Namespace) -> int:
    """Analyse cameras first..first+count-1 for warmup + seconds; print the figures as JSON."""
    import numpy as np
    import psutil

    from api.runner.camera import CameraJob, SharedDetector
    from detect.pipeline import detect_footage

    logging.basicConfig(level=logging.WARNING)
    shared = SharedDetector(None)
    shared.detect(np.zeros((360, 640, 3), np.uint8))  # the model loaded before the clock starts
    stop = threading.Event()
    work = Path(args.work)
    counters, threads = [], []
    for n in range(args.first, args.first + args.count):
        counter = Counting(shared)
        job = CameraJob(
            camera(n, args.port),
            server=args.server,
            key=args.key,
            spool_dir=work / f"cam{n}",
            detector=counter,
        )
        if args.child == "job":
            target: Any = job.run
        else:  # the bare loop: the same config and model, no spool, no forwarder, no reports

            def target(stop: threading.Event, job: CameraJob = job, counter: Counting = counter) -> None:
                for _ in detect_footage(
                    job.camera["stream_url"],
                    job.site_config(),
                    out_dir=job.work_dir,
                    camera_id=job.camera_id,
                    detector=counter,
                    emit_open=True,
                    stop=stop,
                ):
                    pass

        counters.append(counter)
        threads.append(threading.Thread(target=target, args=(stop,), daemon=True))
    for thread in threads:
        thread.start()
    me = psutil.Process()
    time.sleep(args.warmup)
    frames0, cpu0, t0 = [c.frames for c in counters], sum(me.cpu_times()[:2]), time.monotonic()
    time.sleep(args.seconds)
    frames1, cpu1, t1 = [c.frames for c in counters], sum(me.cpu_times()[:2]), time.monotonic()
    wall = t1 - t0
    result = {
        "fps": [(b - a) / wall for a, b in zip(frames0, frames1, strict=True)],
        "cpu": (cpu1 - cpu0) / wall,  # cores busy
        "rss_mib": me.memory_info().rss / 2**20,
        "threads": me.num_threads(),
    }
    stop.set()
    for thread in threads:
        thread.join(10)
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # a stream thread stuck in a read must not hold the benchmark


# --- the benchmark's set-up ----------------------------------------------------------------------


class Setup:
    """The clip's frames, the RTSP cameras, a case service with the cameras registered and a runner
    key; all removed by close()."""

    def __init__(self, tmp: Path, cameras: int) -> None:
        self.tmp = tmp
        self.cameras = cameras
        self.port = free_port()
        self.http_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = dict(
            os.environ,
            GRIDPATROL_DATA_DIR=str(tmp / "data"),
            GRIDPATROL_DATABASE_URL=f"sqlite:///{tmp / 'db'}",
        )

    def frames(self) -> Path:
        import cv2

        folder = self.tmp / "frames"
        folder.mkdir()
        capture = cv2.VideoCapture(str(CLIP))
        n = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            cv2.imwrite(str(folder / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            n += 1
        capture.release()
        log.info("%d frames of %s written as JPEG", n, CLIP.name)
        return folder

    def start(self) -> None:
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or "python3"
        rtsp = subprocess.Popen(
            [
                python,
                str(SERVER_SCRIPT),
                str(self.port),
                str(self.frames()),
                str(STREAM_FPS),
                str(self.cameras),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(rtsp)
        assert rtsp.stdout is not None
        if rtsp.stdout.readline().strip() != b"ready":
            raise SystemExit("the RTSP server did not start: is python3-gi with gst-rtsp-server installed?")
        out = self.cli("device", "add", "runner-1", "--runner")
        self.key = out.strip().splitlines()[-1].strip()
        self.cli("user", "add", "bench", "--role", "operator", "--password-stdin", stdin="bench-password\n")
        zones = self.tmp / "zones.json"
        zones.write_text(json.dumps(ZONES))
        for n in range(self.cameras):
            url = camera(n, self.port)["stream_url"]
            self.cli("camera", "add", f"cam{n}", "--url", url, "--zones-file", str(zones), "--disabled")
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "-q", "serve", "--no-worker", "--port", str(self.http_port)],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "server.log", "wb"),  # noqa: SIM115
        )
        self.procs.append(server)
        self.url = f"http://127.0.0.1:{self.http_port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"the case service did not start; see {self.tmp / 'server.log'}")
        login = {"username": "bench", "password": "bench-password"}
        self.token = httpx.post(self.url + "/api/auth/token", data=login).json()["access_token"]

    def camera_fps(self) -> dict[str, float]:
        """The frames per second each camera last reported (GET /api/cameras as an operator)."""
        import httpx

        answer = httpx.get(self.url + "/api/cameras", headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()
        return {row["id"]: float((row.get("state") or {}).get("fps") or 0.0) for row in answer.json()}

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "-q", *args],
            env=self.env,
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_children(setup: Setup, mode: str, split: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runner processes at once, split[i] cameras each (numbered on from 0); their figures."""
    procs, first = [], 0
    for count in split:
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--first",
            str(first),
            "--count",
            str(count),
            "--port",
            str(setup.port),
            "--server",
            setup.url,
            "--key",
            setup.key,
            "--work",
            str(setup.tmp / "spool"),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
        ]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        first += count
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.warmup + args.seconds + 180)
        line = next((row for row in out.splitlines() if row.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"a runner process ended without figures (exit {proc.returncode})")
        results.append(json.loads(line[len("RESULT ") :]))
    return results


def ladder(setup: Setup, processes: int, args: argparse.Namespace) -> tuple[int, list[str]]:
    """The most cameras `processes` runner processes keep up with (and the lines printed)."""
    best, lines = 0, []
    for n in [n for n in LADDER if processes <= n <= args.max_cameras]:
        split = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
        results = run_children(setup, "job", split, args)
        fps = [f for r in results for f in r["fps"]]
        cpu = sum(r["cpu"] for r in results)
        rss = sum(r["rss_mib"] for r in results)
        kept = min(fps) >= KEEPS_UP * TARGET_FPS
        line = (
            f"  {n:3d} cameras: fps per camera min {min(fps):.2f} median {statistics.median(fps):.2f}, "
            f"CPU {cpu:.2f} cores, RSS {rss:.0f} MiB  {'keeps up' if kept else 'FALLS BEHIND'}"
        )
        print(line, flush=True)
        lines.append(line)
        if not kept:
            break
        best = n
    return best, lines


# --- the engine -------------------------------------------------------------------------------


def ray_processes() -> list[Any]:
    """Ray's own processes on this machine (GCS, raylet, its agents), not the workers."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(proc.info["cmdline"] or [])
        if any(key in text for key in ("gcs_server", "raylet", "dashboard", "log_monitor", "runtime_env")):
            found.append(proc)
    return found


def engine_run(setup: Setup, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """n cameras through the engine (one slot): fps from the cameras' state reports, the slot's CPU and
    memory, and Ray's own."""
    import psutil

    from api.runner.engine import CameraEngine

    for i in range(n):
        setup.cli("camera", "enable", f"cam{i}")
    engine = CameraEngine(
        setup.url,
        setup.key,
        spool_root=setup.tmp / "engine-spool",
        poll_s=2.0,
        cameras_per_slot=max(n, 1),
        num_cpus=os.cpu_count() or 2,
        log_to_driver=False,
    )
    try:
        engine.start()
        deadline = time.monotonic() + 120
        pids: set[int] = set()
        while time.monotonic() < deadline:
            statuses = [s for s in engine.statuses().values() if s]
            if sum(len(s["cameras"]) for s in statuses) == n and all(s["model_loaded"] for s in statuses):
                pids = {s["pid"] for s in statuses}
                break
            time.sleep(1)
        if not pids:
            raise SystemExit("the engine's cameras did not start within 120 s")
        slots = [psutil.Process(pid) for pid in pids]
        system = ray_processes()
        time.sleep(args.warmup)

        def cpu(procs: list[Any]) -> float:
            total = 0.0
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += sum(proc.cpu_times()[:2])
            return total

        fps_samples: dict[str, list[float]] = {f"cam{i}": [] for i in range(n)}
        c0, s0, t0 = cpu(slots), cpu(system), time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(5)  # the cameras report every 5 s
            for camera_id, fps in setup.camera_fps().items():
                if camera_id in fps_samples:
                    fps_samples[camera_id].append(fps)
        c1, s1, t1 = cpu(slots), cpu(system), time.monotonic()
        wall = t1 - t0
        return {
            "fps": [statistics.median(v) if v else 0.0 for v in fps_samples.values()],
            "cpu": (c1 - c0) / wall,
            "ray_cpu": (s1 - s0) / wall,
            "rss_mib": sum(p.memory_info().rss for p in slots) / 2**20,
            "ray_rss_mib": sum(p.memory_info().rss for p in system if p.is_running()) / 2**20,
        }
    finally:
        engine.close(stop_cameras=True)
        for i in range(n):
            setup.cli("camera", "disable", f"cam{i}")


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured per step (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--max-cameras", type=int, default=24)
    parser.add_argument("--overhead-cameras", type=int, default=4)
    parser.add_argument("--no-engine", action="store_true", help="skip the engine (Ray) part")
    parser.add_argument("--no-two", action="store_true", help="skip the two-process ladder")
    parser.add_argument("--child", choices=("job", "bare"), help=argparse.SUPPRESS)
    for hidden in ("--first", "--count", "--port"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    for hidden in ("--server", "--key", "--work"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.child:
        return child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not CLIP.is_file():
        raise SystemExit(f"{CLIP}: the shared clip is missing (../shared beside the repository)")
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores, load average {os.getloadavg()[0]:.2f} at the start")
    print(
        f"cameras: {CLIP.name} as live RTSP MJPEG 640x360 at {STREAM_FPS} fps, analysed at {TARGET_FPS} fps"
    )
    with tempfile.TemporaryDirectory(prefix="gridpatrol-cameras-") as tmp:
        setup = Setup(Path(tmp), max(args.max_cameras, args.overhead_cameras))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        try:
            setup.start()
            print("\n1. one runner process (CameraJob threads, one shared model):", flush=True)
            one, _ = ladder(setup, 1, args)
            two = 0
            if not args.no_two:
                print("\n2. two runner processes at once:", flush=True)
                two, _ = ladder(setup, 2, args)
            n = args.overhead_cameras
            print(
                f"\n3. overhead at {n} cameras (per camera: CPU in % of a core, memory in MiB):", flush=True
            )
            rows = [("bare loop", run_children(setup, "bare", [n], args)[0])]
            rows.append(("runner process", run_children(setup, "job", [n], args)[0]))
            if not args.no_engine:
                rows.append(("engine (Ray slot)", engine_run(setup, n, args)))
            for name, r in rows:
                extra = ""
                if "ray_cpu" in r:
                    ray_own = f"{100 * r['ray_cpu']:.1f}% of a core, {r['ray_rss_mib']:.0f} MiB"
                    extra = f"; Ray's own processes {ray_own}"
                print(
                    f"  {name:18s} fps min {min(r['fps']):.2f}, CPU {100 * r['cpu'] / n:.1f}% per camera, "
                    f"RSS {r['rss_mib']:.0f} MiB ({r['rss_mib'] / n:.0f} per camera){extra}",
                    flush=True,
                )
            print("\nsummary:")
            print(f"  one runner process keeps up with {one} cameras at {TARGET_FPS} fps on {cores} cores")
            if not args.no_two:
                print(f"  two runner processes keep up with {two} cameras ({two / cores:.1f} per core)")
            print(f"  load average {os.getloadavg()[0]:.2f} at the end")
        finally:
            setup.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
