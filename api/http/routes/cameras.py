"""Cameras: the registry (admins edit, staff read) and the runners' side (their cameras with stream
URLs, and each camera's live state). See api.cameras."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.admin_log import camera_added, camera_edited
from api.cameras import registry
from api.cases.wall_time import WallTime
from api.errors import InputError
from api.http import schemas
from api.http.deps import Admin, ReadSessionDep, Runner, ServicesDep, SessionDep, Staff
from api.storage.models import Camera
from detect.config import CAMERA_ID_PATTERN, HOURS_PATTERN, Zone, check_span
from detect.config import Camera as SiteCamera
from streams.urls import mask_credentials, public_stream, stream_url_problem, url_error, with_public_stream

router = APIRouter(prefix="/api", tags=["cameras"], responses=schemas.CALLER_ERRORS)

CAMERA_ID = CAMERA_ID_PATTERN  # as the site config's: no '.' or '..' (a runner's spool folder is named by it)
ONE_LINE = (
    r"^[^\x00-\x1f\x7f]*$"  # a name, a team: no line breaks or control characters (PostgreSQL stores no NUL)
)
CameraIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=CAMERA_ID, description="camera id")]
Hours = Annotated[
    str, Field(pattern=HOURS_PATTERN, description="local time 'HH:MM-HH:MM'"), AfterValidator(check_span)
]


def _stream_url(url: str) -> str:
    """A stream URL a runner can open and a response can show without its secrets. One it cannot is
    refused as `gridpatrol detect` and a runner word it (streams.urls.url_error: the URL masked, then
    the reason), without pydantic's "Value error, " before it."""
    problem = stream_url_problem(url)
    if problem is not None:
        raise PydanticCustomError("stream_url", "{reason}", {"reason": url_error(url, problem)})
    return url


def shown_error(text: str | None) -> str | None:
    """A runner's error as the registry stores, shows and logs it: its runner masks the stream URL's secrets,
    and this does again (a runner of another version, a URL it did not recognise), with control
    characters as spaces (PostgreSQL stores no NUL; a log line is one line)."""
    return None if text is None else re.sub(r"[\x00-\x1f\x7f]", " ", mask_credentials(text))


StreamUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$",
        description="rtsp://, rtmp://, http(s):// (MJPEG, HLS, FLV), srt://, udp:// ...; "
        "with its credentials, which no response or log line shows",
    ),
    AfterValidator(_stream_url),
]
NOT_FOUND = schemas.error_responses(404, described={404: "no camera of that id"})
RUNNER_STATE_MAX_BYTES = 65536  # a runner's figures as stored: its spool and delivery counts are a few lines
RUNNER_STATE_MAX_DEPTH = 8


def _check_site_rules(camera_id: str, timezone: str | None, zones: list[Zone] | None) -> None:
    """The site config's own checks (time zone exists, zone ids unique) on the fields sent."""
    SiteCamera(
        id=camera_id,
        timezone=timezone or "Asia/Shanghai",
        zones=zones or [],
    )


class CameraIn(BaseModel):
    """A camera, validated as the site config validates one (detect.config.Camera, Zone)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, pattern=CAMERA_ID)
    stream_url: StreamUrl
    name: str | None = Field(None, max_length=200, pattern=ONE_LINE)
    position: schemas.GeoPosition | None = None
    grid_cell_id: str | None = Field(None, min_length=1, max_length=64, pattern=ONE_LINE)
    team: str | None = Field(None, min_length=1, max_length=64, pattern=ONE_LINE)
    timezone: str = Field("Asia/Shanghai", min_length=1, max_length=64)
    zones: list[Zone] = Field(default_factory=list)
    active_hours: list[Hours] | None = None
    enabled: bool = Field(True, strict=True)

    @model_validator(mode="after")
    def _site_rules(self) -> CameraIn:
        _check_site_rules(self.id, self.timezone, self.zones)
        return self

    def spec(self) -> registry.CameraSpec:
        return registry.CameraSpec(
            id=self.id,
            stream_url=self.stream_url,
            name=self.name,
            lat=None if self.position is None else self.position.lat,
            lon=None if self.position is None else self.position.lon,
            grid_cell_id=self.grid_cell_id,
            team=self.team,
            timezone=self.timezone,
            zones=[z.model_dump(mode="json") for z in self.zones],
            active_hours=self.active_hours,
            enabled=self.enabled,
        )


class CameraPatch(BaseModel):
    """The fields to change; a field sent as null clears it (position, cell, team, hours, name)."""

    model_config = ConfigDict(extra="forbid")
    stream_url: StreamUrl | None = None
    name: str | None = Field(None, max_length=200, pattern=ONE_LINE)
    position: schemas.GeoPosition | None = None
    grid_cell_id: str | None = Field(None, min_length=1, max_length=64, pattern=ONE_LINE)
    team: str | None = Field(None, min_length=1, max_length=64, pattern=ONE_LINE)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    zones: list[Zone] | None = None
    active_hours: list[Hours] | None = None
    enabled: bool | None = Field(None, strict=True)

    @model_validator(mode="after")
    def _site_rules(self) -> CameraPatch:
        for name in ("stream_url", "timezone", "zones", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise InputError(name, "cannot be null")
        _check_site_rules("patch", self.timezone, self.zones)
        return self

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "position":
                out["lat"] = None if value is None else value.lat
                out["lon"] = None if value is None else value.lon
            elif name == "zones":
                out["zones"] = [z.model_dump(mode="json") for z in value]
            else:
                out[name] = value
        return out


class CameraStateIn(BaseModel):
    """A runner's report on one camera it analyses."""

    model_config = ConfigDict(extra="forbid")
    fps: float | None = Field(None, ge=0.0, le=1000.0, strict=True)
    last_frame_at: WallTime | None = None
    last_error: Annotated[str | None, AfterValidator(shown_error)] = Field(
        None, max_length=2000, description="credentials masked by the runner (and again here)"
    )
    clock_offset_s: float | None = Field(
        None,
        ge=-registry.CLOCK_OFFSET_MAX_S,
        le=registry.CLOCK_OFFSET_MAX_S,
        strict=True,
        allow_inf_nan=False,
        description="how far the runner's clock is from the case service's (from the Date of its "
        "answers), in seconds: the runner's minus the service's, negative when the runner's is behind; "
        f"{registry.CLOCK_WARN_S:g} s or more is flagged; absent: not known (an older runner)",
    )
    runner_state: dict[str, Any] | None = Field(
        None,
        description=f"the runner's own figures (spool size and age, delivered, dropped): at most "
        f"{RUNNER_STATE_MAX_BYTES} bytes as JSON, {RUNNER_STATE_MAX_DEPTH} levels deep",
    )

    @field_validator("runner_state")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if _depth(value) > RUNNER_STATE_MAX_DEPTH:
                raise ValueError(f"nested more than {RUNNER_STATE_MAX_DEPTH} levels deep")
            if len(json.dumps(value)) > RUNNER_STATE_MAX_BYTES:
                raise ValueError(f"more than {RUNNER_STATE_MAX_BYTES} bytes as JSON")
        return value


def _depth(value: Any) -> int:
    """How many levels of objects and arrays `value` holds (0 for a number or a string)."""
    levels, level = 0, [value]
    while level:
        inner = [v for v in level if isinstance(v, (dict, list))]
        if not inner:
            break
        levels += 1
        level = [c for v in inner for c in (v.values() if isinstance(v, dict) else v)]
    return levels


def _hours(row: Camera) -> list[str] | None:
    return None if row.active_hours is None else json.loads(row.active_hours)


def _position(row: Camera) -> schemas.GeoPosition | None:
    return None if row.lat is None or row.lon is None else schemas.GeoPosition(lat=row.lat, lon=row.lon)


def camera_state(row: Camera) -> schemas.CameraState:
    return schemas.CameraState(
        online=row.online,
        since=row.online_since,
        runner=row.runner,
        fps=row.fps,
        last_frame_at=row.last_frame_at,
        last_error=None if row.last_error is None else with_public_stream(row.last_error, row.stream_url),
        reported_at=row.reported_at,
        runner_state=None if row.runner_state is None else json.loads(row.runner_state),
        clock_offset_s=row.clock_offset_s,
        clock_warning=registry.clock_warning(row.clock_offset_s),
    )


def camera_info(row: Camera, teams: list[str]) -> schemas.CameraInfo:
    """A camera as served; `teams`: the grid's (registry.grid_teams), to flag a team it does not know."""
    return schemas.CameraInfo(
        id=row.id,
        name=row.name,
        stream=public_stream(row.stream_url),
        position=_position(row),
        grid_cell_id=row.grid_cell_id,
        team=row.team,
        team_warning=registry.team_warning(row.team, teams),
        timezone=row.timezone,
        zones=json.loads(row.zones),
        active_hours=_hours(row),
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        state=camera_state(row),
    )


@router.get("/cameras", response_model=list[schemas.CameraInfo])
def get_cameras(principal: Staff, session: ReadSessionDep) -> list[schemas.CameraInfo]:
    """Every registered camera with its live state, by id."""
    teams = registry.grid_teams(session)
    return [camera_info(c, teams) for c in registry.list_cameras(session)]


@router.get("/cameras/{camera_id}", response_model=schemas.CameraInfo, responses=NOT_FOUND)
def get_camera(camera_id: CameraIdPath, principal: Staff, session: ReadSessionDep) -> schemas.CameraInfo:
    return camera_info(registry.get_camera(session, camera_id), registry.grid_teams(session))


@router.post(
    "/cameras",
    status_code=201,
    response_model=schemas.CameraInfo,
    responses={
        **schemas.BODY_ERRORS,
        **schemas.error_responses(409, described={409: "a camera of that id exists"}),
        **schemas.WRITE_FAULTS,
    },
)
def post_camera(body: CameraIn, principal: Admin, session: SessionDep) -> schemas.CameraInfo:
    """Register a camera; a bad zone or time zone is a 422 naming it, as in `config check`."""
    camera = registry.add_camera(session, body.spec())
    session.commit()
    camera_added(principal, camera)
    return camera_info(camera, registry.grid_teams(session))


@router.patch(
    "/cameras/{camera_id}",
    response_model=schemas.CameraInfo,
    responses={**schemas.BODY_ERRORS, **NOT_FOUND, **schemas.WRITE_FAULTS},
)
def patch_camera(
    camera_id: CameraIdPath, body: CameraPatch, principal: Admin, session: SessionDep
) -> schemas.CameraInfo:
    """Change some of a camera's fields; `{"enabled": false}` stops it being analysed (its runner
    lets it go at its next look at the registry)."""
    changes = body.changes()
    camera = registry.edit_camera(session, camera_id, changes)
    session.commit()
    camera_edited(principal, camera, changes)
    return camera_info(camera, registry.grid_teams(session))


@router.get("/runner/cameras", response_model=list[schemas.RunnerCamera])
def get_runner_cameras(principal: Runner, session: ReadSessionDep) -> list[schemas.RunnerCamera]:
    """The enabled cameras, with their stream URLs: for runner keys only."""
    return [
        schemas.RunnerCamera(
            id=c.id,
            name=c.name,
            stream_url=c.stream_url,
            position=_position(c),
            timezone=c.timezone,
            zones=json.loads(c.zones),
            active_hours=_hours(c),
        )
        for c in registry.list_cameras(session, enabled_only=True)
    ]


@router.put(
    "/cameras/{camera_id}/state",
    response_model=schemas.CameraState,
    responses={**schemas.BODY_ERRORS, **NOT_FOUND, **schemas.WRITE_FAULTS},
)
def put_camera_state(
    camera_id: CameraIdPath,
    body: CameraStateIn,
    principal: Runner,
    session: SessionDep,
    services: ServicesDep,
) -> schemas.CameraState:
    """A runner reports a camera it analyses; the camera is online (camera.online when it was
    offline) while its reports come with a frame no older than GRIDPATROL_CAMERA_OFFLINE_AFTER_S. Its
    last error names the stream as every answer does (scheme://host:port): it goes to webhooks too."""
    stream_url = registry.get_camera(session, camera_id).stream_url
    camera = registry.report_state(
        session,
        camera_id,
        runner=principal.name,
        fps=body.fps,
        last_frame_at=body.last_frame_at,
        last_error=None if body.last_error is None else with_public_stream(body.last_error, stream_url),
        runner_state=body.runner_state,
        clock_offset_s=body.clock_offset_s,
        offline_after_s=services.settings.camera_offline_after_s,
        clock_log=services.clock_log,
    )
    session.commit()
    return camera_state(camera)  # every 5 s per camera: no grid-teams query, no whole CameraInfo
