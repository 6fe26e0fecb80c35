"""The camera registry and each camera's live state.

A camera's `team` (its cases go to it, not to the grid cell's) must be one the imported grid's cells
name, else its cases would reach no enforcement user: an unknown one is refused (naming `team`, with
the grid's teams) once a grid is imported; before that any team is taken. A camera whose team the grid
no longer knows (a new grid imported) keeps working, flagged by team_warning.

A camera's stream URL carries its credentials: it is stored as given and returned only to runners
(runner_view); every other view shows `stream` (scheme, host and port: no user, password, path or
query), and nothing here logs it.

Live state: a runner reports each camera it analyses (frames per second, last frame time, last
error, its spool). A camera is online while its runner reports it with a frame no older than
`offline_after_s` (or says it is outside its active hours), and offline once no report has come for
that long or its last frame is that old (its stream dropped: the runner goes on reporting fps 0 and
the reason); sweep_offline, run by the server every few seconds, sends the camera.offline webhook
event once, and the first report with a fresh frame brings it back online with camera.online.
A report also carries how far the runner's clock is from this service's (clock_offset_s, negative when
behind; absent from an older runner: unknown): CLOCK_WARN_S or more is flagged (clock_warning), since
the runner's incidents carry its own times. The log has hysteresis (ClockLog), as the difference is
measured to about 1 s: a WARNING when a camera's reports reach CLOCK_WARN_S, and "back within" only
once they fall under CLOCK_BACK_S, so a clock near 5 s is logged once, not at each crossing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.cases import webhooks
from api.errors import InputError, NotFound
from api.periodic import Periodic
from api.storage.db import DatabaseBusy, as_utc, iso_utc, utcnow
from api.storage.models import Camera, GridCell

log = logging.getLogger(__name__)

OUTSIDE_HOURS = "outside active hours"  # api.runner.camera's status while no frame is due
CLOCK_WARN_S = 5.0  # a runner's clock this far from this service's is flagged: its incidents carry its times
CLOCK_BACK_S = 3.0  # a logged clock difference is logged as back within only under this (hysteresis)
CLOCK_OFFSET_MAX_S = 10 * 366 * 86400.0  # the largest clock difference a report may carry (ten years)


class CameraInputError(InputError):
    """A camera that cannot be stored as sent; names the field."""


class CameraConflict(CameraInputError):
    status = 409


class CameraNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera as validated by the caller (zones as detect.config.Zone dumps)."""

    id: str
    stream_url: str
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    grid_cell_id: str | None = None
    team: str | None = None
    timezone: str = "Asia/Shanghai"
    zones: list[dict[str, Any]] = field(default_factory=list)
    active_hours: list[str] | None = None
    enabled: bool = True


EDITABLE = (
    "stream_url",
    "name",
    "lat",
    "lon",
    "grid_cell_id",
    "team",
    "timezone",
    "zones",
    "active_hours",
    "enabled",
)


def _check_cell(session: Session, cell_id: str | None) -> None:
    if cell_id is not None and session.get(GridCell, cell_id) is None:
        raise CameraInputError("grid_cell_id", f"no grid cell '{cell_id}' (import the grid first)")


def grid_teams(session: Session) -> list[str]:
    """The teams the imported grid's cells belong to, sorted (none before a grid is imported)."""
    return list(session.scalars(select(GridCell.team).distinct().order_by(GridCell.team)))


def team_warning(team: str | None, teams: list[str]) -> str | None:
    """What to say of a camera's `team` that no cell of the grid (whose teams are `teams`) names,
    None when it has none, the grid knows it, or no grid is imported."""
    if team is None or not teams or team in teams:
        return None
    return (
        f"no grid cell belongs to team '{team}': its cases reach no enforcement user "
        f"(the grid's teams: {', '.join(teams)})"
    )


def _check_team(session: Session, team: str | None) -> None:
    warning = team_warning(team, grid_teams(session))
    if warning is not None:
        raise CameraInputError("team", warning)


def _check_position(lat: float | None, lon: float | None) -> None:
    if (lat is None) != (lon is None):
        raise CameraInputError("position", "give both lat and lon, or neither")


def add_camera(session: Session, spec: CameraSpec) -> Camera:
    if session.get(Camera, spec.id) is not None:
        raise CameraConflict("id", f"camera '{spec.id}' already exists (edit it: gridpatrol camera edit)")
    _check_position(spec.lat, spec.lon)
    _check_cell(session, spec.grid_cell_id)
    _check_team(session, spec.team)
    now = utcnow()
    camera = Camera(
        id=spec.id,
        name=spec.name,
        stream_url=spec.stream_url,
        lat=spec.lat,
        lon=spec.lon,
        grid_cell_id=spec.grid_cell_id,
        team=spec.team,
        timezone=spec.timezone,
        zones=json.dumps(spec.zones, ensure_ascii=False),
        active_hours=None if spec.active_hours is None else json.dumps(spec.active_hours),
        enabled=spec.enabled,
        created_at=now,
        updated_at=now,
    )
    session.add(camera)
    session.flush()
    log.info("camera %s added", spec.id)
    return camera


def get_camera(session: Session, camera_id: str) -> Camera:
    camera = session.get(Camera, camera_id)
    if camera is None:
        raise CameraNotFound("camera_id", f"no camera '{camera_id}'")
    return camera


def list_cameras(session: Session, *, enabled_only: bool = False) -> list[Camera]:
    stmt = select(Camera).order_by(Camera.id)
    if enabled_only:
        stmt = stmt.where(Camera.enabled.is_(True))
    return list(session.scalars(stmt))


def edit_camera(session: Session, camera_id: str, changes: dict[str, Any]) -> Camera:
    """Change the given fields (names from EDITABLE; zones and active_hours as lists)."""
    camera = get_camera(session, camera_id)
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise CameraInputError(unknown[0], f"not a camera field (editable: {', '.join(EDITABLE)})")
    if not changes:
        raise CameraInputError("body", f"nothing to change (editable: {', '.join(EDITABLE)})")
    lat = changes.get("lat", camera.lat)
    lon = changes.get("lon", camera.lon)
    _check_position(lat, lon)
    if "grid_cell_id" in changes:
        _check_cell(session, changes["grid_cell_id"])
    if "team" in changes and changes["team"] != camera.team:  # one the grid no longer knows is kept
        _check_team(session, changes["team"])
    for name, value in changes.items():
        if name == "zones":
            value = json.dumps(value, ensure_ascii=False)
        elif name == "active_hours":
            value = None if value is None else json.dumps(value)
        setattr(camera, name, value)
    if changes.get("enabled") is False:  # no runner analyses it now: neither online nor offline
        camera.online, camera.online_since = None, utcnow()
    camera.updated_at = utcnow()
    session.flush()
    log.info("camera %s edited: %s", camera_id, ", ".join(sorted(changes)))
    return camera


# --- live state -------------------------------------------------------------------------------


def clock_warning(offset_s: float | None) -> str | None:
    """What to say of a runner's clock `offset_s` seconds from this service's (its clock minus this one's:
    negative is behind), None when it is within CLOCK_WARN_S or unknown (an older runner, no answer yet)."""
    if offset_s is None or abs(offset_s) < CLOCK_WARN_S:
        return None
    side = "behind" if offset_s < 0 else "ahead of"
    return (
        f"the runner's clock is {abs(offset_s):.0f} s {side} the case service's: its incidents carry "
        "its own times; synchronise its clock (NTP)"
    )


class ClockLog:
    """Which cameras' runner clocks this service has logged as CLOCK_WARN_S or more off, so that a
    difference near that line (measured to about 1 s) is logged once: a WARNING when it reaches
    CLOCK_WARN_S, and INFO "back within" when it falls under CLOCK_BACK_S, nothing in between.
    Held per process (Services); a camera it has not seen counts as logged when its stored difference
    is flagged, so a restart logs nothing again for a clock that stayed off."""

    def __init__(self) -> None:
        self._off: dict[str, bool] = {}

    def note(self, camera_id: str, runner: str, before_s: float | None, now_s: float | None) -> None:
        """A report of `now_s` for a camera whose stored difference was `before_s` (None: unknown,
        which changes nothing: an older runner says nothing of its clock)."""
        off = self._off.get(camera_id, clock_warning(before_s) is not None)
        warning = clock_warning(now_s)
        if now_s is None:
            pass
        elif not off and warning is not None:
            log.warning("camera %s (runner %s): %s", camera_id, runner, warning)
            off = True
        elif off and abs(now_s) < CLOCK_BACK_S:
            back = (
                f"the runner's clock is back within {CLOCK_BACK_S:g} s of the case service's ({now_s:+.0f} s)"
            )
            log.info("camera %s (runner %s): %s", camera_id, runner, back)
            off = False
        self._off[camera_id] = off


def _event_payload(camera: Camera) -> dict[str, Any]:
    return {
        "id": camera.id,
        "name": camera.name,
        "runner": camera.runner,
        "online": camera.online,
        "since": None if camera.online_since is None else iso_utc(camera.online_since),
        "last_frame_at": None if camera.last_frame_at is None else iso_utc(camera.last_frame_at),
        "last_error": camera.last_error,
    }


def report_state(
    session: Session,
    camera_id: str,
    *,
    runner: str,
    fps: float | None,
    last_frame_at: datetime | None,
    last_error: str | None,
    runner_state: dict[str, Any] | None = None,
    clock_offset_s: float | None = None,
    offline_after_s: float | None = None,
    clock_log: ClockLog | None = None,
) -> Camera:
    """A runner's report on one camera it analyses; the camera comes online (camera.online) when its
    last frame is no older than offline_after_s (any report when None), or it is outside its hours.
    clock_offset_s: how far the runner's clock is from this service's (negative: behind; None: not
    known); logged through clock_log (the service's: with hysteresis, not at every report)."""
    camera = get_camera(session, camera_id)
    now = utcnow()
    (clock_log or ClockLog()).note(camera_id, runner, camera.clock_offset_s, clock_offset_s)
    camera.clock_offset_s = clock_offset_s
    camera.runner, camera.fps, camera.last_error = runner, fps, last_error
    frame_at = as_utc(last_frame_at)
    if frame_at is not None:  # a runner's clock ahead of this one's would keep it fresh for ever
        camera.last_frame_at = min(frame_at, now)
    camera.reported_at = now
    camera.runner_state = None if runner_state is None else json.dumps(runner_state)
    fresh = offline_after_s is None or _frames_fresh(camera, now - timedelta(seconds=offline_after_s))
    if camera.enabled and camera.online is not True and fresh:  # a disabled one: its runner lets it go
        was_offline = camera.online is False
        camera.online, camera.online_since = True, now
        if was_offline:
            webhooks.enqueue(
                session,
                event=webhooks.WebhookEvent.CAMERA_ONLINE,
                case_id=None,
                payload=_event_payload(camera),
                key="camera",
            )
        log.info("camera %s online (runner %s)", camera_id, runner)
    session.flush()
    return camera


def _frames_fresh(camera: Camera, cutoff: datetime) -> bool:
    """Whether the camera gave a frame since cutoff (or its runner says it is outside its hours, when
    no frame is due). A camera that never gave one counts from when it came online or was edited."""
    if camera.runner_state and json.loads(camera.runner_state).get("status") == OUTSIDE_HOURS:
        return True
    if camera.last_frame_at is not None:
        return camera.last_frame_at >= cutoff
    return (camera.online_since or camera.updated_at) >= cutoff


def _why_offline(camera: Camera, cutoff: datetime, offline_after_s: float) -> str | None:
    if camera.reported_at is None:
        return f"no report for {offline_after_s:.0f} s" if camera.updated_at < cutoff else None
    if camera.reported_at < cutoff:
        return f"no report for {offline_after_s:.0f} s"
    if not _frames_fresh(camera, cutoff):
        return f"no frame for {offline_after_s:.0f} s"
    return None


def sweep_offline(session: Session, *, offline_after_s: float) -> list[str]:
    """Mark offline every enabled camera not reported for offline_after_s (never reported: since it
    was added or last edited) or whose last frame is that old, and send camera.offline for each;
    returns their ids."""
    now = utcnow()
    cutoff = now - timedelta(seconds=offline_after_s)
    watched = session.scalars(
        select(Camera).where(
            Camera.enabled.is_(True),
            or_(Camera.online.is_(None), Camera.online.is_(True)),
        )
    ).all()
    stale = []
    for camera in watched:
        why = _why_offline(camera, cutoff, offline_after_s)
        if why is not None:
            stale.append((camera, why))
    for camera, why in stale:
        camera.online, camera.online_since = False, now
        webhooks.enqueue(
            session,
            event=webhooks.WebhookEvent.CAMERA_OFFLINE,
            case_id=None,
            payload=_event_payload(camera),
            key="camera",
        )
        log.warning(
            "camera %s offline: %s (runner %s, last error: %s)",
            camera.id,
            why,
            camera.runner or "none yet",
            camera.last_error or "none",
        )
    session.flush()
    return [c.id for c, _ in stale]


class CameraWatch(Periodic):
    """Background thread of the server: sweep_offline every `every_s` seconds."""

    thread_name = "gridpatrol-camera-watch"
    passing_faults = (DatabaseBusy,)

    def __init__(
        self, factory: sessionmaker[Session], *, offline_after_s: float, every_s: float = 5.0
    ) -> None:
        super().__init__(every_s)
        self.factory = factory
        self.offline_after_s = offline_after_s

    def run_once(self) -> list[str]:
        with self.factory() as session:
            gone = sweep_offline(session, offline_after_s=self.offline_after_s)
            session.commit()
        return gone

    def round(self) -> None:
        self.run_once()
