"""`gridpatrol dataset build`, `train`, `evaluate`, `export` and `model promote|rollback`: the detector's
life cycle, the site's own retraining loop (issue 13) included.

Thin: the work is in detect.model's dataset, training, evaluation and export modules, all imported
inside the handlers so that other commands never pay for torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detect.model.promotion import PromotionRule, SetComparison, Verdict
    from detect.model.training import TrainSettings


class CommandError(Exception):
    """A problem the user can fix (bad recipe, missing weights): one line, exit status 1."""


log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "datasets" / "gridpatrol-street.yaml"
DEFAULT_SAMPLES_RECIPE = REPO / "datasets" / "street-samples.yaml"
DEFAULT_BUILD = REPO / "build"
DEFAULT_DATA = DEFAULT_BUILD / "datasets" / "gridpatrol-street" / "data.yaml"
DEFAULT_BASE = REPO.parent / "shared" / "weights" / "yolo26n-coco.pt"
DEFAULT_SITE_DIR = REPO / "models" / "site"  # the site's model (detect.model.promotion)


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
    coco = dsub.add_parser(
        "coco128",
        help="import COCO photos with human labels (the held-out set and the replay set) from a snapshot",
        description="Write the first 128 photos of COCO train2017 and val2017 with COCO's boxes into --out, "
        "read from a git folder of github.com/lightly-ai/coco128_yolo at the pinned commit (a clone, or the "
        "snapshot the project's tools fetch). Nothing is downloaded.",
    )
    coco.add_argument("--snapshot", type=Path, required=True, help="git folder of the repository")
    coco.add_argument("--out", type=Path, default=REPO / "shared" / "coco128", help="default: %(default)s")
    coco.set_defaults(handler=run_dataset_coco128)
    pack = dsub.add_parser(
        "pack",
        help="copy a built set into one compact folder (photos shrunk, WebP) to train on another machine",
        description="Write a built set's photos, shrunk to --max-side and re-encoded as WebP, with their "
        "labels and the train list's repeats, into --out, with a data.yaml naming only paths inside it: a "
        "set that trains where ../shared is not (a GPU machine).",
    )
    pack.add_argument("data", type=Path, help="a built data.yaml (gridpatrol dataset build)")
    pack.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    pack.add_argument(
        "--max-side", type=int, default=480, help="longest side in pixels (default: %(default)s)"
    )
    pack.add_argument("--quality", type=int, default=80, help="WebP quality 1-100 (default: %(default)s)")
    pack.set_defaults(handler=run_dataset_pack)

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
        help="distil from these weights while training (e.g. the COCO base: keeps what it knows of the kinds "
        "both models have); how: --distill",
    )
    t.add_argument(
        "--distill",
        choices=("features", "logits"),
        help="features: ultralytics' score-weighted neck-feature distillation; logits: the teacher's class "
        "scores and boxes on every anchor, for the classes both models have (default with --teacher: "
        "features; without one, refused)",
    )
    t.add_argument(
        "--distill-weight",
        type=float,
        help="weight of the distillation loss (default: 6 for features, 1 for logits)",
    )
    t.add_argument(
        "--hours",
        type=float,
        help="train for this long instead of --epochs (the schedule is fitted to it after the first epoch)",
    )
    t.add_argument(
        "--scale",
        type=float,
        help="random zoom gain of the training images (ultralytics' scale; default 0.5: zoom 0.5x-1.5x)",
    )
    t.add_argument(
        "--add-dataset",
        type=Path,
        action="append",
        metavar="DIR",
        help="merge a review export (gridpatrol dataset from-reviews) into --data; repeatable. Its frames "
        "are pseudo-labelled by the site's model except over operators' and rejected boxes; the merged set "
        "is written to the run folder's dataset/",
    )
    t.add_argument(
        "--pseudo-model",
        type=Path,
        help="weights that pseudo-label the review frames (default: the site's model, see `model promote`)",
    )
    t.add_argument(
        "--pseudo-conf",
        type=float,
        help="minimum score of a review frame's pseudo-label (default: the recipe's, from --data's manifest)",
    )
    t.add_argument("--site-dir", type=Path, help="the site's model folder (default: models/site)")
    t.add_argument(
        "--pseudo-cache",
        type=Path,
        default=DEFAULT_BUILD / "cache" / "pseudo-labels",
        help="pseudo-label cache of the review frames (default: %(default)s)",
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
    e.add_argument(
        "--against",
        type=Path,
        metavar="CURRENT",
        help="compare --model (the candidate) with these weights: per-class AP50 side by side on --data's "
        "val split and --reviews' val split, and the promotion rule's verdict",
    )
    e.add_argument(
        "--reviews", type=Path, metavar="DIR", help="with --against: a review export's val split too"
    )
    _rule_arguments(e)
    e.set_defaults(handler=run_evaluate)

    m = subparsers.add_parser(
        "model", help="the site's model: promote a candidate, roll back, interpolate one towards the base"
    )
    msub = m.add_subparsers(dest="model_command", metavar="ACTION")
    promote = msub.add_parser(
        "promote",
        help="make a candidate the site's model when not worse on the shipped and the reviews' val sets",
        description="Score the candidate and the site's model on --data's val split and --reviews' val "
        "split, print the figures and the rule, and copy the candidate to the site folder's current.pt when "
        "the rule holds (the previous weights kept for `model rollback`); every decision recorded in "
        "promotions.jsonl there. Refused: exit status 1 with the reason.",
    )
    promote.add_argument("candidate", type=Path, help="the candidate's weights (.pt)")
    promote.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="dataset yaml (default: %(default)s)"
    )
    promote.add_argument(
        "--reviews", type=Path, metavar="DIR", help="a review export whose val split counts too"
    )
    promote.add_argument("--imgsz", type=int, help="input size in pixels (default: the shipped model's)")
    promote.add_argument(
        "--conf", type=float, default=0.25, help="operating threshold (default: %(default)s)"
    )
    promote.add_argument("--site-dir", type=Path, help="the site's model folder (default: models/site)")
    promote.add_argument(
        "--config", type=Path, help="site config whose model.weights should name the site's model (checked)"
    )
    _rule_arguments(promote)
    promote.set_defaults(handler=run_model_promote)
    rollback = msub.add_parser(
        "rollback",
        help="restore the site's previous model (undo the last promotion)",
        description="Put back the weights that were the site's model before the last promotion still in "
        "effect; recorded in promotions.jsonl.",
    )
    rollback.add_argument("--site-dir", type=Path, help="the site's model folder (default: models/site)")
    rollback.set_defaults(handler=run_model_rollback)
    soup = msub.add_parser(
        "soup",
        help="a candidate between the model and the COCO base it was fine-tuned from (no training)",
        description="Write weights ALPHA of the way from --model towards --base (weight interpolation: "
        "what fine-tuning made the model forget comes back in part, same network and speed; "
        "detect.model.soup). Score it with `gridpatrol evaluate --against` or `model promote` it.",
    )
    soup.add_argument("--alpha", type=float, required=True, help="0 = the model, 1 = the base")
    soup.add_argument(
        "--class-alpha",
        type=float,
        help="for the score rows of the classes both know (default: --alpha); other classes keep theirs",
    )
    soup.add_argument(
        "--model", type=Path, help="fine-tuned weights (default: the shipped models/gridpatrol-n.pt)"
    )
    soup.add_argument(
        "--base",
        type=Path,
        default=DEFAULT_BASE,
        help="the weights it was fine-tuned from (default: %(default)s)",
    )
    soup.add_argument(
        "--row",
        action="append",
        default=[],
        metavar="CLASS=ALPHA",
        help="one class's score row at its own alpha (repeatable), e.g. --row 'dining table=1'",
    )
    soup.add_argument(
        "--layers",
        action="append",
        default=[],
        metavar="FIRST-LAST=ALPHA",
        help="layers of the network (indexes in its list, both ends included) at their own alpha "
        "(repeatable), e.g. --layers 0-10=1 (YOLO26n: 0-10 backbone, 11-22 neck, 23 head)",
    )
    soup.add_argument(
        "--trim",
        action="append",
        default=[],
        metavar="FIRST-LAST=KEEP",
        help="in these layers keep only the largest fraction KEEP of each weight tensor's change from the "
        "base, the rest put back to the base's (repeatable; BatchNorms and score rows untrimmed), "
        "e.g. --trim 0-23=0.3",
    )
    soup.add_argument("--out", type=Path, required=True, help="the .pt file to write")
    soup.set_defaults(handler=run_model_soup)
    twin = msub.add_parser(
        "twin",
        help="the COCO base whole, with class branches added for the model's other classes (to train)",
        description="Write --base (the COCO model) with, beside each of its class branches, an added branch "
        "scoring the classes of --model that the base does not know (garbage...); the kinds both know keep "
        "the base's own outputs (detect.model.twin). `gridpatrol train --base OUT --no-calibrate-bn` then "
        "trains the added branches only, everything else frozen.",
    )
    twin.add_argument(
        "--model",
        type=Path,
        help="weights whose classes to give it (default: the shipped models/gridpatrol-n.pt)",
    )
    twin.add_argument(
        "--base", type=Path, default=DEFAULT_BASE, help="the COCO model to keep whole (default: %(default)s)"
    )
    twin.add_argument(
        "--init",
        choices=("base", "current"),
        default="base",
        help="start the added branches as copies of the base's class branch (new score rows) or of --model's "
        "(its rows) (default: %(default)s)",
    )
    twin.add_argument("--out", type=Path, required=True, help="the .pt file to write")
    twin.set_defaults(handler=run_model_twin)

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


def _rule_arguments(parser: argparse.ArgumentParser) -> None:
    from_rule = "(default: %(default)s; see detect.model.promotion.PromotionRule)"
    parser.add_argument(
        "--map50-tolerance",
        type=float,
        default=0.01,
        help="the candidate's mAP50 on each set may be this much below the current's (negative: it must gain "
        f"that much) {from_rule}",
    )
    parser.add_argument(
        "--class-ap50-drop",
        type=float,
        default=0.05,
        help=f"no class with labels in a set may lose more AP50 than this {from_rule}",
    )


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


def run_dataset_pack(args: argparse.Namespace) -> int:
    from detect.model.dataset import DatasetError
    from detect.model.pack import pack_dataset

    try:
        summary = pack_dataset(args.data, args.out, max_side=args.max_side, quality=args.quality)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    print(summary.format())
    return 0


def run_dataset_coco128(args: argparse.Namespace) -> int:
    from detect.model.coco_subset import import_coco128
    from detect.model.dataset import DatasetError

    try:
        result = import_coco128(args.snapshot, args.out)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    photos = ", ".join(f"{split} {n}" for split, n in result.images.items())
    print(f"{result.out_dir}: {photos} photos ({'imported' if result.imported else 'there already'})")
    return 0


def _shipped_defaults(args: argparse.Namespace) -> None:
    """Fill --model / --imgsz left out with the shipped model and its size (imported here: torch-free
    commands never import detect)."""
    from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS

    if "model" in vars(args) and args.model is None:  # train has no --model
        args.model = SHIPPED_WEIGHTS
    if args.imgsz is None:
        args.imgsz = SHIPPED_IMGSZ


def _check_imgsz(args: argparse.Namespace) -> None:
    """CommandError naming --imgsz when no model can be scored at it (evaluation.check_imgsz)."""
    from detect.model.evaluation import EvaluationError, check_imgsz

    try:
        check_imgsz(args.imgsz, "--imgsz")
    except EvaluationError as exc:
        raise CommandError(str(exc)) from None


def run_train(args: argparse.Namespace) -> int:
    from detect.model.training import (
        TrainingError,
        TrainSettings,
        check_settings,
        export_weights,
        resume,
        train,
    )

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
        distill=args.distill,
        distill_weight=args.distill_weight,
        hours=args.hours,
        scale=args.scale,
    )
    if args.workers < 0 or (args.epochs is not None and args.epochs < 1) or args.batch < 1:
        raise CommandError("--workers must be >= 0, --epochs and --batch >= 1")
    try:
        check_settings(settings)  # before a merge of --add-dataset or a resume starts
    except TrainingError as exc:
        raise CommandError(str(exc)) from None
    if args.ship_only and not args.ship:
        raise CommandError("--ship-only needs --ship PATH")
    if args.add_dataset and (args.resume or args.ship_only):
        raise CommandError(
            "--add-dataset starts a new run (a resumed run keeps the merged set it started with)"
        )
    try:
        if args.ship_only:
            run_dir = settings.run_dir()
        elif args.resume:
            run_dir = resume(settings.run_dir(), workers=args.workers, epochs=args.epochs)
        else:
            if args.add_dataset:
                settings = _with_reviews(settings, args)
            run_dir = train(settings)
        if args.ship:
            best = run_dir / "weights" / "best.pt"
            export_weights(best if best.exists() else run_dir / "weights" / "last.pt", args.ship)
            print(f"wrote {args.ship}")
    except TrainingError as exc:
        raise CommandError(str(exc)) from None
    print(f"run folder: {run_dir}")
    return 0


def _with_reviews(settings: TrainSettings, args: argparse.Namespace) -> TrainSettings:
    """settings training on --data merged with the --add-dataset exports, written to the run folder's
    dataset/ (inside the run: a resumed run finds it where it started)."""
    from dataclasses import replace

    from detect.model.promotion import SiteModels
    from detect.model.training import merge_review_sets, refuse_existing_run

    refuse_existing_run(settings)
    summary = merge_review_sets(
        settings.data,
        args.add_dataset,
        settings.run_dir() / "dataset",
        pseudo_model=args.pseudo_model or SiteModels(args.site_dir or DEFAULT_SITE_DIR).current(),
        cache_root=args.pseudo_cache,
        pseudo_conf=args.pseudo_conf,
    )
    print(summary.format())
    return replace(settings, data=summary.data_yaml)


def run_evaluate(args: argparse.Namespace) -> int:
    from detect.model.evaluation import EvaluationError, evaluate, format_table

    _shipped_defaults(args)
    _check_imgsz(args)
    if args.json is not None:
        _check_writable(args.json, "--json")
    if args.against is not None:
        return _compare(args)
    if args.reviews is not None:
        raise CommandError("--reviews needs --against CURRENT (a comparison)")
    try:
        report = evaluate(args.model, args.data, imgsz=args.imgsz, conf=args.conf, split=args.split)
    except EvaluationError as exc:
        raise CommandError(str(exc)) from None
    print(format_table(report))
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0


def _check_writable(path: Path, option: str) -> None:
    """CommandError unless a file could be written at path (checked before long work that ends by
    writing it): not a folder, below a folder (or folders still to make) that may be written to."""
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder; name a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise CommandError(f"{option} {path}: cannot write there (permission denied)")
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: cannot write in {folder} (permission denied)")


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--json {path}: cannot write it ({exc.strerror or exc})") from None
    print(f"wrote {path}")


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


def _rule(args: argparse.Namespace) -> PromotionRule:
    from detect.model.promotion import PromotionRule

    if not -1.0 <= args.map50_tolerance <= 1.0 or not 0.0 <= args.class_ap50_drop <= 1.0:
        raise CommandError(
            "--map50-tolerance must be in [-1, 1] (negative: ask for a gain), --class-ap50-drop in [0, 1]"
        )
    return PromotionRule(map50_tolerance=args.map50_tolerance, class_ap50_drop=args.class_ap50_drop)


def _comparison(
    args: argparse.Namespace, candidate: Path, current: Path
) -> tuple[list[SetComparison], PromotionRule, Verdict]:
    from detect.model.evaluation import EvaluationError
    from detect.model.promotion import PromotionError, compare, format_comparison, judge

    rule = _rule(args)
    try:
        comparisons, notes = compare(
            candidate, current, data=args.data, reviews=args.reviews, imgsz=args.imgsz, conf=args.conf
        )
    except (EvaluationError, PromotionError) as exc:
        raise CommandError(str(exc)) from None
    verdict = judge(comparisons, rule, notes)
    print(format_comparison(comparisons, rule, verdict))
    return comparisons, rule, verdict


def _compare(args: argparse.Namespace) -> int:
    comparisons, rule, verdict = _comparison(args, args.model, args.against)
    if args.json:
        figures = {
            "rule": {"map50_tolerance": rule.map50_tolerance, "class_ap50_drop": rule.class_ap50_drop},
            "sets": {c.name: c.figures() for c in comparisons},
            "accepted": verdict.accepted,
            "reasons": verdict.reasons,
            "notes": verdict.notes,
        }
        _write_json(args.json, figures)
    return 0


def run_model_promote(args: argparse.Namespace) -> int:
    from detect.model.promotion import PromotionError, SiteModels, sha256_of

    _shipped_defaults(args)
    _check_imgsz(args)
    _rule(args)
    configured = _configured_weights(args.config)  # a bad --config is named before anything is changed
    site = SiteModels(args.site_dir or DEFAULT_SITE_DIR)
    if not args.candidate.is_file():
        raise CommandError(f"candidate weights not found: {args.candidate}")
    try:
        site.check()
    except PromotionError as exc:
        raise CommandError(str(exc)) from None
    if sha256_of(args.candidate) == sha256_of(site.current()):
        raise CommandError(f"{args.candidate} is the site's model already ({site.current()})")
    comparisons, rule, verdict = _comparison(args, args.candidate, site.current())
    try:
        record = site.promote(args.candidate, comparisons, rule, verdict)
    except PromotionError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"promoted: {site.current_path} is now {args.candidate} (sha256 {record['after_sha256'][:16]}; "
        f"was {record['before_sha256'][:16]}, kept for `gridpatrol model rollback`); "
        f"recorded in {site.log_path}"
    )
    _point_config_at(args.config, configured, site.current_path)
    return 0


def run_model_soup(args: argparse.Namespace) -> int:
    from detect.model.soup import SoupError, interpolate
    from detect.yolo import SHIPPED_WEIGHTS

    rows: dict[str, float] = {}
    for text in args.row:
        name, _, value = text.rpartition("=")
        try:
            rows[name.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--row {text}: expected CLASS=ALPHA, e.g. 'dining table=1'") from None
        if not name.strip():
            raise CommandError(f"--row {text}: expected CLASS=ALPHA, e.g. 'dining table=1'")
    layers = _layer_values(args.layers, "--layers", "ALPHA", "0-10=1")
    keeps = _layer_values(args.trim, "--trim", "KEEP", "0-23=0.3")
    try:
        made = interpolate(
            args.model or SHIPPED_WEIGHTS,
            args.base,
            args.out,
            alpha=args.alpha,
            class_alpha=args.class_alpha,
            row_alphas=rows,
            layer_alphas=layers,
            layer_keeps=keeps,
        )
    except SoupError as exc:
        raise CommandError(str(exc)) from None
    own = "".join(f", {name} at {value:g}" for name, value in made.row_alphas.items())
    by_layer = "".join(
        f", layer{'s' if '-' in span else ''} {span} at {value:g}"
        for span, value in _spans(made.layer_alphas)
    )
    by_layer += "".join(
        f", layer{'s' if '-' in span else ''} {span} keeping {value:g} of their change"
        for span, value in _spans(made.layer_keeps)
    )
    print(
        f"wrote {made.out}: {made.alpha:g} of the way to {args.base}{by_layer} (score rows of the "
        f"{len(made.shared_classes)} shared classes at {made.class_alpha:g}{own}); score it with "
        f"`gridpatrol evaluate --model {made.out} --against CURRENT`"
    )
    return 0


def run_model_twin(args: argparse.Namespace) -> int:
    from detect.model.twin import TwinError, add_branches
    from detect.yolo import SHIPPED_WEIGHTS

    try:
        made = add_branches(args.model or SHIPPED_WEIGHTS, args.base, args.out, init=args.init)
    except TwinError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"wrote {made.out}: {args.base} whole for {', '.join(made.kept)}; added class branches for "
        f"{', '.join(made.added)} (started from the {made.init}'s); train them with `gridpatrol train --base "
        f"{made.out} --no-calibrate-bn`"
    )
    return 0


def _spans(alphas: dict[int, float]) -> list[tuple[str, float]]:
    """Layer alphas as runs of neighbouring layers with one alpha: [("0-4", 0.75), ("23", 1.0)]."""
    runs: list[list[Any]] = []
    for index, value in sorted(alphas.items()):
        if runs and runs[-1][1] == index - 1 and runs[-1][2] == value:
            runs[-1][1] = index
        else:
            runs.append([index, index, value])
    return [(f"{a}-{b}" if a != b else f"{a}", value) for a, b, value in runs]


def _layer_values(texts: list[str], option: str, what: str, example: str) -> dict[int, float]:
    """`option` FIRST-LAST=VALUE (or INDEX=VALUE) options as layer index -> value; CommandError naming
    the option that is not of that form or that names a layer twice."""
    values: dict[int, float] = {}
    for text in texts:
        span, _, given = text.partition("=")
        first, _, last = span.partition("-")
        try:
            indexes = range(int(first), int(last or first) + 1)
            value = float(given)
        except ValueError:
            raise CommandError(f"{option} {text}: expected FIRST-LAST={what}, e.g. {example}") from None
        if not indexes:
            raise CommandError(f"{option} {text}: {first} is after {last}")
        twice = sorted(set(indexes) & values.keys())
        if twice:
            raise CommandError(f"{option} {text}: layer {twice[0]} is given {what.lower()} twice")
        values.update(dict.fromkeys(indexes, value))
    return values


def run_model_rollback(args: argparse.Namespace) -> int:
    from detect.model.promotion import PromotionError, SiteModels

    site = SiteModels(args.site_dir or DEFAULT_SITE_DIR)
    try:
        record = site.rollback()
    except PromotionError as exc:
        raise CommandError(str(exc)) from None
    print(
        f"rolled back: {site.current_path} is {record['after_sha256'][:16]} again (was "
        f"{record['before_sha256'][:16]}); recorded in {site.log_path}"
    )
    return 0


def _configured_weights(config: Path | None) -> Path | None:
    """The weights a site config's model.weights names (None without a config); CommandError naming
    the file when it cannot be read."""
    from detect.config import ConfigError, load_config

    if config is None:
        return None
    try:
        return Path(load_config(config).model.weights).resolve()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _point_config_at(config: Path | None, named: Path | None, weights: Path) -> None:
    """Say whether the site config (which names `named`) runs the site's model, and the line to set
    when it does not."""
    if named == weights.resolve():
        print(f"{config}: model.weights names it already")
        return
    print(
        f"to run it, set in the site config (configs/site.yaml keeps the shipped weights): model: weights: "
        f"{weights.resolve()}"
    )
