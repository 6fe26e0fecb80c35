"""The site configuration: model, object kinds, rule categories, cameras and their zones.

Validated strictly, once, when loaded: an unknown or misspelt key, a value out of range or a zone
polygon that does not make sense is an error that names the key's path. Units are in the names
(`min_dwell_s`, `points_norm`). Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, time
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detect import SetupError

ZoneKind = Literal["no_parking", "no_vending", "no_dumping"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _multiple_of_32(value: int) -> int:
    if value % 32:
        raise ValueError(f"must be a multiple of 32, got {value}")
    return value


# An inference image size in pixels: YOLO strides need a multiple of 32.
ImageSize = Annotated[int, Field(ge=32, le=4096), AfterValidator(_multiple_of_32)]

HOURS_PATTERN = r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):[0-5]\d|24:00)$"  # "HH:MM-HH:MM" local
_HOURS = re.compile(HOURS_PATTERN)
# a camera id: a file name too (a runner's spool folder, evidence names), so neither '.' nor '..'
CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class ConfigError(SetupError):
    """A site config that cannot be used; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(Strict):
    weights: Path = Field(description="a .pt, .onnx or OpenVINO folder, relative to the config file")
    imgsz: ImageSize = Field(640, description="inference size in pixels (multiple of 32)")
    device: str = Field("cpu", description="'cpu', 'cuda:0', ...")
    conf: float = Field(0.25, gt=0.0, le=1.0, description="minimum detection score kept")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold")
    backend: Literal["auto", "pytorch", "onnx", "openvino"] = Field(
        "auto",
        description="auto: .pt weights run through a cached OpenVINO export on a CPU, PyTorch on a GPU",
    )


class TrackerSettings(Strict):
    type: Literal["bytetrack", "botsort"] = "bytetrack"
    track_buffer_s: float = Field(
        3.0, ge=0.0, le=600.0, description="how long the tracker keeps a lost track alive itself"
    )


class CategoryRule(Strict):
    """How detections of some object kinds become one category of violation."""

    kinds: list[str] = Field(min_length=1, description="object kinds (see `kinds`) that count")
    zone_kind: ZoneKind
    anywhere: bool = Field(False, description="fire outside zones too (e.g. piled debris)")
    min_dwell_s: float = Field(ge=0.0, description="seconds an object must stay before it fires")
    min_median_conf: float = Field(0.35, ge=0.0, le=1.0, description="median score over the track")
    min_observations: int = Field(3, ge=1, description="analysed frames the object must be seen in")
    max_drift_ratio: float | None = Field(
        0.5,
        gt=0.0,
        description="stationary when the bottom-centre stays within this many box heights of where "
        "the dwell started; null disables the check",
    )
    require_static_camera: bool = Field(
        True, description="count dwell only while the camera itself is not moving (dashcams)"
    )
    min_cues: int = Field(1, ge=1, description="distinct stationary objects needed together (stalls)")
    whole_kinds: list[str] = Field(
        default_factory=list,
        description="kinds that are a whole stall by themselves (a model's `stall` class): one such object "
        "fires alone; the cue cluster of min_cues otherwise (a model without that class)",
    )
    chalk: bool = Field(
        False,
        description="seen from a moving camera, one pass is only a suspected sighting (a chalk mark); the "
        "case service confirms it when a later pass finds the vehicle still there (parking)",
    )
    read_plate: bool = Field(False, description="read the vehicle's plate on the evidence frame")
    cue_gap_norm: float = Field(
        0.08, ge=0.0, le=1.0, description="max gap between cue boxes, as a fraction of image width"
    )


class Zone(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")  # one line of text
    kind: ZoneKind
    points_norm: list[tuple[Unit, Unit]] = Field(
        min_length=3, description="polygon vertices (x, y) as fractions of image width and height"
    )
    active_hours: list[str] | None = Field(
        None, description="local times 'HH:MM-HH:MM' (may wrap midnight); null = always active"
    )

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, value: list[str] | None) -> list[str] | None:
        for span in value or []:
            check_span(span)
        return value

    @model_validator(mode="after")
    def _polygon(self) -> Zone:
        from shapely.geometry import Polygon

        polygon = Polygon(self.points_norm)
        if not polygon.is_valid or polygon.area <= 0.0:
            raise ValueError(f"zone '{self.id}': points_norm do not form a simple polygon with area")
        return self

    def hour_spans(self) -> list[tuple[time, time]]:
        return hour_spans(self.active_hours)


def check_span(span: str) -> str:
    """An active-hours span as given, or ValueError saying what is wrong with it: not 'HH:MM-HH:MM'
    (the whole text: a line break after it is no span either), or a span of no time."""
    if not _HOURS.fullmatch(span):
        raise ValueError(f"{span!r} is not 'HH:MM-HH:MM'")
    start, end = span.split("-")
    if start == end:
        raise ValueError(f"'{span}' is a span of no time (all day: 00:00-24:00, or no active_hours)")
    return span


def hour_spans(active_hours: list[str] | None) -> list[tuple[time, time]]:
    """'HH:MM-HH:MM' spans (already validated against HOURS_PATTERN) as (start, end) local times; an
    end before its start wraps past midnight (detect.zones.in_span)."""
    spans = []
    for span in active_hours or []:
        start, end = span.split("-")
        end_t = time(23, 59, 59, 999999) if end == "24:00" else time.fromisoformat(end)
        spans.append((time.fromisoformat(start), end_t))
    return spans


class Position(Strict):
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)


class MountingSettings(Strict):
    """How a vehicle's camera sits (detect.ground.Mounting): with it, and a GPS track, a moving camera
    places what it sees on the ground and finds its violations by the site's geofences."""

    height_m: float = Field(gt=0.0, lt=20.0, description="lens above the road")
    pitch_deg: float = Field(ge=-30.0, le=89.0, description="tilted down from the horizontal")
    hfov_deg: float = Field(ge=10.0, le=170.0, description="horizontal field of view")
    yaw_deg: float = Field(
        0.0, ge=-180.0, le=360.0, description="turned clockwise from ahead (90: out of the right side)"
    )
    max_range_m: float = Field(40.0, gt=0.0, le=200.0, description="farther points get no ground position")


class Camera(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=CAMERA_ID_PATTERN)
    name: str | None = None
    source: str | None = Field(
        None, description="video path, image folder, or camera or stream URL (rtsp, rtmp, http(s), srt, ...)"
    )
    position: Position | None = None
    timezone: str = "Asia/Shanghai"
    start_time: datetime | None = Field(
        None, description="wall-clock time of the footage's first frame, when known"
    )
    zones: list[Zone] = Field(default_factory=list)
    mounting: MountingSettings | None = Field(
        None, description="a patrol vehicle's camera: its mounting (with the site's geofences)"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value

    @model_validator(mode="after")
    def _unique_zones(self) -> Camera:
        ids = [z.id for z in self.zones]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera '{self.id}': duplicate zone ids {dupes}")
        return self


class EvidenceSettings(Strict):
    jpeg_quality: int = Field(90, ge=30, le=100)
    crop_margin_ratio: float = Field(0.15, ge=0.0, le=2.0, description="margin around the box")
    privacy: bool = Field(
        True,
        description="blur faces and the plates of vehicles not involved in the evidence operators see; the "
        "unblurred best frame is kept sealed (role original: admins only, each fetch in the custody chain)",
    )


class SiteConfig(Strict):
    model: ModelSettings
    tracker: TrackerSettings = TrackerSettings()
    analysis_fps: float | None = Field(
        5.0, gt=0.0, le=120.0, description="frames analysed per second of footage; null = every frame"
    )
    grace_s: float = Field(
        20.0, ge=0.0, description="a lost object that reappears at the same place within this continues"
    )
    static_camera_max_flow: float = Field(
        0.01,
        gt=0.0,
        description="camera counts as still while the scene moves less than this fraction of the "
        "image diagonal per second",
    )
    kinds: dict[str, str] = Field(description="model class name -> object kind")
    categories: dict[str, CategoryRule]
    evidence: EvidenceSettings = EvidenceSettings()
    cameras: list[Camera] = Field(default_factory=list)
    default_camera: str | None = Field(
        None, description="camera used when footage names none (e.g. uploads from patrol vehicles)"
    )
    geofences: Path | None = Field(
        None,
        description="a GeoJSON file of WGS84 zones for moving cameras (detect.geofences), relative to "
        "the config file",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SiteConfig:
        known_kinds = set(self.kinds.values())
        for name, rule in self.categories.items():
            stray = [k for k in rule.whole_kinds if k not in rule.kinds]
            if stray:
                raise ValueError(f"categories.{name}.whole_kinds: {stray} are not in its kinds {rule.kinds}")
            unknown = [k for k in rule.kinds if k not in known_kinds]
            if unknown:
                raise ValueError(
                    f"categories.{name}.kinds: {unknown} are not object kinds named in `kinds` "
                    f"(known: {sorted(known_kinds)})"
                )
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"cameras: duplicate camera ids {dupes}")
        if self.default_camera is not None and self.default_camera not in ids:
            raise ValueError(f"default_camera: no camera '{self.default_camera}' in cameras {ids}")
        return self

    def camera(self, camera_id: str | None) -> Camera:
        """The camera by id; with no id, the default camera, the only camera, or an unnamed one
        without zones when the config has none."""
        if camera_id is None:
            if self.default_camera is not None:
                return self.camera(self.default_camera)
            if len(self.cameras) == 1:
                return self.cameras[0]
            if not self.cameras:
                return Camera(id="default")
            raise ConfigError(
                f"the config has {len(self.cameras)} cameras; choose one of {[c.id for c in self.cameras]}"
            )
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise ConfigError(f"no camera '{camera_id}' in the config (have {[c.id for c in self.cameras]})")


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the config model accepts at `loc` (a pydantic error location, without its last part)."""
    kind: Any = SiteConfig
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (list, dict):
            kind = get_args(kind)[-1]
        else:
            return []
        while get_origin(kind) in (Union, UnionType):  # X | None: the model inside
            models = [a for a in get_args(kind) if a is not type(None)]
            kind = models[0] if len(models) == 1 else None
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return []


def _key_path(data: Any, loc: tuple[int | str, ...]) -> str:
    """A readable key path: list items by their `id` where they have one (cameras[gate].zones[kerb]),
    else by position (points_norm[1])."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            text += f"[{ident}]" if isinstance(ident, str) and ident else f"[{part}]"
            node = item
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


def _format_errors(path: Path, exc: ValidationError, data: Any) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _key_path(data, loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = _fields_at(loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = f"unknown key; did you mean {near[0]}?" if near else "unknown key (misspelt?)"
            if known and not near:
                msg += f" (known here: {', '.join(known)})"
        elif "points_norm" in loc and err["type"] in ("less_than_equal", "greater_than_equal"):
            axis = {0: "x", 1: "y"}.get(loc[-1]) if isinstance(loc[-1], int) else None
            where = _key_path(data, loc[:-1]) if axis else where
            msg = (
                f"{axis + ' = ' if axis else ''}{err.get('input')} is outside 0..1: "
                "points_norm are fractions of the image size (x of its width, y of its height), not pixels"
            )
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, *, base_dir: Path, origin: Path | str = "<config>") -> SiteConfig:
    """Validate a config mapping; relative weights paths resolve against base_dir."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(Path(str(origin)), exc, data)) from None
    weights = config.model.weights
    if not weights.is_absolute():
        weights = (base_dir / weights).resolve()
        config = config.model_copy(update={"model": config.model.model_copy(update={"weights": weights})})
    if config.geofences is not None:
        fences = (
            config.geofences if config.geofences.is_absolute() else (base_dir / config.geofences).resolve()
        )
        from detect.geofences import load_geofences

        load_geofences(fences)  # a bad file is the config's error, named now, not at the first patrol
        config = config.model_copy(update={"geofences": fences})
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without the quoted line: it may hold a camera's source URL with its password,
    cut off at any place (so not even streams.mask_credentials would recognise it)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return type(exc).__name__


def load_config(path: str | Path) -> SiteConfig:
    """Read and validate a YAML site config; every problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    return parse_config(data, base_dir=path.parent.resolve(), origin=path)
