"""Patrol footage end to end: `gridpatrol detect CLIP --fps 5` as a user runs it, start-up included.

Prints, for each round (plain and instrumented runs interleaved, so machine noise hits both alike):
- the wall time of the plain command, from launch to exit, against the clip's duration: how many
  times faster than real time the footage is analysed;
- where an instrumented run of the same command spends its time:
  start-up: launch until the first frame reaches the detector (interpreter, imports, config, model
    load, opening the video); first inference: the first detector call, with its one-time costs
    (the backend's set-up and compile) on top of a frame's inference;
  decode: time inside the video source's frame loop (demux + decode of every frame, colour
    conversion of the analysed ones); it runs in the prefetch thread, beside detection;
  detect: the detector's calls after the first;
  rest: what is left of the wall time: tracking, camera motion, rules, evidence, progress, the
    contact sheet, waiting on decode, interpreter exit.

    .venv/bin/python benchmarks/patrol.py [--clip FILE] [--fps 5] [--rounds 3] [--loops 0]

--loops N also builds, in a temporary folder, a longer patrol clip (the clip N times back to back,
re-encoded with OpenCV's mp4v codec, as OpenCV's wheels carry no H.264 encoder) and measures it the
same way: start-up is then spread over N times the footage.

Then (unless --no-service) the path a patrol upload takes: the clip posted to `gridpatrol serve`, whose
worker has its model loaded when the server starts, timed from the upload to its job's end.

Target (issue 15): >= 4x real time at 5 fps, start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
GRIDPATROL = Path(sys.executable).parent / "gridpatrol"


def clip_duration_s(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()


def looped_clip(path: Path, loops: int, folder: Path) -> Path:
    """The clip `loops` times back to back, as one mp4v file in `folder`."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    out = folder / f"{path.stem}-x{loops}.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for _ in range(loops):
        for image in frames:
            writer.write(image)
    writer.release()
    return out


def detect_argv(clip: Path, fps: float, out: Path) -> list[str]:
    config = REPO / "configs" / "site.yaml"
    return ["detect", str(clip), "--fps", f"{fps:g}", "--out", str(out), "--config", str(config)]


def run_plain(clip: Path, fps: float) -> float:
    """Seconds from launching `gridpatrol detect` to its exit."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [str(GRIDPATROL), "-q", *detect_argv(clip, fps, Path(out))],
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def run_split(clip: Path, fps: float) -> dict[str, float]:
    """The same command in an instrumented child; its split and wall time (seconds)."""
    with tempfile.TemporaryDirectory() as out:
        launched = time.time()
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(launched), str(clip), str(fps), out],
            check=True,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
    split = json.loads(done.stdout.strip().splitlines()[-1])
    split["wall"] = wall
    split["rest"] = wall - split["startup"] - split["first_detect"] - split["detect"]
    return split


def child(launched: float, clip: Path, fps: float, out: Path) -> None:
    """In a fresh process: run the CLI with timers around the video source and the detector; print
    the split as JSON (times from `launched`, the parent's wall clock before it started us)."""
    import threading

    import streams.video
    from api.cli.main import main as cli_main
    from detect.yolo import YoloDetector

    lock = threading.Lock()
    totals = {"startup": 0.0, "first_detect": 0.0, "detect": 0.0, "decode": 0.0, "frames": 0.0}
    video_frames = streams.video.VideoSource._frames
    detect = YoloDetector.detect

    def timed_frames(self):  # type: ignore[no-untyped-def]
        frames = video_frames(self)
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            with lock:
                totals["decode"] += time.perf_counter() - start
            if frame is None:
                return
            yield frame

    def timed_detect(self, image):  # type: ignore[no-untyped-def]
        first = totals["frames"] == 0
        if first:
            totals["startup"] = time.time() - launched
        start = time.perf_counter()
        found = detect(self, image)
        totals["first_detect" if first else "detect"] += time.perf_counter() - start
        totals["frames"] += 1
        return found

    streams.video.VideoSource._frames = timed_frames  # type: ignore[method-assign]
    YoloDetector.detect = timed_detect  # type: ignore[method-assign]
    with open(os.devnull, "w") as devnull:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = devnull
        try:
            cli_main(["-q", *detect_argv(clip, fps, out)])
        finally:
            sys.stdout, sys.stderr = stdout, stderr
    print(json.dumps(totals))


def measure(clip: Path, fps: float, rounds: int) -> None:
    duration = clip_duration_s(clip)
    print(f"{clip.name}: {duration:.1f} s of footage, analysed at {fps:g} fps")
    plain, splits = [], []
    for r in range(rounds):
        plain.append(run_plain(clip, fps))
        s = run_split(clip, fps)
        splits.append(s)
        print(
            f"round {r + 1}: gridpatrol detect {plain[-1]:.2f} s = {duration / plain[-1]:.2f}x real time | "
            f"instrumented {s['wall']:.2f} s: start-up {s['startup']:.2f}, first inference "
            f"{s['first_detect']:.2f}, detect {s['detect']:.2f} ({s['frames']:.0f} frames), "
            f"decode {s['decode']:.2f} (prefetch thread), rest {s['rest']:.2f}"
        )
    wall = statistics.median(plain)

    def med(key: str) -> float:
        return statistics.median(s[key] for s in splits)

    print(
        f"median: {wall:.2f} s for {duration:.1f} s of footage = {duration / wall:.2f}x real time "
        f"(target >= 4x); start-up {med('startup'):.2f} + first inference {med('first_detect'):.2f} "
        f"+ detect {med('detect'):.2f} + rest {med('rest'):.2f} s; decode {med('decode'):.2f} s beside them"
    )


def measure_service(clip: Path, rounds: int) -> None:
    """The path a patrol upload takes: `gridpatrol serve` (SQLite, its in-process worker, which loads
    the model when it starts) receives the clip over HTTP and its job runs to the end. Timed from the
    upload's first byte to the job's end, against the clip's duration; each round uploads the clip
    with a few distinct bytes appended (uploads are idempotent on their SHA-256)."""
    import importlib.util
    import shutil

    import httpx

    spec = importlib.util.spec_from_file_location("bench_api", REPO / "benchmarks" / "api.py")
    assert spec is not None and spec.loader is not None
    bench_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_api)
    Server, free_port = bench_api.Server, bench_api.free_port

    duration = clip_duration_s(clip)
    with tempfile.TemporaryDirectory(prefix="gp-patrol-service-") as tmp_name:
        tmp = Path(tmp_name)
        server = Server(tmp, f"sqlite:///{tmp / 'gridpatrol.db'}")
        server.cli("db", "upgrade")
        key = server.cli("device", "add", "patrol-van", "--camera", "patrol-01").strip().splitlines()[-1]
        server.port = free_port()
        server.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(server.port)],
            env=server.env,
            cwd=REPO,
            stdout=server.log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{server.port}"
        try:
            log_path = tmp / "server.log"
            started = time.monotonic()
            while "model loaded" not in log_path.read_text(errors="replace"):
                if time.monotonic() - started > 180 or server.proc.poll() is not None:
                    raise RuntimeError(f"the worker did not load its model; see {log_path}")
                time.sleep(0.2)
            print(
                f"gridpatrol serve: worker ready {time.monotonic() - started:.1f} s after launch "
                "(once per server, not per upload)"
            )
            walls = []
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client:
                for r in range(rounds):
                    copy = tmp / f"patrol-{r}.mp4"
                    shutil.copyfile(clip, copy)
                    with copy.open("ab") as fh:
                        fh.write(f"gridpatrol-benchmark-round-{r}".encode())
                    t0 = time.monotonic()
                    with copy.open("rb") as fh:
                        answer = client.post("/api/uploads", files={"file": (copy.name, fh, "video/mp4")})
                    answer.raise_for_status()
                    job_id = answer.json()["id"]
                    while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in (
                        "done",
                        "failed",
                    ):
                        time.sleep(0.05)
                    walls.append(time.monotonic() - t0)
                    print(
                        f"round {r + 1}: upload -> job {job['status']} in {walls[-1]:.2f} s = "
                        f"{duration / walls[-1]:.2f}x real time ({job['incidents']} incidents)"
                    )
            wall = statistics.median(walls)
            print(
                f"median: upload to cases {wall:.2f} s for {duration:.1f} s of footage = "
                f"{duration / wall:.2f}x real time (target >= 4x)"
            )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--fps", type=float, default=5.0, help="analysis fps (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, plain and instrumented")
    parser.add_argument("--loops", type=int, default=0, help="also measure the clip repeated this many times")
    parser.add_argument(
        "--no-service", action="store_true", help="skip the upload through `gridpatrol serve` and its worker"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        launched, clip, fps, out = args.child
        child(float(launched), Path(clip), float(fps), Path(out))
        return
    print(f"cpus {os.cpu_count()}; each run is a fresh process (start-up included)")
    measure(args.clip, args.fps, args.rounds)
    if args.loops > 1:
        with tempfile.TemporaryDirectory() as folder:
            measure(looped_clip(args.clip, args.loops, Path(folder)), args.fps, args.rounds)
    if not args.no_service:
        measure_service(args.clip, args.rounds)


if __name__ == "__main__":
    main()
