"""`gridpatrol dataset build`, `train`, `evaluate` and `export`: the shipped detector's life cycle.

Thin: the work is in detect.model's dataset, training, evaluation and export modules, all imported
inside the handlers so that other commands never pay for torch.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


class CommandError(Exception):
    """A problem the user can fix (bad recipe, missing weights): one line, exit status 1."""


log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "datasets" / "gridpatrol-street.yaml"
DEFAULT_SAMPLES_RECIPE = REPO / "datasets" / "street-samples.yaml"
DEFAULT_BUILD = REPO / "build"
DEFAULT_DATA = DEFAULT_BUILD / "datasets" / "gridpatrol-street" / "data.yaml"
DEFAULT_BASE = REPO.parent / "shared" / "weights" / "yolo26n-coco.pt"


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("dataset", help="training-set tools")
    dsub = d.add_subparsers(dest="dataset_command", metavar="ACTION")
    build = dsub.add_parser(
        "build",
        help="build a training set from a recipe (datasets/*.yaml)",
        description="Build a training set deterministically: images symlinked, labels remapped, COCO kinds "
        "pseudo-labelled (cached).",
    )
    build.add_argument("recipe", nargs="?", type=Path, default=DEFAULT_RECIPE, help="default: %(default)s")
    build.add_argument(
        "--out", type=Path, default=DEFAULT_BUILD / "datasets", help="parent folder (default: %(default)s)"
    )
    build.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_BUILD / "cache",
        help="pseudo-label cache (default: %(default)s)",
    )
    build.add_argument("--limit", type=int, help="at most N images per split and source (quick looks)")
    build.set_defaults(handler=run_dataset_build)
    samples = dsub.add_parser(
        "samples",
        help="fetch the held-out street samples (photos and footage not in ../shared) from Debian",
        description="Fetch the files named in datasets/street-samples.yaml out of their Debian package "
        "(apt-get download, or --deb), check their SHA-256 and write them to --out. Files already there "
        "are kept.",
    )
    samples.add_argument(
        "recipe", nargs="?", type=Path, default=DEFAULT_SAMPLES_RECIPE, help="default: %(default)s"
    )
    samples.add_argument(
        "--out", type=Path, default=DEFAULT_BUILD / "street-samples", help="default: %(default)s"
    )
    samples.add_argument("--deb", type=Path, help="read this .deb instead of downloading the package")
    samples.set_defaults(handler=run_dataset_samples)

    t = subparsers.add_parser(
        "train",
        help="train the detector (ultralytics), or resume an interrupted run",
        description="Fine-tune COCO weights on a built dataset. Checkpoints every epoch in the run folder; "
        "--resume continues from its last.pt.",
    )
    t.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset yaml (default: %(default)s)")
    t.add_argument("--base", type=Path, default=DEFAULT_BASE, help="starting weights (default: %(default)s)")
    t.add_argument("--imgsz", type=int, help="input size in pixels (default: the shipped model's)")
    t.add_argument(
        "--epochs", type=int, help="planned epochs (default 50; with --resume: change the run's plan)"
    )
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=2, help="data-loader processes (default: %(default)s)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--project", type=Path, default=DEFAULT_BUILD / "runs", help="default: %(default)s")
    t.add_argument("--name", default="gridpatrol-n", help="run folder name (default: %(default)s)")
    t.add_argument("--no-cache", action="store_true", help="do not cache decoded images in RAM")
    t.add_argument(
        "--no-calibrate-bn",
        action="store_true",
        help="train from the base weights as they are (default: calibrate their identity BatchNorms first)",
    )
    t.add_argument(
        "--teacher",
        type=Path,
        help="distil towards these weights' features while training (e.g. the COCO base: keeps its "
        "vehicles and people; ultralytics' score-weighted feature distillation)",
    )
    t.add_argument(
        "--distill-weight",
        type=float,
        default=6.0,
        help="weight of the distillation loss (default: %(default)s)",
    )
    t.add_argument(
        "--scale",
        type=float,
        help="random zoom gain of the training images (ultralytics' scale; default 0.5: zoom 0.5x-1.5x)",
    )
    t.add_argument("--resume", action="store_true", help="continue the run from its weights/last.pt")
    t.add_argument(
        "--ship", type=Path, help="after training, write the best weights here (e.g. models/gridpatrol-n.pt)"
    )
    t.add_argument(
        "--ship-only",
        action="store_true",
        help="do not train: write --ship from the run's best.pt (or last.pt, e.g. of a run in progress)",
    )
    t.set_defaults(handler=run_train)

    e = subparsers.add_parser(
        "evaluate",
        help="per-class AP50, mAP50-95, precision and recall of a model on a dataset",
        description="Validate a model on a dataset's val split and print a per-class table.",
    )
    e.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset yaml (default: %(default)s)")
    e.add_argument("--model", type=Path, help="weights (default: the shipped models/gridpatrol-n.pt)")
    e.add_argument("--imgsz", type=int, help="input size in pixels (default: the shipped model's)")
    e.add_argument(
        "--conf", type=float, default=0.25, help="operating threshold for P and R (default: %(default)s)"
    )
    e.add_argument("--split", default="val")
    e.add_argument("--json", type=Path, help="also write the metrics as JSON to this file")
    e.set_defaults(handler=run_evaluate)

    x = subparsers.add_parser(
        "export",
        help="export weights to ONNX or OpenVINO for faster CPU inference",
        description="Export a .pt model with ultralytics' exporter, fixed input size.",
    )
    x.add_argument("--format", choices=("onnx", "openvino"), required=True)
    x.add_argument("--model", type=Path, help="weights (default: the shipped models/gridpatrol-n.pt)")
    x.add_argument("--imgsz", type=int, help="input size in pixels (default: the shipped model's)")
    x.add_argument(
        "--out",
        type=Path,
        help="the .onnx file or *_openvino_model folder to write (default: build/exports/NAME.onnx or "
        "build/exports/NAME_openvino_model)",
    )
    x.set_defaults(handler=run_export)


def run_dataset_build(args: argparse.Namespace) -> int:
    from detect.model.dataset import DatasetError, build_dataset

    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be at least 1, got {args.limit}")
    try:
        result = build_dataset(args.recipe, args.out, cache_root=args.cache, limit=args.limit)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    images = ", ".join(f"{split} {n}" for split, n in result.manifest["images"].items())
    print(f"{result.data_yaml} ({images} images)")
    return 0


def run_dataset_samples(args: argparse.Namespace) -> int:
    from detect.model.dataset import DatasetError
    from detect.model.samples import fetch_samples

    try:
        result = fetch_samples(args.recipe, args.out, deb=args.deb)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    kept = len(result.files) - len(result.fetched)
    print(f"{result.out_dir}: {len(result.fetched)} fetched, {kept} already there")
    return 0


def _shipped_defaults(args: argparse.Namespace) -> None:
    """Fill --model / --imgsz left out with the shipped model and its size (imported here: torch-free
    commands never import detect)."""
    from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS

    if "model" in vars(args) and args.model is None:  # train has no --model
        args.model = SHIPPED_WEIGHTS
    if args.imgsz is None:
        args.imgsz = SHIPPED_IMGSZ


def run_train(args: argparse.Namespace) -> int:
    from detect.model.training import TrainingError, TrainSettings, export_weights, resume, train

    _shipped_defaults(args)
    settings = TrainSettings(
        data=args.data,
        base=args.base,
        imgsz=args.imgsz,
        epochs=args.epochs or 50,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        project=args.project,
        name=args.name,
        cache=None if args.no_cache else "ram",
        calibrate_bn=not args.no_calibrate_bn,
        teacher=args.teacher,
        distill_weight=args.distill_weight,
        scale=args.scale,
    )
    if args.workers < 0 or (args.epochs is not None and args.epochs < 1) or args.batch < 1:
        raise CommandError("--workers must be >= 0, --epochs and --batch >= 1")
    if args.ship_only and not args.ship:
        raise CommandError("--ship-only needs --ship PATH")
    try:
        if args.ship_only:
            run_dir = settings.run_dir()
        elif args.resume:
            run_dir = resume(settings.run_dir(), workers=args.workers, epochs=args.epochs)
        else:
            run_dir = train(settings)
        if args.ship:
            best = run_dir / "weights" / "best.pt"
            export_weights(best if best.exists() else run_dir / "weights" / "last.pt", args.ship)
            print(f"wrote {args.ship}")
    except TrainingError as exc:
        raise CommandError(str(exc)) from None
    print(f"run folder: {run_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from detect.model.evaluation import EvaluationError, evaluate, format_table

    _shipped_defaults(args)
    try:
        report = evaluate(args.model, args.data, imgsz=args.imgsz, conf=args.conf, split=args.split)
    except EvaluationError as exc:
        raise CommandError(str(exc)) from None
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from detect.backends import ExportError
    from detect.model.export import export_model

    _shipped_defaults(args)
    out = args.out
    if out is None:
        suffix = ".onnx" if args.format == "onnx" else "_openvino_model"
        out = DEFAULT_BUILD / "exports" / f"{args.model.stem}{suffix}"
    try:
        path = export_model(args.model, args.format, imgsz=args.imgsz, out=out)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    print(path)
    return 0
