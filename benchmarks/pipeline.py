"""Pipeline throughput and memory on the shared dashcam clip (CPU, imgsz 640).

Prints, from one run (interleaved, so machine noise hits both sides alike):
- frames per second of the whole gridpatrol pipeline (decode, detect, track, camera motion, rules,
  evidence) beside a bare ultralytics predict loop (cv2 decode + YOLO.predict) on the same frames,
  like with like: the bare loop loads the very weights file the pipeline's detector runs (the
  backend's export of the .pt, e.g. OpenVINO on a CPU) and predicts at the same imgsz, conf, iou
  and classes, so the ratio is the pipeline's own cost; the backend both ran on is printed; beside
  the wall-clock ratio, the ratio of CPU seconds per frame (all threads of this process), which other
  processes on a shared machine disturb far less than wall time;
- peak memory (max RSS) of one pass over the clip and of the clip looped 10 times, each measured in
  a fresh child process, and the RSS after each loop of the long run (flat memory shows as a flat
  line).

    .venv/bin/python benchmarks/pipeline.py [--fps 5] [--rounds 3] [--loops 10]

Targets (issue 2, issue 15): pipeline fps >= 0.95 x bare fps on the same backend; peak memory of
10 loops within 10% of one pass.
The benchmark config puts a no_parking zone over the whole road and fires after 1 s without the
moving-camera check, so that evidence images are really written during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP = REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
WEIGHTS = REPO.parent / "shared" / "weights" / "yolo26n-coco.pt"


def bench_config(fps: float | None):
    from detect.config import load_config, parse_config

    data = load_config(REPO / "configs" / "site.yaml").model_dump(mode="json")
    data["model"]["weights"] = str(WEIGHTS)
    data["model"]["imgsz"] = 640
    data["analysis_fps"] = fps
    rule = data["categories"]["illegal_parking"]
    rule.update(min_dwell_s=1.0, require_static_camera=False, max_drift_ratio=None, min_observations=2)
    data["default_camera"] = None
    data["cameras"] = [
        {
            "id": "bench",
            "zones": [
                {"id": "road", "kind": "no_parking", "points_norm": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]]}
            ],
        }
    ]
    return parse_config(data, base_dir=REPO)


def run_pipeline(
    config, detector, loops: int = 1, rss_log: list[int] | None = None
) -> tuple[int, int, float, float]:
    """Frames analysed, incidents, wall seconds, CPU seconds: the whole pipeline over the clip, `loops`
    times back to back."""
    from detect.pipeline import Pipeline, build_tracker
    from streams import open_source, prefetch

    def looped() -> Iterator:
        offset = 0.0
        for _ in range(loops):
            source = open_source(CLIP, analysis_fps=config.analysis_fps, source_id="bench")
            last = 0.0
            for frame in prefetch(source):
                last = frame.ts
                yield replace(frame, ts=frame.ts + offset) if offset else frame
            offset += last + 1.0
            if rss_log is not None:
                rss_log.append(current_rss_kib())

    info = open_source(CLIP).info
    with tempfile.TemporaryDirectory() as out:
        pipeline = Pipeline(
            config,
            config.cameras[0],
            detector=detector,
            tracker=build_tracker(config, info.fps),
            out_dir=Path(out),
            source_id="bench",
        )
        start, cpu = time.perf_counter(), time.process_time()
        incidents = sum(1 for _ in pipeline.process(looped()))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return pipeline.frames, incidents, elapsed, cpu


def run_bare(config, model, classes: list[int] | None) -> tuple[int, float, float]:
    """Frames, wall seconds, CPU seconds: cv2 decode + YOLO.predict on the same frames the pipeline
    analyses, with the detector's arguments (classes: the model's class ids the config's kinds keep)."""
    import cv2

    from streams.source import RateSampler

    sampler = RateSampler(config.analysis_fps)
    cap = cv2.VideoCapture(str(CLIP))
    frames = 0
    start, cpu = time.perf_counter(), time.process_time()
    while cap.grab():
        if not sampler.keep(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0):
            continue
        ok, image = cap.retrieve()
        if not ok:
            break
        model.predict(
            image,
            imgsz=config.model.imgsz,
            conf=config.model.conf,
            iou=config.model.iou,
            classes=classes,
            max_det=300,
            device=config.model.device,
            verbose=False,
        )
        frames += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    cap.release()
    return frames, elapsed, cpu


def current_rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_child(loops: int, fps: float | None) -> None:
    """Run in a fresh process: the pipeline over the clip `loops` times; print peak RSS as JSON."""
    from detect.pipeline import build_detector

    config = bench_config(fps)
    detector = build_detector(config)
    rss: list[int] = []
    frames, incidents, _, _ = run_pipeline(config, detector, loops=loops, rss_log=rss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"loops": loops, "frames": frames, "incidents": incidents, "peak_kib": peak, "rss_kib": rss}
        )
    )


def measure_memory(loops: int, fps: float | None) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", str(loops)]
    if fps is not None:
        cmd += ["--fps", str(fps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fps", type=float, default=None, help="analysis fps (default: every frame)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of bare vs pipeline")
    parser.add_argument("--loops", type=int, default=10, help="clip repetitions for the memory check")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.fps)
        return

    import torch

    from detect.pipeline import build_detector
    from detect.yolo import YoloDetector, load_yolo

    config = bench_config(args.fps)
    detector = build_detector(config)
    assert isinstance(detector, YoloDetector)
    # the ultralytics model of the same file the detector loaded (its backend's export), predicting bare
    bare_model = load_yolo(detector.weights).model
    classes = sorted(i for i, n in detector.names.items() if n in detector.kinds) or None
    print(
        f"clip {CLIP.name}, weights {WEIGHTS.name}, backend {detector.backend} ({detector.weights.name}) "
        f"for both pipeline and bare loop, imgsz {config.model.imgsz}, "
        f"analysis fps {config.analysis_fps or 'all'}, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}"
    )
    run_bare(config, bare_model, classes)  # warm-up both
    run_pipeline(config, detector)
    bare_fps, pipe_fps, ratios, cpu_ratios = [], [], [], []
    for r in range(args.rounds):
        n, t, c = run_bare(config, bare_model, classes)
        m, incidents, t2, c2 = run_pipeline(config, detector)
        bare_fps.append(n / t)
        pipe_fps.append(m / t2)
        ratios.append((m / t2) / (n / t))
        cpu_ratios.append((c / n) / (c2 / m))  # bare CPU s per frame over the pipeline's
        print(
            f"round {r + 1}: bare {n} frames {n / t:6.2f} fps {c / n * 1000:5.1f} ms CPU/frame | "
            f"pipeline {m} frames {m / t2:6.2f} fps {c2 / m * 1000:5.1f} ms CPU/frame "
            f"({incidents} incidents with evidence) | ratio {ratios[-1]:.3f}, CPU {cpu_ratios[-1]:.3f}"
        )
    print(
        f"median: bare {statistics.median(bare_fps):.2f} fps, "
        f"pipeline {statistics.median(pipe_fps):.2f} fps, "
        f"ratio {statistics.median(ratios):.3f}, CPU ratio {statistics.median(cpu_ratios):.3f} "
        f"on {detector.backend} (target >= 0.95)"
    )
    if args.skip_memory:
        return
    one = measure_memory(1, args.fps)
    many = measure_memory(args.loops, args.fps)
    growth = many["peak_kib"] / one["peak_kib"] - 1
    print(
        f"peak RSS: 1 pass {one['peak_kib'] / 1024:.0f} MiB ({one['frames']} frames); "
        f"{args.loops} loops {many['peak_kib'] / 1024:.0f} MiB ({many['frames']} frames); "
        f"growth {growth * 100:+.1f}% (target within 10%)"
    )
    print("RSS after each loop (MiB): " + ", ".join(f"{r / 1024:.0f}" for r in many["rss_kib"]))


if __name__ == "__main__":
    main()
