"""`gridpatrol detect` (footage to incidents) and `gridpatrol config check`."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.cli import CommandError

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("configs/site.yaml")
# the years a --start-time may name: a camera clock set wrong still falls inside, a typo like 9999 does not
# (the footage's times past it would not be representable)
EARLIEST_START, LATEST_START = 1970, 2200


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="find incidents in footage (video file, image folder, camera or stream URL)",
        description="Run the detection pipeline over footage and write incidents.jsonl plus evidence images.",
    )
    p.add_argument(
        "input",
        help="video file (mp4, avi, mov, mkv), image folder, or a camera or stream URL "
        "(rtsp, rtmp, http(s) MJPEG / HLS / FLV, srt, udp, ...)",
    )
    p.add_argument(
        "--config", type=Path, help=f"site config (default: {DEFAULT_CONFIG}, relative to the current folder)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for incidents.jsonl and evidence/")
    p.add_argument("--camera", help="camera id from the config (default: its only camera)")
    p.add_argument("--source-id", help="id to record as the source (default: the camera id)")
    p.add_argument(
        "--start-time",
        help="wall-clock time of the first frame, ISO 8601 (e.g. 2026-11-29T08:00:00+08:00; "
        "without an offset: the camera's time zone)",
    )
    p.add_argument(
        "--track",
        type=Path,
        metavar="FILE",
        help="GPS track of the vehicle (GPX, NMEA or CSV): each incident gets the position at its frame; "
        "without --start-time the first frame is aligned with the track's first fix",
    )
    p.add_argument(
        "--track-tz",
        metavar="ZONE",
        help="time zone of CSV track times written without an offset, e.g. UTC or Asia/Shanghai "
        "(default: the camera's; GPX and NMEA times are UTC by their formats)",
    )
    p.add_argument(
        "--image-fps",
        type=float,
        help="frame rate of an image folder (needed unless every image has an EXIF DateTimeOriginal or "
        "every file name a time)",
    )
    p.add_argument("--fps", type=float, help="override analysis_fps (frames analysed per second of footage)")
    p.add_argument("--model", type=Path, help="override the config's model weights")
    p.add_argument(
        "--live-updates",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write each incident when it fires, before it ends (default: on for live URLs)",
    )
    p.set_defaults(handler=run_detect)

    c = subparsers.add_parser("config", help="site configuration tools")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    check = csub.add_parser("check", help="validate a site config; exits non-zero naming the bad key")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=run_config_check)


def _zone(name: str, option: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CommandError(f"{option}: unknown time zone {name!r} (e.g. UTC, Asia/Shanghai)") from None


def _load_config(path: Path):  # noqa: ANN202 - SiteConfig, imported lazily
    from detect.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def run_config_check(args: argparse.Namespace) -> int:
    config = _load_config(args.file)
    if not config.model.weights.exists():
        raise CommandError(f"{args.file}: model.weights: file not found: {config.model.weights}")
    zones = sum(len(c.zones) for c in config.cameras)
    print(
        f"{args.file}: ok ({len(config.categories)} categories, {len(config.cameras)} cameras, "
        f"{zones} zones, model {config.model.weights})"
    )
    return 0


def _config_path(given: Path | None) -> Path:
    """The site config to read: the one given, else configs/site.yaml under the current folder (the
    repository's); outside the repository that is missing, and the error says to pass --config."""
    if given is not None:
        return given
    if not DEFAULT_CONFIG.is_file():
        raise CommandError(
            f"no site config at {DEFAULT_CONFIG.resolve()} (the default, relative to the current folder); "
            "pass --config FILE"
        )
    return DEFAULT_CONFIG


def _check_input(text: str) -> None:
    """An input that cannot be read is reported before the model loads: a local one that is not there,
    a URL of a scheme FFmpeg does not read or of a shape it would misread (its password in the error
    masked, as the API and a runner word it: streams.urls.url_error). URLs are opened later."""
    from streams.urls import footage_url_problem, url_error, url_scheme

    if url_scheme(text) is not None:
        problem = footage_url_problem(text)
        if problem is not None:
            raise CommandError(url_error(text, problem))
        return
    if not Path(text).exists():
        raise CommandError(f"{text}: no such file or folder")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of incidents.jsonl, one by one (a line cut off by a stopped run is skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


class _LazyLines:
    """A JSON-lines file that is truncated and written only from the first open() (or write()) on; used
    as a context manager that closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = False
        self._fh: Any = None

    def open(self) -> None:
        if self._fh is None:
            try:
                self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by __exit__
            except OSError as exc:
                raise CommandError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            self.opened = True

    def write(self, line: str) -> None:
        self.open()
        self._fh.write(line + "\n")
        self._fh.flush()

    def __enter__(self) -> _LazyLines:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


def run_detect(args: argparse.Namespace) -> int:
    config = _load_config(_config_path(args.config))
    _check_input(str(args.input))
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out {out}: cannot make the output folder: {exc.strerror or exc}") from None
    updates = {}
    if args.fps is not None:
        if not math.isfinite(args.fps) or args.fps <= 0:
            raise CommandError(f"--fps must be a positive number, got {args.fps}")
        updates["analysis_fps"] = args.fps
    if args.model is not None:
        updates["model"] = config.model.model_copy(update={"weights": args.model.resolve()})
    if updates:
        config = config.model_copy(update=updates)
    start_time = None
    if args.start_time:
        try:
            start_time = datetime.fromisoformat(args.start_time)
        except ValueError:
            raise CommandError(f"--start-time: not an ISO 8601 time: {args.start_time!r}") from None
        if not EARLIEST_START <= start_time.year <= LATEST_START:
            raise CommandError(
                f"--start-time: {args.start_time!r} is not a camera clock's time "
                f"(years {EARLIEST_START}-{LATEST_START})"
            )

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from api.cli.contact_sheet import write_contact_sheet
    from detect.config import ConfigError
    from detect.pipeline import Progress, build_detector, detect_footage
    from detect.yolo import ModelError
    from streams import SourceError, TrackError, is_live_url, load_track, mask_credentials

    try:
        camera = config.camera(args.camera)
        track = None
        if args.track is not None:
            track = load_track(args.track, tz=_zone(args.track_tz or camera.timezone, "--track-tz"))
        detector = build_detector(config)
    except (ConfigError, ModelError, TrackError) as exc:
        raise CommandError(str(exc)) from None

    jsonl = out / "incidents.jsonl"
    # the previous run's incidents are replaced only once this run has read a frame: a source that does
    # not open (a mistyped path, a camera that is down) leaves them, and their contact sheet, as they were
    writer = _LazyLines(jsonl)
    bar = tqdm(unit="frame", desc="detect", dynamic_ncols=True, file=sys.stderr)

    def on_progress(p: Progress) -> None:
        if p.frames:
            writer.open()
        if p.fraction is not None and bar.total is None:
            bar.total = 100
        bar.n = round(p.fraction * 100, 1) if p.fraction is not None else p.frames
        bar.unit = "%" if p.fraction is not None else "frame"
        bar.set_postfix_str(
            f"frames={p.frames} ts={p.ts:.1f}s fps={p.fps:.1f} incidents={p.incidents}", refresh=False
        )
        bar.refresh()

    live = args.live_updates
    if live is None:
        live = is_live_url(str(args.input))
    ids: set[str] = set()
    try:
        # log lines go through the bar (tqdm.write), so a warning does not break it into two
        with writer, logging_redirect_tqdm():
            for incident in detect_footage(
                args.input,
                config,
                out_dir=out,
                camera_id=camera.id if config.cameras else None,
                start_time=start_time,
                source_id=args.source_id,
                image_fps=args.image_fps,
                on_progress=on_progress,
                detector=detector,
                emit_open=live,
                track=track,
            ):
                writer.write(json.dumps(incident.to_json(), ensure_ascii=False))
                ids.add(incident.id)
            writer.open()  # the footage ended without error: its incidents (maybe none) are the new list
        if bar.total is not None:  # the footage ended: the last frame's time is short of the length
            bar.n = bar.total
            bar.refresh()
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        bar.close()
        # also when the footage broke off or a live run was stopped: the incidents so far (the title masks a
        # camera URL's password)
        if writer.opened:
            sheet = write_contact_sheet(
                out, _read_jsonl(jsonl), title=f"gridpatrol: {mask_credentials(str(args.input))}"
            )
            print(f"contact sheet: {sheet}")
    print(f"{len(ids)} incident(s) written to {jsonl}")
    return 0
