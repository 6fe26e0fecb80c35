"""`gridpatrol camera ...`: the live cameras the case service manages (api.cameras), validated as
the site config validates cameras; `camera import` takes the site config's live cameras once."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from api.cli import CommandError
from api.cli.service import _services, _table, _when


def _validation_message(exc: Any) -> str:
    """A pydantic ValidationError as 'field.path: reason' lines."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "camera"
        lines.append(f"{where}: {error['msg']}")
    return "; ".join(lines)


def _zones_from(path: str) -> list[Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"--zones-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # GBK, UTF-16: saved by an editor in another encoding
        reason = f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
        raise CommandError(f"--zones-file {path}: {reason}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"--zones-file {path}: not YAML or JSON ({exc})") from None
    if isinstance(data, dict) and "zones" in data:
        data = data["zones"]
    if not isinstance(data, list):
        raise CommandError(f"--zones-file {path}: expected a list of zones (or a mapping with `zones:`)")
    return data


def _position(args: argparse.Namespace) -> dict[str, float] | None:
    if args.lat is None and args.lon is None:
        return None
    if args.lat is None or args.lon is None:
        raise CommandError("give both --lat and --lon")
    return {"lat": args.lat, "lon": args.lon}


Said = list[Callable[[], None]]  # what a change says it did (its `admin action:` lines, its output)


def _store(handler: Any, *, create: bool = False) -> Any:
    """Run a registry change, handler(session, args, said), in a committed session; its input errors
    become the command's error. What it did (its `admin action:` lines, what it prints) it puts in
    `said`, which runs once the commit succeeded: a change that failed to commit is neither logged as
    done nor said to be. `create`: the command may create the database (adding cameras sets a site
    up; editing one needs an existing database)."""
    from api.errors import InputError

    def run(args: argparse.Namespace) -> int:
        services = _services(args, create=create)
        said: Said = []
        with services.factory() as session:
            try:
                code = handler(session, args, said)
            except InputError as exc:
                raise CommandError(str(exc)) from None
            session.commit()
        for say in said:
            say()
        return int(code)

    return run


def _add(session: Any, args: argparse.Namespace, said: Said) -> int:
    from pydantic import ValidationError

    from api.admin_log import camera_added, local_operator
    from api.cameras import registry
    from api.http.routes.cameras import CameraIn
    from streams.urls import public_stream

    body: dict[str, Any] = {"id": args.camera_id, "stream_url": args.url, "enabled": not args.disabled}
    for key, value in (
        ("name", args.name),
        ("grid_cell_id", args.cell),
        ("team", args.team),
        ("timezone", args.timezone),
        ("active_hours", args.active_hours),
        ("position", _position(args)),
    ):
        if value is not None:
            body[key] = value
    if args.zones_file:
        body["zones"] = _zones_from(args.zones_file)
    try:
        spec = CameraIn.model_validate(body).spec()
    except ValidationError as exc:
        raise CommandError(f"camera {args.camera_id}: {_validation_message(exc)}") from None
    camera = registry.add_camera(session, spec)
    said.append(partial(camera_added, local_operator(), camera))
    said.append(
        partial(
            print, f"camera {spec.id} added ({public_stream(spec.stream_url)}, {len(spec.zones)} zone(s))"
        )
    )
    return 0


def _edit(session: Any, args: argparse.Namespace, said: Said) -> int:
    from pydantic import ValidationError

    from api.admin_log import camera_edited, local_operator
    from api.cameras import registry
    from api.http.routes.cameras import CameraPatch

    body: dict[str, Any] = {}
    for key, value in (
        ("stream_url", args.url),
        ("name", args.name),
        ("grid_cell_id", args.cell),
        ("team", args.team),
        ("timezone", args.timezone),
        ("active_hours", args.active_hours),
    ):
        if value is not None:
            body[key] = value
    position = _position(args)
    if position is not None:
        body["position"] = position
    for flag, key in (
        ("no_position", "position"),
        ("no_cell", "grid_cell_id"),
        ("no_team", "team"),
        ("always", "active_hours"),
    ):
        if getattr(args, flag):
            if key in body:
                raise CommandError(
                    f"--{flag.replace('_', '-')} clears {key}: give it or a new value, not both"
                )
            body[key] = None
    if args.zones_file:
        body["zones"] = _zones_from(args.zones_file)
    if not body:
        raise CommandError("nothing to change (see gridpatrol camera edit --help)")
    try:
        changes = CameraPatch.model_validate(body).changes()
    except ValidationError as exc:
        raise CommandError(f"camera {args.camera_id}: {_validation_message(exc)}") from None
    camera = registry.edit_camera(session, args.camera_id, changes)
    said.append(partial(camera_edited, local_operator(), camera, changes))
    said.append(partial(print, f"camera {args.camera_id}: changed {', '.join(sorted(body))}"))
    return 0


def _set_enabled(enabled: bool) -> Any:
    def handler(session: Any, args: argparse.Namespace, said: Said) -> int:
        from api.admin_log import camera_edited, local_operator
        from api.cameras import registry

        camera = registry.edit_camera(session, args.camera_id, {"enabled": enabled})
        said.append(partial(camera_edited, local_operator(), camera, {"enabled": enabled}))
        said.append(partial(print, f"camera {args.camera_id} {'enabled' if enabled else 'disabled'}"))
        return 0

    return handler


def _import(session: Any, args: argparse.Namespace, said: Said) -> int:
    """The site config's cameras whose source is a live stream, checked as `camera add` checks one;
    those registered already are kept. Exits 1 when a camera could not be imported for an error
    (the others are)."""
    from pydantic import ValidationError

    from api.admin_log import camera_added, local_operator
    from api.cameras import registry
    from api.errors import InputError
    from api.http.routes.cameras import CameraIn
    from detect.config import ConfigError, load_config
    from streams import is_live_url

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    added, skipped, failed = 0, [], 0
    for camera in config.cameras:
        if camera.source is None or not is_live_url(camera.source):
            skipped.append(f"{camera.id} (no live stream URL as its source)")
            continue
        if session.get(registry.Camera, camera.id) is not None:
            skipped.append(f"{camera.id} (registered already; edit it with gridpatrol camera edit)")
            continue
        body: dict[str, Any] = {
            "id": camera.id,
            "stream_url": camera.source,
            "name": camera.name,
            "position": None if camera.position is None else camera.position.model_dump(),
            "timezone": camera.timezone,
            "zones": [z.model_dump(mode="json") for z in camera.zones],
        }
        try:
            added_camera = registry.add_camera(session, CameraIn.model_validate(body).spec())
        except (ValidationError, InputError) as exc:
            why = _validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
            skipped.append(f"{camera.id} ({why})")
            failed += 1
            continue
        said.append(partial(camera_added, local_operator(), added_camera))
        added += 1
    said.extend(partial(print, f"not imported: {line}") for line in skipped)
    said.append(partial(print, f"imported {added} camera(s) from {args.config}"))
    return 1 if failed else 0


def _clock(offset_s: float | None) -> str:
    """The runner's clock against the service's: `-90 s BEHIND` when flagged, `+1 s`, `?` not known."""
    from api.cameras import registry

    if offset_s is None:
        return "?"
    flag = "" if registry.clock_warning(offset_s) is None else " BEHIND" if offset_s < 0 else " AHEAD"
    return f"{offset_s:+.0f} s{flag}"


def _team(team: str | None, teams: list[str]) -> str:
    """The team its cases go to: `(cell's)` when none, `teem-3 NOT IN GRID` when the grid knows it not."""
    from api.cameras import registry

    if team is None:
        return "(cell's)"
    return team + ("" if registry.team_warning(team, teams) is None else " NOT IN GRID")


def _runner_status(camera: Any, offline_after_s: float) -> str:
    """What the camera's runner last said it does (analysing, stalled, retrying, outside active hours,
    ...): `-` for a disabled camera or one never reported, `(no report)` when its reports stopped."""
    from datetime import timedelta

    from api.storage.db import utcnow

    if not camera.enabled or camera.reported_at is None:
        return "-"
    if camera.reported_at < utcnow() - timedelta(seconds=offline_after_s):
        return "(no report)"
    return str(json.loads(camera.runner_state or "{}").get("status") or "-")


def _list(args: argparse.Namespace) -> int:
    from api.cameras import registry
    from streams.urls import public_stream, with_public_stream

    services = _services(args)
    offline_after_s = services.settings.camera_offline_after_s
    with services.read_factory() as session:
        cameras = registry.list_cameras(session)
        teams = registry.grid_teams(session)
    rows: list[tuple[str, ...]] = []
    for c in cameras:
        online = "-" if c.online is None else "online" if c.online else "OFFLINE"
        rows.append(
            (
                c.id,
                "yes" if c.enabled else "no",
                f"{online} since {_when(c.online_since)}" if c.online is not None else online,
                _runner_status(c, offline_after_s),
                c.runner or "-",
                "-" if c.fps is None else f"{c.fps:.1f}",
                _when(c.last_frame_at),
                _clock(c.clock_offset_s),
                public_stream(c.stream_url),
                c.grid_cell_id or "(by position)",
                _team(c.team, teams),
                str(len(json.loads(c.zones))),
            )
        )
    _table(
        (
            "ID",
            "ENABLED",
            "STATE (UTC)",
            "STATUS",
            "RUNNER",
            "FPS",
            "LAST FRAME",
            "CLOCK",
            "STREAM",
            "CELL",
            "TEAM",
            "ZONES",
        ),
        rows,
    )
    errors = [(c, c.last_error) for c in cameras if c.enabled and c.last_error]
    if errors:  # whole, under the table: an error is a sentence or two, too long for a column
        print("\nLAST ERRORS (UTC)")
        for c, error in errors:
            print(f"{c.id} (reported {_when(c.reported_at)}): {with_public_stream(error, c.stream_url)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--name")
        q.add_argument("--lat", type=float)
        q.add_argument("--lon", type=float)
        q.add_argument("--cell", help="a fixed grid cell id (else the cell its position is in)")
        q.add_argument("--team", help="the team its cases go to (else the grid cell's)")
        q.add_argument("--timezone", help="IANA time zone (default Asia/Shanghai)")
        q.add_argument(
            "--zones-file", help="YAML or JSON: a list of zones as in the site config (id, kind, points_norm)"
        )
        q.add_argument(
            "--active-hours",
            nargs="+",
            metavar="HH:MM-HH:MM",
            help="local times it is analysed (default: always)",
        )
        q.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")

    p = subparsers.add_parser("camera", help="live cameras the case service manages (runners analyse them)")
    sub = p.add_subparsers(dest="camera_command", metavar="ACTION")
    q = sub.add_parser("add", help="register a camera (its stream URL is never shown again)")
    q.add_argument("camera_id")
    q.add_argument("--url", required=True, help="rtsp://user:pass@host/..., http(s)://, rtmp://, srt://")
    q.add_argument("--disabled", action="store_true", help="registered, but not analysed yet")
    common(q)
    q.set_defaults(handler=_store(_add, create=True))
    q = sub.add_parser("list", help="cameras with their live state")
    q.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")
    q.set_defaults(handler=_list)
    q = sub.add_parser("edit", help="change a camera's fields")
    q.add_argument("camera_id")
    q.add_argument("--url")
    q.add_argument("--no-position", action="store_true")
    q.add_argument("--no-cell", action="store_true")
    q.add_argument("--no-team", action="store_true")
    q.add_argument("--always", action="store_true", help="analysed at all hours")
    common(q)
    q.set_defaults(handler=_store(_edit))
    for action, enabled in (("disable", False), ("enable", True)):
        q = sub.add_parser(action, help=f"{action} a camera (its runner {'takes' if enabled else 'lets'} it)")
        q.add_argument("camera_id")
        q.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")
        q.set_defaults(handler=_store(_set_enabled(enabled)))
    q = sub.add_parser("import", help="register the site config's cameras that have a live stream URL")
    q.add_argument("config", nargs="?", default="configs/site.yaml")
    q.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")
    q.set_defaults(handler=_store(_import, create=True))
