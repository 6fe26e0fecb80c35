"""The review loop's effect, measured with a simulated operator on photos that people labelled.

No district has reviewed real frames yet (issue 13), so this writes the export that `gridpatrol dataset
from-reviews` would write if a careful operator had reviewed every photo of a human-labelled set: the
current model's boxes (score >= --conf) are what the operator sees; a box that matches a person's box of
the same class (IoU >= 0.5) is confirmed as the model drew it, one that matches none is rejected, and each
person's box the model missed is drawn by the operator with its human coordinates. Photos are dealt to
--cameras pretend cameras in file order, so the export's split by camera keeps whole cameras out of
training, as it does for a site.

Then the loop's own commands train, compare and judge a candidate (printed at the end; about 20 minutes
an epoch on the 2-core CPU at 480):

    .venv/bin/python benchmarks/review_loop.py [--data build/datasets/coco-train128/data.yaml]
        [--model models/gridpatrol-n.pt] [--out build/reviews-simulated] [--cameras 32]

The default set is COCO train2017's first 128 photos with COCO's boxes (datasets/coco-train128.yaml;
build it with `gridpatrol dataset build datasets/coco-train128.yaml` after `gridpatrol dataset coco128`).
The operator here never errs and speaks about every box in the frame: an upper bound on what a real
operator's decisions give, and on photos that are not street-camera frames.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detect.model.from_reviews import ReviewBox, ReviewFrame, write_dataset  # noqa: E402

log = logging.getLogger("benchmarks.review_loop")

IOU_MATCH = 0.5


def _box(xyxy: Any, name: str) -> ReviewBox:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return ReviewBox(x1, y1, x2, y2, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO / "build/datasets/coco-train128/data.yaml")
    parser.add_argument("--split", default="val", help="the split of --data whose photos are reviewed")
    parser.add_argument("--model", type=Path, default=REPO / "models/gridpatrol-n.pt")
    parser.add_argument("--out", type=Path, default=REPO / "build/reviews-simulated")
    parser.add_argument("--cameras", type=int, default=32)
    parser.add_argument("--imgsz", type=int, default=480)
    parser.add_argument("--conf", type=float, default=0.25)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import cv2
    import numpy as np
    from tqdm import tqdm

    from detect import SetupError
    from detect.model.evaluation import box_iou, load_data, read_labels
    from detect.yolo import load_yolo

    if args.cameras < 2:
        parser.error("--cameras must be at least 2 (the export needs a camera for validation)")
    try:
        names, images = load_data(args.data, args.split)
        model = load_yolo(args.model)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not images:
        print(f"error: {args.data} has no {args.split} photos", file=sys.stderr)
        return 1
    model_ids = {name: i for i, name in model.names.items()}
    missing = [n for n in names if n not in model_ids]
    if missing:
        print(f"error: {args.model} has no class {missing}", file=sys.stderr)
        return 1
    keep = [model_ids[n] for n in names]
    per_camera = -(-len(images) // args.cameras)
    frames: list[ReviewFrame] = []
    raw: dict[str, bytes] = {}
    tally: Counter[str] = Counter()
    decided = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for n, image in enumerate(tqdm(images, desc="simulated reviews", unit="photo", disable=None)):
        data = image.read_bytes()
        picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if picture is None:
            log.warning("%s: not an image, skipped", image)
            continue
        height, width = picture.shape[:2]
        truth = read_labels(image, width, height)
        shown = model.predict([picture], imgsz=args.imgsz, conf=args.conf, iou=0.7, classes=keep)[0]
        shown_names = [model.names[int(c)] for c in shown.cls]
        order = np.argsort(-shown.scores)
        iou = box_iou(shown.xyxy, truth.xyxy) if len(shown) and len(truth.xyxy) else None
        taken: set[int] = set()
        labels: list[ReviewBox] = []
        rejected: list[ReviewBox] = []
        for i in order:
            best = -1
            if iou is not None:
                for j in np.argsort(-iou[i]):
                    if iou[i, j] < IOU_MATCH:
                        break
                    if j not in taken and names[int(truth.cls[j])] == shown_names[i]:
                        best = int(j)
                        break
            box = _box(shown.xyxy[i], shown_names[i])
            if best >= 0:
                taken.add(best)
                labels.append(box)
                tally["confirmed"] += 1
            else:
                rejected.append(box)
                tally["rejected"] += 1
        drawn = [
            _box(truth.xyxy[j], names[int(truth.cls[j])]) for j in range(len(truth.xyxy)) if j not in taken
        ]
        tally["drawn"] += len(drawn)
        decisions = (("confirm",) if taken else ("reject",) if rejected and not drawn else ()) + (
            ("boxes",) if drawn else ()
        )
        if not decisions:  # nothing shown and nothing there: no case would have asked about it
            tally["not reviewed"] += 1
            continue
        sha = hashlib.sha256(data).hexdigest()
        raw[sha] = data
        frames.append(
            ReviewFrame(
                case_id=n + 1,
                sighting_id=n + 1,
                camera_id=f"simulated-{n // per_camera:02d}",
                frame_sha256=sha,
                lat=None,
                lon=None,
                decided_at=decided,
                decisions=decisions,
                labels=tuple(labels + drawn),
                rejected=tuple(rejected),
            )
        )
    try:
        summary = write_dataset(
            frames,
            read_image=raw.get,
            class_names=names,
            out=args.out,
            source=f", simulated from {args.data}",
        )
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"simulated operator on {len(images)} photos of {args.data} ({args.split}): boxes confirmed "
        f"{tally['confirmed']}, rejected {tally['rejected']}, drawn {tally['drawn']}; photos with nothing "
        f"shown or labelled {tally['not reviewed']}"
    )
    print(summary.format())
    print(
        "next:\n"
        f"  gridpatrol train --add-dataset {args.out} --base {args.model} --no-calibrate-bn "
        "--epochs 1 --name review-loop --ship build/review-loop.pt\n"
        f"  gridpatrol evaluate --model build/review-loop.pt --against {args.model} --reviews {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
