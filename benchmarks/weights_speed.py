"""Do two weights of one network run at the same speed? Frames per second of each, timed frame by
frame in turn (A, B, B, A, ...) on the same frames, so that load from anything else on the machine
hits both alike; per backend (PyTorch, and the exports `model.backend: auto` runs).

    .venv/bin/python benchmarks/weights_speed.py --model models/gridpatrol-n.pt --against OTHER.pt
        [--backends pytorch,openvino] [--frames 50] [--rounds 4] [--clip FOOTAGE]

Frames: the first --frames of the shared 16:9 dashcam clip (../shared/footage), at the shipped size.
Weight interpolation (`gridpatrol model soup`) keeps the network, so its result should run at its
input's speed: the model card's "CPU speed unchanged within 10%" is checked with this.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS  # noqa: E402 - after the path

log = logging.getLogger("benchmarks.weights_speed")


def _model_benchmark() -> ModuleType:
    """benchmarks/model.py, for its exports and frame reader (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("benchmark_model", Path(__file__).with_name("model.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_fps(models: dict[str, Any], frames: list[Any], imgsz: int, rounds: int) -> dict[str, float]:
    """Frames/s of each model over rounds x frames, each frame run by every model in turn (the order
    reversed frame by frame, so neither always goes first)."""
    spent = dict.fromkeys(models, 0.0)
    order = list(models)
    for model in models.values():  # warm-up: first calls build graphs and allocate
        for frame in frames[:3]:
            model.predict(frame, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
    for done in range(rounds):
        for frame in frames:
            for name in order:
                start = time.perf_counter()
                models[name].predict(frame, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)
                spent[name] += time.perf_counter() - start
            order.reverse()
        log.info("round %d of %d done", done + 1, rounds)
    return {name: rounds * len(frames) / seconds for name, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--against", type=Path, required=True, help="the other weights (same network)")
    parser.add_argument(
        "--backends", default="pytorch,openvino", help="comma-separated: pytorch, onnx, openvino"
    )
    parser.add_argument("--imgsz", type=int, default=SHIPPED_IMGSZ)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--clip", type=Path, default=REPO.parent / "shared" / "footage" / "highway-dashcam-1.mp4"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path, what in ((args.model, "--model"), (args.against, "--against"), (args.clip, "--clip")):
        if not path.is_file():
            parser.error(f"{what} {path}: no such file")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"pytorch", "onnx", "openvino"})
    if unknown or not backends:
        parser.error(f"--backends: unknown {', '.join(unknown) or '(none given)'}")
    if args.model.stem == args.against.stem and backends != ["pytorch"]:
        parser.error("--model and --against share a file name; exports are named by it: copy one")
    bench = _model_benchmark()
    frames = bench.clip_frames(args.clip, args.frames)
    if not frames:
        parser.error(f"--clip {args.clip}: no frame could be decoded")

    from detect.yolo import load_yolo

    print(f"{len(frames)} frames of {args.clip.name} x {args.rounds} rounds at {args.imgsz}, in turn")
    print(f"A = {args.model}\nB = {args.against}")
    print(f"{'backend':10} {'A fps':>8} {'B fps':>8} {'B / A':>7}")
    for backend in backends:
        paths = {
            "A": bench.backend_paths(args.model, args.imgsz, [backend])[backend],
            "B": bench.backend_paths(args.against, args.imgsz, [backend])[backend],
        }
        models = {name: load_yolo(path).model for name, path in paths.items()}
        fps = paired_fps(models, frames, args.imgsz, args.rounds)
        print(f"{backend:10} {fps['A']:8.1f} {fps['B']:8.1f} {fps['B'] / fps['A']:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
