"""Speed and accuracy of the shipped detector on this CPU: PyTorch vs ONNX Runtime vs OpenVINO.

Exports the model (ultralytics' exporter, fixed input size) to build/exports/, then for each
backend prints frames per second of `YOLO.predict` on cn-garbage val photos already in memory
(batch 1, the shipped image size, interleaved rounds so machine noise hits every backend alike;
median of the rounds) and its AP50 / mAP50-95 on the dataset's val split.

    .venv/bin/python benchmarks/model.py [--model models/gridpatrol-n.pt] [--imgsz 416]
        [--limit 100] [--frames 50] [--rounds 3] [--json out.json]

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

DEFAULT_MODEL = REPO / "models" / "gridpatrol-n.pt"
DEFAULT_DATA = REPO / "build" / "datasets" / "gridpatrol-street" / "data.yaml"
BACKENDS = ("pytorch", "onnx", "openvino")


def backend_paths(model: Path, imgsz: int, backends: list[str]) -> dict[str, Path]:
    from detect.export import export_model

    exports = REPO / "build" / "exports"
    paths: dict[str, Path] = {}
    for backend in backends:
        if backend == "pytorch":
            paths[backend] = model
        elif backend == "onnx":
            paths[backend] = export_model(
                model, "onnx", imgsz=imgsz, out=exports / f"{model.stem}-{imgsz}.onnx"
            )
        else:
            out = exports / f"{model.stem}-{imgsz}_openvino_model"
            paths[backend] = export_model(model, "openvino", imgsz=imgsz, out=out)
    return paths


def measure_fps(paths: dict[str, Path], images: list, imgsz: int, rounds: int) -> dict[str, float]:
    from detect.yolo import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    models = {name: YOLO(str(path), task="detect") for name, path in paths.items()}
    for model in models.values():  # warm-up: first calls build graphs and allocate
        for image in images[:3]:
            model.predict(image, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for image in images:
                model.predict(image, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
            samples[name].append(len(images) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="dataset yaml (its val split is scored)"
    )
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--limit", type=int, help="score the first N val photos only")
    parser.add_argument(
        "--frames", type=int, default=50, help="photos per timing round (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS)
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import cv2

    from detect.evaluation import evaluate, load_data

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"unknown backends {sorted(unknown)}")
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")
    _, val_images = load_data(args.data, "val")
    frames = [cv2.imread(str(p)) for p in val_images[: args.frames]]

    paths = backend_paths(args.model, args.imgsz, backends)
    fps = measure_fps(paths, frames, args.imgsz, args.rounds)
    rows = []
    for name in backends:
        report = evaluate(paths[name], args.data, imgsz=args.imgsz, limit=args.limit)
        rows.append(
            {
                "backend": name,
                "path": str(paths[name]),
                "fps": round(fps[name], 2),
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
    print(
        f"{'backend':<10} {'fps':>7} {'x':>5} {'mAP50':>7} {'mAP50-95':>9}"
        f"  (val photos scored: {base['images_scored']})"
    )
    for row in rows:
        print(
            f"{row['backend']:<10} {row['fps']:7.2f} {row['fps'] / base['fps']:5.2f} "
            f"{row['map50']:7.4f} {row['map50_95']:9.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"imgsz": args.imgsz, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
