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

Then (unless --no-patrol) the clip as a patrol car's footage with a GPS track (issue 12): a straight
track at 80 km/h (the clip has none), a patrol camera with a mounting and a no-parking geofence over
the whole road, so every detection is placed on the ground and judged there; timed against the same
command without the track, in the same rounds; and the plate OCR's added cost per parking sighting
(one read of the evidence frame's vehicle box), timed on every vehicle the model finds in the clip.

Targets: >= 4x real time at 5 fps, start-up included (issue 15); >= 3x with the track (issue 12).
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
from datetime import UTC, datetime, timedelta
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


PATROL_KMH = 80.0  # the clip has no track: a straight one at this speed is written for it


def patrol_setup(folder: Path, clip: Path) -> tuple[Path, Path]:
    """A patrol site (the embedded default plus a patrol camera with a mounting, and a no-parking
    geofence over the whole road) and a straight GPX track for the clip, written in `folder`."""
    import yaml

    from detect.config import load_config

    site = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    lat, lon, d = 30.26, 120.15, 0.02
    ring = [[lon + x, lat + y] for x, y in ((-d, -d), (d, -d), (d, d), (-d, d), (-d, -d))]
    fences = folder / "fences.geojson"
    fences.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "whole-road", "kind": "no_parking"},
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                    }
                ],
            }
        )
    )
    site["geofences"] = str(fences)
    site["cameras"].append(
        {"id": "patrol-bench", "mounting": {"height_m": 1.3, "pitch_deg": 2.0, "hfov_deg": 90.0}, "zones": []}
    )
    config = folder / "patrol.yaml"
    config.write_text(yaml.safe_dump(site, allow_unicode=True))
    metres_per_s = PATROL_KMH / 3.6
    start = datetime(2026, 5, 12, 1, 30, tzinfo=UTC)
    points = "".join(
        f'<trkpt lat="{lat + metres_per_s * t / 111_320:.7f}" lon="{lon:.7f}">'
        f"<time>{(start + timedelta(seconds=t)).isoformat().replace('+00:00', 'Z')}</time></trkpt>"
        for t in range(int(clip_duration_s(clip)) + 3)
    )
    track = folder / "track.gpx"
    track.write_text(
        '<?xml version="1.0"?><gpx version="1.1" creator="benchmarks/patrol.py" '
        f'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{points}</trkseg></trk></gpx>'
    )
    return config, track


def measure_patrol(clip: Path, fps: float, rounds: int, *, plates: bool = True) -> None:
    """The clip as a patrol car's footage with its track (issue 12): every detection placed on the
    ground and judged by the geofence; against the same command without the track, in the same rounds.
    Then the plate OCR's cost per parking sighting: one read on the evidence frame's vehicle box,
    timed on every vehicle the model finds in the clip's analysed frames."""
    duration = clip_duration_s(clip)
    print(f"{clip.name} as patrol footage with a straight {PATROL_KMH:g} km/h track, analysed at {fps:g} fps")
    with tempfile.TemporaryDirectory() as folder:
        config, track = patrol_setup(Path(folder), clip)
        walls: dict[str, list[float]] = {"plain": [], "track": []}
        runs = (("plain", []), ("track", ["--track", str(track), "--camera", "patrol-bench"]))
        for r in range(rounds):
            for name, extra in runs:
                with tempfile.TemporaryDirectory() as out:
                    argv = ["detect", str(clip), "--fps", f"{fps:g}", "--out", out, "--config", str(config)]
                    start = time.perf_counter()
                    subprocess.run(
                        [str(GRIDPATROL), "-q", *argv, *extra],
                        check=True,
                        cwd=REPO,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    walls[name].append(time.perf_counter() - start)
            print(
                f"round {r + 1}: without track {walls['plain'][-1]:.2f} s, with track (ground positions, "
                f"geofence) {walls['track'][-1]:.2f} s = {duration / walls['track'][-1]:.2f}x real time"
            )
        plain, with_track = statistics.median(walls["plain"]), statistics.median(walls["track"])
        print(
            f"median: with its track {with_track:.2f} s for {duration:.1f} s of footage = "
            f"{duration / with_track:.2f}x real time (target >= 3x); without {plain:.2f} s "
            f"({with_track / plain:.3f} of it)"
        )
    if plates:
        measure_plate_cost(clip, fps)


def measure_plate_cost(clip: Path, fps: float) -> None:
    import cv2
    import numpy as np

    from detect.config import load_config
    from detect.pipeline import build_detector
    from detect.plate_reader import PlateReader

    config = load_config(REPO / "configs" / "site.yaml")
    detector = build_detector(config)
    reader = PlateReader()
    vehicles = {k for k, v in config.kinds.items() if v in config.categories["illegal_parking"].kinds}
    cap = cv2.VideoCapture(str(clip))
    step = max(1, round(cap.get(cv2.CAP_PROP_FPS) / fps))
    costs: list[float] = []
    read = 0
    index = 0
    reader.read(np.zeros((64, 64, 3), np.uint8), (0.0, 0.0, 64.0, 64.0))  # loads the OCR: once per process
    started = time.perf_counter()
    reader.recognise(np.zeros((48, 160, 3), np.uint8))
    load_s = time.perf_counter() - started
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if index % step == 0:
            for d in detector.detect(image):
                if d.class_name in vehicles:
                    t0 = time.perf_counter()
                    read += reader.read(image, d.box) is not None
                    costs.append((time.perf_counter() - t0) * 1000)
        index += 1
    cap.release()
    if not costs:
        print("plate OCR: no vehicle in the clip to time it on")
        return
    costs.sort()
    print(
        f"plate OCR per parking sighting (one read on its evidence frame), over {len(costs)} vehicles of the "
        f"clip: median {statistics.median(costs):.1f} ms, p90 {costs[int(0.9 * (len(costs) - 1))]:.1f} ms, "
        f"max {costs[-1]:.1f} ms; {read} plates read (the clip has no Chinese plates); OCR first call "
        f"{load_s * 1000:.0f} ms after load. A vehicle with no plate-coloured patch costs next to nothing; "
        "with a plate, a read costs tens of ms (benchmarks/plates.py measures it on rendered plates)"
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
    parser.add_argument(
        "--no-patrol", action="store_true", help="skip the run with a GPS track and the plate OCR's cost"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        launched, clip, fps, out = args.child
        child(float(launched), Path(clip), float(fps), Path(out))
        return
    print(f"cpus {os.cpu_count()}; each run is a fresh process (start-up included)")
    measure(args.clip, args.fps, args.rounds)
    if not args.no_patrol:
        measure_patrol(args.clip, args.fps, args.rounds)
    if args.loops > 1:
        with tempfile.TemporaryDirectory() as folder:
            looped = looped_clip(args.clip, args.loops, Path(folder))
            measure(looped, args.fps, args.rounds)
            if not args.no_patrol:
                measure_patrol(looped, args.fps, args.rounds, plates=False)
    if not args.no_service:
        measure_service(args.clip, args.rounds)


if __name__ == "__main__":
    main()
