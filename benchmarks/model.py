"""Speed and accuracy of the shipped detector on this CPU: PyTorch vs ONNX Runtime vs OpenVINO.

Exports the model (ultralytics' exporter, dynamic input shapes: what `model.backend: auto` runs,
see detect.backends.cached_export) to build/exports/, then for each backend prints frames per
second of `YOLO.predict` on cn-garbage val photos and on the shared 16:9 dashcam clip's frames,
already in memory (batch 1, the shipped image size, interleaved rounds so machine noise hits
every backend alike; median of the rounds) and its AP50 / mAP50-95 on the dataset's val split.

    .venv/bin/python benchmarks/model.py [--model models/gridpatrol-n.pt] [--imgsz 480]
        [--limit 100] [--frames 50] [--rounds 3] [--json out.json]

The dataset is built, not shipped: run `gridpatrol dataset build` once (about 8 minutes on 2 cores).

Target (issue 4): the fastest backend by default on CPU when its mAP50 is within one point of
PyTorch's; at least 2x PyTorch's frames per second.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS  # noqa: E402 - after the path

DEFAULT_DATA = REPO / "build" / "datasets" / "gridpatrol-street" / "data.yaml"
BACKENDS = ("pytorch", "onnx", "openvino")


def backend_paths(model: Path, imgsz: int, backends: list[str]) -> dict[str, Path]:
    from detect.model.export import export_model

    exports = REPO / "build" / "exports"
    paths: dict[str, Path] = {}
    for backend in backends:
        if backend == "pytorch":
            paths[backend] = model
        elif backend == "onnx":
            out = exports / f"{model.stem}-{imgsz}-dynamic.onnx"
            paths[backend] = export_model(model, "onnx", imgsz=imgsz, out=out, dynamic=True)
        else:
            out = exports / f"{model.stem}-{imgsz}-dynamic_openvino_model"
            paths[backend] = export_model(model, "openvino", imgsz=imgsz, out=out, dynamic=True)
    return paths


def measure_fps(
    paths: dict[str, Path], image_sets: dict[str, list], imgsz: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Median frames/s of each backend on each set of images: {set: {backend: fps}}."""
    from detect.yolo import load_yolo

    models = {name: load_yolo(path).model for name, path in paths.items()}  # bare ultralytics models
    samples = {(s, n): [] for s in image_sets for n in models}
    for model in models.values():  # warm-up: first calls build graphs and allocate
        for images in image_sets.values():
            for image in images[:3]:
                model.predict(image, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
    for _ in range(rounds):
        for set_name, images in image_sets.items():
            for name, model in models.items():
                start = time.perf_counter()
                for image in images:
                    model.predict(image, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
                samples[(set_name, name)].append(len(images) / (time.perf_counter() - start))
    return {s: {n: statistics.median(samples[(s, n)]) for n in models} for s in image_sets}


def clip_frames(path: Path, count: int) -> list:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="dataset yaml (its val split is scored)"
    )
    parser.add_argument("--imgsz", type=int, default=SHIPPED_IMGSZ)
    parser.add_argument("--limit", type=int, help="score the first N val photos only")
    parser.add_argument(
        "--frames", type=int, default=50, help="photos per timing round (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--clip",
        type=Path,
        default=REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4",
        help="street footage whose frames are also timed (default: the shared dashcam clip)",
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS)
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import cv2

    from detect.model.evaluation import evaluate, load_data

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"unknown backends {sorted(unknown)}")
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")
    if not args.data.is_file():
        parser.error(
            f"no dataset at {args.data}: a fresh clone has none. Build it first with "
            "`gridpatrol dataset build` (the shipped recipe: cn-garbage from ../shared with the COCO kinds "
            "pseudo-labelled, about 8 minutes on 2 CPU cores), or pass --data DATA.yaml"
        )
    _, val_images = load_data(args.data, "val")
    frames = [cv2.imread(str(p)) for p in val_images[: args.frames]]
    image_sets = {"val photos": frames}
    if args.clip.is_file():
        image_sets["dashcam 16:9"] = clip_frames(args.clip, args.frames)

    paths = backend_paths(args.model, args.imgsz, backends)
    fps_by_set = measure_fps(paths, image_sets, args.imgsz, args.rounds)
    fps = fps_by_set["val photos"]
    rows = []
    for name in backends:
        report = evaluate(paths[name], args.data, imgsz=args.imgsz, limit=args.limit)
        rows.append(
            {
                "backend": name,
                "path": str(paths[name]),
                "fps": round(fps[name], 2),
                "fps_by_set": {k: round(v[name], 2) for k, v in fps_by_set.items()},
                "map50": round(report.map50, 4),
                "map50_95": round(report.map50_95, 4),
                "ap50": {c.name: round(c.ap50, 4) for c in report.classes if c.ap50 is not None},
                "images_scored": report.images,
            }
        )
    base = rows[0]
    print(
        f"model {args.model}, imgsz {args.imgsz}, {len(frames)} photos x {args.rounds} rounds, batch 1, CPU"
    )
    sets = list(fps_by_set)
    print(
        f"{'backend':<10} "
        + " ".join(f"{s + ' fps':>17} {'x':>5}" for s in sets)
        + f" {'mAP50':>7} {'mAP50-95':>9}  (val photos scored: {base['images_scored']})"
    )
    for row in rows:
        speeds = " ".join(
            f"{row['fps_by_set'][s]:17.2f} {row['fps_by_set'][s] / base['fps_by_set'][s]:5.2f}" for s in sets
        )
        print(f"{row['backend']:<10} {speeds} {row['map50']:7.4f} {row['map50_95']:9.4f}")
    if args.json:
        args.json.write_text(json.dumps({"imgsz": args.imgsz, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
