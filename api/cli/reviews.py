"""`gridpatrol dataset from-reviews`: operators' review decisions as a YOLO training set (issue 13).

The `dataset` command group is the model workshop's (detect.model.commands); this action reads the
case service's database and evidence store, so it lives here and joins that group. The decisions
are replayed by api.cases.review_labels, the dataset written by detect.model.from_reviews (imported
in the handler: other commands never load OpenCV).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from api.cli import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    dataset = subparsers.choices.get("dataset")
    if dataset is None:  # the workshop's commands are not installed
        return
    actions = next(a for a in dataset._actions if isinstance(a, argparse._SubParsersAction))
    p = actions.add_parser(
        "from-reviews",
        help="export operators' review decisions (confirm, reject, boxes) as a YOLO dataset",
        description="Export the raw frames of cases reviewed in the case service as a YOLO dataset: "
        "confirmed detections and operators' corrected or added boxes labelled, detections rejected as "
        "false left unlabelled (hard negatives); near-identical frames of a camera at one place kept "
        "once; split by camera (no val frame from a camera seen in training). Reads the database "
        "and evidence store of GRIDPATROL_* settings.",
    )
    p.add_argument(
        "--since", required=True, help="decisions from this UTC date (YYYY-MM-DD) or ISO 8601 time on"
    )
    p.add_argument(
        "--until",
        help="decisions up to this UTC date, inclusive (YYYY-MM-DD), or ISO 8601 time (default: now)",
    )
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder (or an earlier export)")
    p.add_argument(
        "--config",
        type=Path,
        help="site config whose `kinds` maps model classes to object kinds (default: GRIDPATROL_SITE_CONFIG)",
    )
    p.add_argument(
        "--recipe",
        type=Path,
        help="training recipe whose class list (and order) data.yaml takes (default: the shipped one)",
    )
    p.add_argument(
        "--new-class",
        action="append",
        default=[],
        metavar="NAME",
        help="keep operators' boxes of this class, which the recipe lacks (e.g. stall), as a new class after "
        "the recipe's; repeatable, in a fixed order. `train --add-dataset` then grows the model by it",
    )
    p.add_argument("--database-url", help="default: GRIDPATROL_DATABASE_URL")
    p.set_defaults(handler=run_from_reviews)


def parse_when(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """A date (its midnight UTC; with end_of_day the next midnight, so the day is included) or an ISO
    8601 time (naive: UTC), as naive UTC; CommandError naming the option otherwise."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None and len(text.strip()) == 10:
        start = datetime.combine(day, time())
        if not end_of_day:
            return start
        return start + timedelta(days=1) if day < date.max else datetime.max  # 9999-12-31: to its end
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option}: '{text}' is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if when.tzinfo is None:
        return when
    try:
        return when.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise CommandError(f"{option}: '{text}' is out of range in UTC (years 1 to 9999)") from None


def run_from_reviews(args: argparse.Namespace) -> int:
    from api.cases.review_labels import read_frame, reviewed_frames
    from api.cli.service import _services
    from detect.config import ConfigError, load_config
    from detect.model.commands import DEFAULT_RECIPE
    from detect.model.dataset import DatasetError, load_recipe
    from detect.model.from_reviews import FromReviewsError, ReviewBox, ReviewFrame, write_dataset

    since = parse_when(args.since, option="--since")
    until = (
        parse_when(args.until, option="--until", end_of_day=True)
        if args.until
        else datetime.now(UTC).replace(tzinfo=None)
    )
    if until <= since:
        raise CommandError(f"--until ({args.until or 'now'}) is not after --since ({args.since})")
    try:
        recipe = load_recipe(args.recipe or DEFAULT_RECIPE).recipe
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    known = [n for n in args.new_class if n in recipe.classes]
    odd = [n for n in args.new_class if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_ -]{0,31}", n)]
    if odd:
        raise CommandError(
            f"--new-class: {', '.join(map(repr, odd))}: a class name is a letter, then letters, digits, "
            "'_', '-' or spaces (at most 32), as the recipe's are (dining table)"
        )
    if known or len(set(args.new_class)) != len(args.new_class) or "" in args.new_class:
        raise CommandError(
            f"--new-class: {known or args.new_class} must be new, distinct class names (the recipe has "
            f"{', '.join(recipe.classes)})"
        )
    services = _services(args)  # an existing database: an export creates none
    try:
        try:
            kinds = dict(load_config(args.config or services.settings.site_config).kinds)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        with services.factory() as session:
            found = reviewed_frames(session, since=since, until=until, classes=kinds)
        span = f"{since.isoformat()} to {until.isoformat()} UTC"
        if not found.frames:
            raise CommandError(
                f"no reviewed frames with a decision from {span} "
                f"({found.undecided} undecided, {found.without_frame} without a raw frame, "
                f"{len(found.damaged)} with a review label that cannot be read)"
            )
        frames = [
            ReviewFrame(
                case_id=f.case_id,
                sighting_id=f.sighting_id,
                camera_id=f.camera_id,
                frame_sha256=f.frame_sha256,
                lat=f.lat,
                lon=f.lon,
                decided_at=f.decided_at,
                decisions=f.decisions,
                labels=tuple(ReviewBox(b.x1, b.y1, b.x2, b.y2, b.class_name) for b in f.labels),
                rejected=tuple(ReviewBox(b.x1, b.y1, b.x2, b.y2, b.class_name) for b in f.rejected),
            )
            for f in found.frames
        ]
        unmapped = sorted({f.unmapped_kind for f in found.frames if f.unmapped_kind})
        try:
            summary = write_dataset(
                frames,
                read_image=lambda sha: read_frame(services.store, sha),
                class_names=[*recipe.classes, *args.new_class],
                out=args.out,
                source=f" from decisions {span}",
            )
        except FromReviewsError as exc:
            raise CommandError(str(exc)) from None
    finally:
        services.close()
    print(summary.format())
    if found.undecided:
        print(f"  frames left out, undecided (no verdict, detection not corrected): {found.undecided}")
    if found.damaged:
        print(f"  frames left out, a review label cannot be read (warned above): {len(found.damaged)}")
    if unmapped:
        print(f"  detections left unlabelled, their kind has no model class in the site config: {unmapped}")
    return 0
