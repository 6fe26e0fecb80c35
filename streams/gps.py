"""GPS tracks of patrol vehicles (GPX, NMEA 0183, CSV) and their alignment with footage time.

`load_track(path)` reads a track into a `GpsTrack`: fixes sorted by time (UTC), duplicates dropped.
`GpsTrack.position_at(when)` interpolates the vehicle's position at an absolute time, and
`with_track_positions(frames, track)` gives every frame of a footage the position at its time.

Time zones: GPX and NMEA times are UTC by their specifications; a GPX time written without a zone is
taken as UTC. CSV times without an offset are in the `tz` passed to `load_track` / `parse_csv`
(default UTC); Unix seconds are UTC by definition.

Footage time: a frame's absolute time is its `wall_time` (the footage's start time + `Frame.ts`, as the
sources compute it). Footage without a known start is aligned on the track: its first frame is taken
to be the moment of the track's first fix (logged at INFO), and such frames get that wall time too.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streams.frame import Frame, GeoPoint
from streams.source import InputError

log = logging.getLogger(__name__)

TrackFormat = Literal["gpx", "nmea", "csv"]
# What a file must be to be read as a track, for the messages that refuse one
FORMATS_READ = (
    "GPX with timed points, NMEA 0183 RMC/GGA sentences (.nmea/.log/.txt, a BlackVue .gps), "
    "or CSV with a time,lat,lon (or 时间,纬度,经度) header, or date,time,lat,lon with the day in its "
    "own column"
)

# Between two fixes further apart than this the position is unknown (a tunnel, a logger pause): no
# position is invented across the gap.
DEFAULT_MAX_GAP_S = 30.0
# A time this close to a fix at the edge of the track or of a gap still gets that fix's position.
DEFAULT_TOLERANCE_S = 5.0
# Larger than any track a day's patrol writes (1 Hz GPX for 24 h is ~15 MB); guards memory.
MAX_TRACK_BYTES = 256 * 1024**2

# Faster than any patrol vehicle drives (250 km/h): a fix this far from the one before is a GPS jump
# (multipath between tall buildings, a receiver's cold start); GpsTrack.without_jumps drops it. A
# speed recorded over it is no speed (a km/h column read as m/s): the track's speed column is ignored.
MAX_SPEED_MPS = 70.0
# Below this distance between the fixes around a time, the heading is unknown (a car standing or
# creeping: GPS noise of a few metres would point anywhere).
MIN_HEADING_MOVE_M = 2.0
EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)

# A heading (course, bearing) is degrees clockwise from true north, written 0..360 by most receivers and
# -180..180 by some: a value beyond one turn either way (720, -5000, 27000 in hundredths of a degree) is
# no heading, and wrapping it would point the vehicle anywhere.
MAX_HEADING_DEG = 360.0
MAX_SHOWN = 40  # characters of a bad value quoted in a message
KNOTS_TO_MPS = 1852.0 / 3600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Fix times are taken from _EPOCH up to (not including) _END, the range the case service accepts for
# wall times: a time outside is a logger's error, and footage aligned on it would run off the calendar.
_END = datetime(2200, 1, 1, tzinfo=UTC)


class TrackError(InputError):
    """A track that cannot be read. `name` is the file, `detail` says where in it and why."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix: time (timezone-aware, UTC), WGS84 lat/lon in degrees, ground speed in m/s and
    heading in degrees clockwise from true north when the track records them."""

    time: datetime
    lat: float
    lon: float
    speed_mps: float | None = None
    heading_deg: float | None = None


class GpsTrack:
    """A vehicle's fixes in time order, one per distinct time.

    Fixes given out of order are sorted; of fixes with the same time the first is kept (missing speed
    or heading filled from the others). `skipped` counts what the parser left out, by reason; `notes`
    say, in a sentence each, what it set aside of the fixes it kept (a heading or speed column ignored),
    for the job that reads the track to show.
    """

    def __init__(
        self,
        fixes: Iterable[Fix],
        *,
        name: str = "track",
        skipped: Mapping[str, int] | None = None,
        notes: Iterable[str] = (),
    ):
        given = list(fixes)
        self.name = name
        self.skipped: dict[str, int] = dict(skipped or {})
        self.notes: tuple[str, ...] = tuple(notes)
        if not given:
            raise TrackError(name, "no fixes with time")
        for fix in given:
            if fix.time.tzinfo is None:
                raise ValueError(f"{name}: fix times must be timezone-aware, got {fix.time}")
        backwards = sum(1 for a, b in zip(given, given[1:], strict=False) if b.time < a.time)
        if backwards:
            log.warning("%s: times go backwards %d time(s); fixes sorted by time", name, backwards)
        ordered = sorted(given, key=lambda f: f.time)  # stable: the first of equal times stays first
        kept: list[Fix] = []
        for fix in ordered:
            if kept and fix.time == kept[-1].time:
                last = kept[-1]
                if (last.speed_mps is None and fix.speed_mps is not None) or (
                    last.heading_deg is None and fix.heading_deg is not None
                ):
                    kept[-1] = replace(
                        last,
                        speed_mps=last.speed_mps if last.speed_mps is not None else fix.speed_mps,
                        heading_deg=last.heading_deg if last.heading_deg is not None else fix.heading_deg,
                    )
                continue
            kept.append(fix)
        dropped = len(given) - len(kept)
        if dropped:
            self.skipped["duplicate time"] = self.skipped.get("duplicate time", 0) + dropped
            log.info("%s: %d fix(es) with a time already seen dropped", name, dropped)
        self.fixes: tuple[Fix, ...] = tuple(kept)
        self._t = np.array([(f.time - _EPOCH).total_seconds() for f in kept], dtype=np.float64)
        self._lat = np.array([f.lat for f in kept], dtype=np.float64)
        self._lon = np.array([f.lon for f in kept], dtype=np.float64)

    def without_jumps(self, max_speed_mps: float = MAX_SPEED_MPS) -> GpsTrack:
        """This track less the fixes reached from the last kept one faster than max_speed_mps (GPS
        jumps), with a warning that says how many and where; this very track when there are none.

        The fixes are checked outwards from the first fix of the longest run of fixes that each follow
        from the one before: a receiver's first fixes are often its last position from before it was
        switched off, or 0, 0, and a jump there must not make every true fix after it a jump."""

        def too_fast(a: Fix, b: Fix) -> bool:
            seconds = abs((b.time - a.time).total_seconds())
            return distance_m(GeoPoint(a.lat, a.lon), GeoPoint(b.lat, b.lon)) > max_speed_mps * seconds

        fixes = self.fixes
        anchor = best_start = 0
        best_length = 0
        for i in range(1, len(fixes) + 1):
            if i == len(fixes) or too_fast(fixes[i - 1], fixes[i]):
                if i - anchor > best_length:
                    best_start, best_length = anchor, i - anchor
                anchor = i
        kept: list[Fix] = [fixes[best_start]]
        jumps: list[Fix] = []
        for fix in fixes[best_start + 1 :]:  # onwards in time from the anchor
            (jumps if too_fast(kept[-1], fix) else kept).append(fix)
        earlier: list[Fix] = []
        for fix in reversed(fixes[:best_start]):  # and back in time from it
            (jumps if too_fast(fix, earlier[-1] if earlier else kept[0]) else earlier).append(fix)
        kept = earlier[::-1] + kept
        jumps.sort(key=lambda f: f.time)
        if not jumps:
            return self
        where = ", ".join(f"{f.time.isoformat()} ({f.lat:.5f}, {f.lon:.5f})" for f in jumps[:5])
        more = f" and {len(jumps) - 5} more" if len(jumps) > 5 else ""
        log.warning(
            "%s: %d fix(es) dropped, reached faster than %.0f km/h from the fix before: %s%s",
            self.name,
            len(jumps),
            max_speed_mps * 3.6,
            where,
            more,
        )
        skipped = dict(self.skipped)
        skipped["jump"] = skipped.get("jump", 0) + len(jumps)
        return GpsTrack(kept, name=self.name, skipped=skipped, notes=self.notes)

    def heading_at(self, when: datetime, *, max_gap_s: float = DEFAULT_MAX_GAP_S) -> float | None:
        """The vehicle's heading at `when`, degrees clockwise from true north: the receiver's own
        course from the nearest fix when it records one (and the vehicle moves), else the bearing
        between the fixes around `when` (widened until they are MIN_HEADING_MOVE_M apart, within
        max_gap_s). None where the track does not say or the vehicle stands still."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        t = (when - _EPOCH).total_seconds()
        times = self._t
        i = int(np.searchsorted(times, t, side="right"))  # times[i-1] <= t < times[i]
        nearest = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - t))
        if abs(times[nearest] - t) > max_gap_s:
            return None
        fix = self.fixes[nearest]
        moving = fix.speed_mps is None or fix.speed_mps * 3.6 >= 3.0
        if fix.heading_deg is not None and moving:
            return fix.heading_deg % 360.0
        before, after = max(0, i - 1), min(len(times) - 1, i)
        while True:
            a, b = self._point(before), self._point(after)
            if before != after and distance_m(a, b) >= MIN_HEADING_MOVE_M:
                return bearing_deg(a, b)
            wider_before = before > 0 and t - times[before - 1] <= max_gap_s
            wider_after = after < len(times) - 1 and times[after + 1] - t <= max_gap_s
            if not (wider_before or wider_after):
                return None
            before -= 1 if wider_before else 0
            after += 1 if wider_after else 0

    def __len__(self) -> int:
        return len(self.fixes)

    def __iter__(self) -> Iterator[Fix]:
        return iter(self.fixes)

    def __repr__(self) -> str:
        return (
            f"GpsTrack({self.name!r}, {len(self)} fixes, {self.start.isoformat()} .. {self.end.isoformat()})"
        )

    @property
    def start(self) -> datetime:
        """The time of the first fix (UTC)."""
        return self.fixes[0].time

    @property
    def end(self) -> datetime:
        """The time of the last fix (UTC)."""
        return self.fixes[-1].time

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def position_at(
        self,
        when: datetime,
        *,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> GeoPoint | None:
        """The position at `when` (a naive time is taken as UTC), or None where the track does not say.

        Between two fixes at most `max_gap_s` seconds apart the position is interpolated linearly in
        lat/lon (over the few hundred metres a vehicle covers in that time, a straight line in degrees
        is straight enough on the ground; a step over the 180th meridian takes the short way).
        Within `tolerance_s` seconds before the first fix, after the last, or beside a fix that
        borders a longer gap, that fix's position is given. Anywhere else outside the track, or
        inside a gap: None.
        """
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        t = (when - _EPOCH).total_seconds()
        times = self._t
        i = int(np.searchsorted(times, t, side="right"))  # times[i-1] <= t < times[i]
        if i == 0:
            return self._point(0) if times[0] - t <= tolerance_s else None
        before = i - 1
        if t == times[before]:
            return self._point(before)
        if i == len(times):
            return self._point(before) if t - times[before] <= tolerance_s else None
        t0, t1 = float(times[before]), float(times[i])
        if t1 - t0 > max_gap_s:
            if t - t0 <= tolerance_s:
                return self._point(before)
            if t1 - t <= tolerance_s:
                return self._point(i)
            return None
        share = (t - t0) / (t1 - t0)
        lat0, lat1 = float(self._lat[before]), float(self._lat[i])
        lon0, lon1 = float(self._lon[before]), float(self._lon[i])
        dlon = lon1 - lon0
        if dlon > 180.0:
            dlon -= 360.0
        elif dlon < -180.0:
            dlon += 360.0
        lon = lon0 + share * dlon
        if lon > 180.0 or lon < -180.0:
            lon = (lon + 180.0) % 360.0 - 180.0
        return GeoPoint(lat0 + share * (lat1 - lat0), lon)

    def _point(self, i: int) -> GeoPoint:
        return GeoPoint(float(self._lat[i]), float(self._lon[i]))


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance in metres (haversine)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: GeoPoint, b: GeoPoint) -> float:
    """The initial bearing from a to b, degrees clockwise from true north (0-360)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlon = math.radians(b.lon - a.lon)
    y = math.sin(dlon) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return (math.degrees(math.atan2(y, x)) + 360.0) % 360.0


# --- reading files ---


def load_track(
    path: str | os.PathLike[str], *, format: TrackFormat | None = None, tz: tzinfo = UTC
) -> GpsTrack:
    """Read a GPS track file; a TrackError naming the file, the line or point, and why.

    format: "gpx", "nmea" or "csv"; by default told from the content (XML; NMEA sentences in the
    first 20 lines, also after a prefix such as BlackVue's `[ms]`; else CSV with a header), whatever
    the file is called: a dashcam's `.gps`, `.log` or `.txt` of NMEA is read as NMEA.
    tz: the zone of CSV times written without an offset (GPX and NMEA times are UTC).
    """
    name = os.fspath(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_TRACK_BYTES:
            raise TrackError(name, f"{size} bytes is larger than a track can be ({MAX_TRACK_BYTES} bytes)")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrackError(name, f"cannot read the file ({exc.strerror or exc})") from None
    text = _decode(data, name)
    kind = format or sniff_format(text)
    if kind is None:
        raise TrackError(name, "empty file")
    # after the NMEA check: a BlackVue log's lines start with "[" too
    if format is None and kind == "csv" and text.lstrip("\ufeff \t\r\n").startswith(("{", "[")):
        raise TrackError(name, f"JSON is not a GPS track format read here ({FORMATS_READ})")
    if kind == "gpx":
        return parse_gpx(text, name=name)
    if kind == "nmea":
        return parse_nmea(text, name=name)
    if kind == "csv":
        return parse_csv(text, name=name, tz=tz)
    raise ValueError(f"unknown track format {format!r}")


def sniff_format(text: str) -> TrackFormat | None:
    """The track format of a text by its content, or None when it is empty."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return None
    if stripped.startswith("<"):
        return "gpx"
    for line in itertools.islice(io.StringIO(stripped), 20):
        if _NMEA_SENTENCE.search(line):
            return "nmea"
    return "csv"


# an XML declaration's encoding (GPX): <?xml version="1.0" encoding="GBK"?>
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")


def _decode(data: bytes, name: str) -> str:
    """The text of a track file: UTF-16 or UTF-8 by its byte-order mark; a GPX file in the encoding its
    XML declaration names (`encoding="GBK"`, as some Chinese loggers write); else UTF-8, or where that
    fails GB18030 (GBK), as Excel on a Chinese Windows saves a CSV (and some apps save a GPX that says
    it is UTF-8). Only free text (names, notes, a CSV header in Chinese) can hold the characters these
    differ in; times and coordinates are ASCII."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode_as(data, "utf-16", "UTF-16", name)
    if data.startswith(b"\xef\xbb\xbf"):
        return _decode_as(data, "utf-8-sig", "UTF-8", name)
    declared = _XML_ENCODING.match(data.lstrip(b" \t\r\n"))
    if declared:
        label = declared[1].decode("ascii")
        try:
            codec = codecs.lookup(label).name
        except LookupError:
            raise TrackError(
                name, f"line 1: the XML declaration names an unknown encoding {label!r}"
            ) from None
        # the declaration was read as ASCII, so the file is not in UTF-16 whatever it says; one that
        # says UTF-8 and is not is read as one that says nothing
        if codec != "utf-8" and not codec.startswith(("utf-16", "utf-32")):
            return _decode_as(data, codec, label, name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            line = data[: exc.start].count(b"\n") + 1
            raise TrackError(
                name, f"line {line}: not UTF-8 text (byte {exc.start}), nor GBK; save the track as UTF-8"
            ) from None
        log.info("%s: not UTF-8; read as GB18030 (GBK)", name)
        return text


def _decode_as(data: bytes, codec: str, label: str, name: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TrackError(name, f"line {line}: not {label} text (byte {exc.start})") from None


def _check_lat_lon(lat: float, lon: float) -> str | None:
    if not math.isfinite(lat) or not -90.0 <= lat <= 90.0:
        return f"bad latitude {lat} (must be -90..90)"
    if not math.isfinite(lon) or not -180.0 <= lon <= 180.0:
        return f"bad longitude {lon} (must be -180..180)"
    return None


def _parse_lat_lon(lat_text: str, lon_text: str, name: str, where: str) -> tuple[float, float]:
    """Latitude and longitude from text (GPX attributes, CSV cells); a TrackError naming `where` if
    they are no numbers or out of range."""
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise TrackError(name, f"{where}: lat/lon are not numbers: {lat_text!r}, {lon_text!r}") from None
    problem = _check_lat_lon(lat, lon)
    if problem:
        raise TrackError(name, f"{where}: {problem}")
    return lat, lon


def _finish(
    fixes: list[Fix],
    name: str,
    skipped: Counter[str],
    what: str,
    guards: Iterable[_ColumnGuard],
    notes: Iterable[str] = (),
) -> GpsTrack:
    """The track of the fixes read, with the notes given (columns set aside before reading) and the
    guards' (columns set aside by their values)."""
    notes = list(notes)
    for guard in guards:
        fixes = guard.finish(fixes)
        if guard.note:
            notes.append(guard.note)
    if skipped:
        log.warning(
            "%s: %d %s skipped (%s)",
            name,
            sum(skipped.values()),
            what,
            ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())),
        )
    if not fixes:
        detail = "no fixes with time"
        if skipped:
            detail += " (" + ", ".join(f"{n} {what} {reason}" for reason, n in sorted(skipped.items())) + ")"
        raise TrackError(name, detail)
    track = GpsTrack(fixes, name=name, skipped=skipped, notes=notes)
    log.info("%s: %d fixes, %s .. %s", name, len(track), track.start.isoformat(), track.end.isoformat())
    return track


# --- GPX ---

_FORBIDDEN_XML = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_POINT_TAGS = ("trkpt", "rtept", "wpt")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _GpxTarget:
    """An ElementTree parser target that collects points without building the tree."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.points: list[tuple[int, str, dict[str, str], dict[str, str]]] = []
        self._point: tuple[int, str, dict[str, str], dict[str, str]] | None = None
        self._depth = 0  # depth inside the current point
        self._text: list[str] = []
        self._count = 0
        self._rooted = False  # the root element was seen

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise TrackError(
            self.name, "a DOCTYPE is not allowed in a GPX track (entities could expand or reach files)"
        )

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        local = _local(tag)
        if not self._rooted:
            self._rooted = True
            if local != "gpx":
                raise TrackError(self.name, f"the root element is <{local}>, not <gpx>: not a GPX track")
        if self._point is None:
            if local in _POINT_TAGS:
                self._count += 1
                self._point = (self._count, local, dict(attrib), {})
                self._depth = 0
            return
        self._depth += 1
        self._text = []

    def data(self, text: str) -> None:
        if self._point is not None:
            self._text.append(text)

    def end(self, tag: str) -> None:
        if self._point is None:
            return
        if self._depth == 0:
            self.points.append(self._point)
            self._point = None
            return
        local = _local(tag)
        fields = self._point[3]
        if local not in fields:  # time, speed, course (GPX 1.0) or the same inside extensions (1.1)
            fields[local] = "".join(self._text).strip()
        self._text = []
        self._depth -= 1

    def close(self) -> None:
        return None


def parse_gpx(text: str, *, name: str = "track.gpx") -> GpsTrack:
    """Fixes from GPX 1.0 / 1.1 text: every trkpt, rtept and wpt that has a time, in any namespace.

    Speed (m/s) and course (degrees) are read from GPX 1.0 `<speed>`/`<course>` or from extensions
    that use those names (Garmin TrackPointExtension: `speed`, `course`). A DOCTYPE or entity
    declaration is refused before parsing (no external entities, no entity expansion bombs).
    Points are named by their number in the file (1-based, all three kinds counted together).
    """
    if _FORBIDDEN_XML.search(text):
        raise TrackError(name, "a DOCTYPE or ENTITY declaration is not allowed in a GPX track")
    target = _GpxTarget(name)
    parser = ET.XMLParser(target=target)
    try:
        parser.feed(text)  # a str: the declared encoding is ignored, the text is what was checked
        parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = re.sub(r":? line \d+, column \d+$", "", str(exc))
        raise TrackError(name, f"line {line}, column {column}: not well-formed XML ({reason})") from None
    fixes: list[Fix] = []
    skipped: Counter[str] = Counter()
    headings = _heading_guard(name, "course")
    speeds = _speed_guard(name, "speed", to_mps=1.0, unit="m/s")
    for number, kind, attrib, fields in target.points:
        where = f"point {number} ({kind})"
        if not fields.get("time"):
            skipped["without time"] += 1
            continue
        for key in ("lat", "lon"):
            if key not in attrib:
                raise TrackError(name, f"{where}: no {key} attribute")
        lat, lon = _parse_lat_lon(attrib["lat"], attrib["lon"], name, where)
        when = _parse_iso(fields["time"], UTC, name, where)
        if when is None:
            raise TrackError(name, f"{where}: time {fields['time']!r} is not ISO 8601")
        fixes.append(
            Fix(
                when,
                lat,
                lon,
                speed_mps=speeds.read(fields.get("speed"), where),
                heading_deg=headings.read(fields.get("course"), where),
            )
        )
    return _finish(fixes, name, skipped, "point(s)", (speeds, headings))


class _ColumnGuard:
    """One optional column of a track's fixes that only refines what the positions give: the heading
    (CSV heading, course or bearing; GPX and NMEA course, degrees clockwise from true north) and the
    speed (CSV speed in m/s or km/h, GPX in m/s, NMEA in knots), read into the Fix field `field`.

    A value that is no number within `low`..`high` (in the column's own unit: text such as 'N' or
    '36 km/h', a heading of 720, a speed of -5) makes the whole column untrusted: `finish` then drops
    that field from every fix, with a note naming the first such value, and the track is read as one
    without the column. A wrong heading would misplace what the camera sees (detect.ground projects it
    from the vehicle's heading); a wrong speed would call a standing vehicle moving and trust its
    receiver's course (GpsTrack.heading_at); a missing one costs nothing the positions cannot give, so
    the track (and its upload) is kept. An empty cell or NaN is unknown. `read` gives the value times
    `factor` (to the field's unit)."""

    def __init__(
        self,
        name: str,
        column: str,
        *,
        field: Literal["heading_deg", "speed_mps"],
        low: float,
        high: float,
        expected: str,
        instead: str,
        factor: float = 1.0,
    ) -> None:
        self.name = name
        self.column = column
        self.field = field
        self.low, self.high, self.factor = low, high, factor
        self.expected = expected  # what a value must be, bounds and unit included
        self.instead = instead  # how the track is read without the column
        self.bad = 0
        self.first_bad = ""
        self.note: str | None = None  # set by finish when the column is ignored

    def read(self, text: str | None, where: str) -> float | None:
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            return None
        if value is None or not self.low <= value <= self.high:
            self.bad += 1
            shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"  # a cell may be 128 KiB
            self.first_bad = self.first_bad or f"{where}: {self.column} {shown!r}"
            return None
        return value * self.factor

    def finish(self, fixes: list[Fix]) -> list[Fix]:
        if not self.bad:
            return fixes
        self.note = (
            f"{self.first_bad} is not {self.expected}: the track's {self.column} column is ignored "
            f"({self.bad} such value(s)), {self.instead}"
        )
        log.warning("%s: %s", self.name, self.note)
        if self.field == "heading_deg":
            return [replace(fix, heading_deg=None) for fix in fixes]
        return [replace(fix, speed_mps=None) for fix in fixes]


def _heading_guard(name: str, column: str) -> _ColumnGuard:
    return _ColumnGuard(
        name,
        column,
        field="heading_deg",
        low=-MAX_HEADING_DEG,
        high=MAX_HEADING_DEG,
        expected=f"degrees within one turn (-{MAX_HEADING_DEG:g}..{MAX_HEADING_DEG:g})",
        instead="the heading taken from the fixes",
    )


def _speed_guard(name: str, column: str, *, to_mps: float, unit: str) -> _ColumnGuard:
    """A speed column in `unit` (to_mps of them make one m/s): 0 up to MAX_SPEED_MPS, faster than any
    patrol vehicle drives (a km/h column read as m/s, a logger's garbage)."""
    high = MAX_SPEED_MPS / to_mps
    return _ColumnGuard(
        name,
        column,
        field="speed_mps",
        low=0.0,
        high=high,
        expected=f"a speed within 0..{high:.0f} {unit}",
        instead="the track read without speeds",
        factor=to_mps,
    )


def _parse_iso(text: str, tz: tzinfo, name: str, where: str) -> datetime | None:
    """An ISO 8601 date-time as aware UTC (None when it is none); a time without an offset is taken
    in `tz`; a day without a time of day (which fromisoformat reads as its midnight: every fix of a
    logger that writes only the day would be one instant) or a time outside _EPOCH .. _END is a
    TrackError naming `where`."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        pass  # a date and a time
    else:
        raise TrackError(name, f"{where}: time {text.strip()!r} is a day without a time of day")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    if not _EPOCH <= value < _END:  # compared before converting: year 1 at +14:00 has no UTC time
        raise TrackError(name, f"{where}: time {text.strip()!r} is outside {_EPOCH.year}..{_END.year - 1}")
    return value.astimezone(UTC)


# --- NMEA 0183 ---

_NMEA_SENTENCE = re.compile(r"\$[A-Z][A-Z0-9]{4},")  # $GPRMC, $GNGGA, $GPGSV, $PGRMZ...
# BlackVue's .gps: each sentence after the Unix time in milliseconds the camera wrote it at,
# `[1617181920123]$GPRMC,...` (now and then the next line's such time glued after the checksum).
_WRITTEN_MS = re.compile(r"\s*\[(\d{1,16})\]\s*")


def _written_at(prefix: str) -> datetime | None:
    """The time a `[ms]` prefix says the line was written at; None without one or outside 1970..2200."""
    match = _WRITTEN_MS.fullmatch(prefix)
    if match is None or int(match[1]) >= (_END - _EPOCH).total_seconds() * 1000:
        return None
    return _EPOCH + timedelta(milliseconds=int(match[1]))


def _dated_by(written: datetime, tod: timedelta) -> datetime:
    """The time of day `tod` (UTC) on the day that puts it nearest the time `written`."""
    midnight = datetime.combine(written.date(), datetime.min.time(), tzinfo=UTC) + tod
    return min((midnight + timedelta(days=d) for d in (-1, 0, 1)), key=lambda t: abs(t - written))


def _nmea_checksum_ok(body: str, given: str) -> bool:
    value = 0
    for ch in body:
        value ^= ord(ch)
    try:
        return value == int(given[:2], 16)
    except ValueError:
        return False


def _nmea_angle(value: str, hemisphere: str, degree_digits: int) -> float:
    """ddmm.mmmm (latitude) or dddmm.mmmm (longitude) with N/S or E/W, as signed degrees."""
    if len(value.split(".")[0]) != degree_digits + 2:
        raise ValueError(f"{value!r} is not {'d' * degree_digits}mm.mmmm")
    degrees = int(value[:degree_digits])
    minutes = float(value[degree_digits:])
    if not 0.0 <= minutes < 60.0:
        raise ValueError(f"minutes {minutes} out of range")
    signed = degrees + minutes / 60.0
    if hemisphere in ("S", "W"):
        return -signed
    if hemisphere not in ("N", "E"):
        raise ValueError(f"hemisphere {hemisphere!r}")
    return signed


def _nmea_time(value: str) -> timedelta:
    """hhmmss(.sss) as the time of day."""
    if len(value) < 6:
        raise ValueError(f"time {value!r}")
    hours, minutes, seconds = int(value[0:2]), int(value[2:4]), float(value[4:])
    if hours > 23 or minutes > 59 or seconds >= 61:
        raise ValueError(f"time {value!r}")
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _nmea_date(value: str) -> date:
    """ddmmyy; two-digit years are 2000-2099 (NMEA 0183 RMC carries no century)."""
    if len(value) != 6:
        raise ValueError(f"date {value!r}")
    return date(2000 + int(value[4:6]), int(value[2:4]), int(value[0:2]))


def parse_nmea(text: str, *, name: str = "track.nmea") -> GpsTrack:
    """Fixes from NMEA 0183 text: RMC sentences (date and time) and GGA sentences (time only, dated
    by the last RMC before them; a GGA time-of-day well before that RMC's is taken as the next day).

    Any talker is accepted ($GP, $GN, $GL, $GA, $BD...), after any prefix on its line (a logger's
    time). BlackVue's `.gps` writes `[ms]` before each sentence, the Unix time in milliseconds the
    camera wrote the line at: a fix's time is still its RMC's own date and time (the receiver's, when
    the fix was taken; the line is written up to a second later by the camera's clock), and the
    `[ms]` only dates a GGA that comes before any RMC (its time of day on the day nearest the `[ms]`),
    and such a GGA is dropped where it is not within DEFAULT_MAX_GAP_S before the first RMC's fix (the
    camera's clock was wrong).
    A sentence is skipped, and counted by reason, when its `*hh` checksum is present and wrong, when
    it reports no fix (RMC status 'V', GGA quality 0), when a GGA comes before any RMC gave a date
    (and has no `[ms]`), or when its fields cannot be read (a logger cut off mid-line). Other sentence
    types are ignored. The counts are logged; only a file with no usable fix at all is an error.
    """
    fixes: list[Fix] = []
    skipped: Counter[str] = Counter()
    first_problem: str | None = None
    void_lines: list[int] = []  # sentences without a lock (the receiver had no fix there)
    headings = _heading_guard(name, "course")
    speeds = _speed_guard(name, "speed", to_mps=KNOTS_TO_MPS, unit="knots")
    day: date | None = None
    rmc_tod: timedelta | None = None
    by_clock: list[int] = []  # fixes of GGAs dated by the camera's [ms] (before any RMC)
    first_rmc: datetime | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        start = raw.find("$")
        if start < 0:
            continue
        written = _written_at(raw[:start])
        sentence = raw[start:].strip()
        body, star, given = sentence[1:].partition("*")
        if star and not _nmea_checksum_ok(body, given):
            skipped["bad checksum"] += 1
            first_problem = first_problem or f"line {number}: bad checksum"
            continue
        fields = body.split(",")
        kind = fields[0][2:] if len(fields[0]) == 5 else ""
        if kind not in ("RMC", "GGA"):
            continue
        try:
            if kind == "RMC":
                if len(fields) < 10:
                    raise ValueError(f"{len(fields)} fields")
                if fields[2] != "A":
                    skipped["void fix"] += 1
                    void_lines.append(number)
                    continue
                tod = _nmea_time(fields[1])
                day, rmc_tod = _nmea_date(fields[9]), tod
                lat = _nmea_angle(fields[3], fields[4], 2)
                lon = _nmea_angle(fields[5], fields[6], 3)
                # speed and course are optional: NaN is unknown, a value that is no speed or no degrees
                # makes the column ignored, as in CSV (see _ColumnGuard)
                speed = speeds.read(fields[7], f"line {number}")
                heading = headings.read(fields[8], f"line {number}")
                when = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + tod
            else:
                if len(fields) < 7:
                    raise ValueError(f"{len(fields)} fields")
                if fields[6] in ("", "0"):
                    skipped["void fix"] += 1
                    void_lines.append(number)
                    continue
                tod = _nmea_time(fields[1])
                if day is not None and rmc_tod is not None:
                    gga_day = day + timedelta(days=1) if tod < rmc_tod - timedelta(hours=12) else day
                    when = datetime.combine(gga_day, datetime.min.time(), tzinfo=UTC) + tod
                elif written is not None:
                    when = _dated_by(written, tod)
                    by_clock.append(len(fixes))
                else:
                    skipped["GGA before any dated RMC"] += 1
                    continue
                lat = _nmea_angle(fields[2], fields[3], 2)
                lon = _nmea_angle(fields[4], fields[5], 3)
                speed = heading = None
        except ValueError as exc:
            skipped["unreadable"] += 1
            first_problem = first_problem or f"line {number}: {kind} sentence unreadable ({exc})"
            continue
        problem = _check_lat_lon(lat, lon)
        if problem:
            skipped["out of range"] += 1
            first_problem = first_problem or f"line {number}: {problem}"
            continue
        fixes.append(Fix(when, lat, lon, speed_mps=speed, heading_deg=heading))
        if kind == "RMC" and first_rmc is None:
            first_rmc = when
    if by_clock and first_rmc is not None:
        earliest = first_rmc - timedelta(seconds=DEFAULT_MAX_GAP_S)
        far = {i for i in by_clock if not earliest <= fixes[i].time <= first_rmc}
        if far:
            skipped["GGA dated by a camera clock far from the RMC times"] += len(far)
            fixes = [fix for i, fix in enumerate(fixes) if i not in far]
    if first_problem:
        log.warning("%s: first bad sentence: %s", name, first_problem)
    if void_lines:
        log.warning(
            "%s: %d sentence(s) without a fix dropped, lines %d..%d",
            name,
            len(void_lines),
            void_lines[0],
            void_lines[-1],
        )
    return _finish(fixes, name, skipped, "sentence(s)", (speeds, headings))


# --- CSV ---

# Column names as they are matched: lower case, a unit in parentheses or brackets set apart (`speed (km/h)`,
# `速度（km/h）`, `speed[kmh]`, `Latitude (°)`), runs of spaces and underscores made one underscore (`date
# time` is `date_time`). Chinese names as Chinese logger apps and spreadsheets export them.
TIME_COLUMNS = (
    "time",
    "timestamp",
    "datetime",
    "utc",
    "date_time",
    "time_utc",
    "时间",
    "定位时间",
    "日期时间",
    "时间戳",
)
# a day written apart from the time (date,time,lat,lon: a phone logger's or a spreadsheet's export)
DATE_COLUMNS = ("date", "日期")
# a time of day, as a time column beside a date column holds it: 08:15:02, 8:15, 08:15:02.5+08:00, 08:15:02Z
_TIME_OF_DAY = re.compile(r"(\d{1,2})(:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)")
# a day as a date column holds it: 2026-11-03, or 2026/11/3 as a spreadsheet on a Chinese Windows writes it
_DAY = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
# a day and a time of day in one cell as Excel on a Chinese Windows writes them: 2026/11/3 8:15:02
_SPREADSHEET_TIME = re.compile(r"(\d{4}/\d{1,2}/\d{1,2})\s+(\d{1,2}:\S*)")
LAT_COLUMNS = ("lat", "latitude", "纬度")
LON_COLUMNS = ("lon", "lng", "long", "longitude", "经度")
# the units a latitude, longitude or heading column's name may carry: all degrees
DEGREE_UNITS = ("deg", "degree", "degrees", "°", "度")
# speed columns and their unit; None: the name says none (`speed`, `速度`), m/s unless the track's own
# movement says km/h (see _bare_speed_unit). A unit in the name's parentheses (`speed(km/h)`) decides.
SPEED_COLUMNS: dict[str, str | None] = {
    "speed": None,
    "速度": None,
    "speed_mps": "m/s",
    "speed_m_s": "m/s",
    "speed_kmh": "km/h",
    "speed_kph": "km/h",
}
# a speed column's unit as its name writes it (spaces dropped, lower case)
SPEED_UNITS = {
    **dict.fromkeys(
        ("km/h", "kmh", "kph", "km/hr", "kmph", "公里/小时", "公里/时", "千米/时", "千米/小时"), "km/h"
    ),
    **dict.fromkeys(("m/s", "mps", "m/sec", "米/秒"), "m/s"),
    **dict.fromkeys(("knots", "knot", "kn", "kt", "kts", "节"), "knots"),
}
SPEED_UNITS_TO_MPS = {"m/s": 1.0, "km/h": 1 / 3.6, "knots": KNOTS_TO_MPS}
HEADING_COLUMNS = ("heading", "course", "bearing", "方向", "航向", "方位", "方位角")
# a column name and the unit it carries: `speed (km/h)`, `速度（米/秒）`, `speed[kmh]`
_NAMED_UNIT = re.compile(r"(.*?)\s*[(\[（【]\s*([^)\]）】]*?)\s*[)\]）】]")
# A bare speed column is read as km/h when its values are KMH_PER_MPS times the speed between the
# track's own fixes, within this share either way (median over the moving steps), and there are at
# least MIN_UNIT_STEPS of those: steps between fixes at most DEFAULT_MAX_GAP_S apart at MIN_UNIT_MOVE_MPS
# (less is mostly GPS noise of a few metres) to MAX_SPEED_MPS (more is a jump).
KMH_PER_MPS = 3.6
UNIT_TOLERANCE = 0.25
MIN_UNIT_STEPS = 5
MIN_UNIT_MOVE_MPS = 2.0
# Unix seconds beyond this (year 5138) are surely milliseconds or microseconds: refused, not guessed.
_MAX_UNIX_S = 1e11
# Unix seconds before this (2000-01-01T00:00:00Z) are surely something else: seconds from the start of
# a recording (0, 1, 2 ...) or a time of day written hhmmss (080000): read as Unix seconds they would
# date the footage aligned on the track, and its cases, in 1970. Refused, not guessed.
_MIN_UNIX_S = 946_684_800


def _csv_rows(reader: Any, name: str) -> Iterator[list[str]]:
    """The reader's rows; a row the csv module cannot read (a cell over its field size limit, a NUL
    byte) is a TrackError naming its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TrackError(name, f"line {reader.line_num}: {exc}") from None
        yield row


def parse_csv(text: str, *, name: str = "track.csv", tz: tzinfo = UTC) -> GpsTrack:
    """Fixes from CSV text with a header row (comma, semicolon or tab separated).

    Columns, matched case-insensitively, in English or in Chinese, a unit in parentheses or brackets
    after the name set apart (`speed (km/h)`, `速度(米/秒)`, `lat[deg]`): time (`time`, `timestamp`,
    `datetime`, `date time`, `utc`, `时间`, `定位时间`, `日期时间`, `时间戳`: ISO 8601 with or without an
    offset, `2026/11/3 8:15:02` as a spreadsheet writes it, or Unix seconds from 2000 on; a time of
    day such as `08:15:02` with its day in a `date` /
    `日期` column, year first), latitude (`lat`, `latitude`, `纬度`), longitude (`lon`, `lng`, `long`,
    `longitude`, `经度`) in WGS84 degrees (a unit other than degrees, or a zone in a time column's name,
    is a TrackError naming the column); optional speed and heading (`heading`, `course`, `bearing`,
    `方向`, `航向`, `方位`, `方位角`: degrees). Speed: `speed_mps`, `speed_kmh`, `speed_kph`, or `speed` /
    `速度` with its unit in the name (km/h, kmh, kph, km/hr,
    公里/小时, 千米/时; m/s, mps, 米/秒; knots, kn, 节); without one, m/s unless the track's own movement
    says km/h (see _bare_speed_unit). A speed or heading column whose unit is none of these is ignored
    with a note. Other columns (`海拔`, `altitude`, notes) are ignored. Times without an offset are in `tz`
    (default UTC). Rows with an empty latitude and longitude (no fix) are skipped; a heading column with
    a value that is no heading (text, beyond one turn) or a speed column with one that is no speed (text
    such as '36 km/h', below 0, over MAX_SPEED_MPS) is ignored with a warning (see _ColumnGuard); any
    other bad value is a TrackError naming the line.
    """
    body = text.lstrip("\ufeff")
    header_line = next((line for line in io.StringIO(body) if line.strip()), None)
    if header_line is None:
        raise TrackError(name, "empty file")
    delimiter = max((",", ";", "\t"), key=header_line.count)
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    header: list[str] | None = None
    columns: dict[str, int] = {}
    speed_unit: str | None = "m/s"
    notes: list[str] = []
    fixes: list[Fix] = []
    speed_cells: list[tuple[str, str]] = []  # each fix's speed cell and where it is, read at the end
    skipped: Counter[str] = Counter()
    headings = _heading_guard(name, "heading")
    for row in _csv_rows(reader, name):
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        if header is None:
            header = [cell.strip().lower() for cell in row]
            names = [_column_name(cell) for cell in header]
            if not {base for base, _ in names} & {*TIME_COLUMNS, *LAT_COLUMNS, *LON_COLUMNS}:
                # no XML, no NMEA and no column of a CSV track: some other file (a dashcam's event log)
                first = delimiter.join(row)
                shown = first if len(first) <= MAX_SHOWN else first[:MAX_SHOWN] + "..."
                raise TrackError(
                    name,
                    f"not a GPS track (line {line}, {shown!r}, is no CSV header with time, lat and lon "
                    f"columns); tracks read: {FORMATS_READ}",
                )
            columns, speed_unit = _csv_columns(header, names, name, line, notes)
            if "heading" in columns:
                headings = _heading_guard(name, header[columns["heading"]])
            continue
        lat_text, lon_text, time_text = (
            _cell(row, columns, "lat"),
            _cell(row, columns, "lon"),
            _cell(row, columns, "time"),
        )
        if not lat_text and not lon_text:
            skipped["without a fix"] += 1
            continue
        lat, lon = _parse_lat_lon(lat_text, lon_text, name, f"line {line}")
        if not time_text:
            raise TrackError(name, f"line {line}: no time")
        spreadsheet = _SPREADSHEET_TIME.fullmatch(time_text)
        if _TIME_OF_DAY.fullmatch(time_text):
            time_text = _dated(time_text, _cell(row, columns, "date"), "date" in columns, name, line)
        elif spreadsheet and _TIME_OF_DAY.fullmatch(spreadsheet[2]):
            time_text = _dated(spreadsheet[2], spreadsheet[1], True, name, line)
        when = _csv_time(time_text, tz, name, line)
        where = f"line {line}"
        fixes.append(Fix(when, lat, lon, heading_deg=headings.read(_cell(row, columns, "heading"), where)))
        speed_cells.append((_cell(row, columns, "speed"), where))
    speeds = _speed_guard(name, "speed", to_mps=1.0, unit="m/s")
    if "speed" in columns and header is not None:
        column = header[columns["speed"]]
        if speed_unit is None:
            speed_unit = _bare_speed_unit(fixes, [cell for cell, _ in speed_cells], name, column)
        speeds = _speed_guard(name, column, to_mps=SPEED_UNITS_TO_MPS[speed_unit], unit=speed_unit)
        fixes = [
            replace(fix, speed_mps=speeds.read(cell, where))
            for fix, (cell, where) in zip(fixes, speed_cells, strict=True)
        ]
    return _finish(fixes, name, skipped, "row(s)", (speeds, headings), notes)


def _column_name(cell: str) -> tuple[str, str | None]:
    """A header cell (stripped, lower case) as the name it is matched by and the unit it carries:
    `speed (km/h)` is ("speed", "km/h"), `速度（米/秒）` ("速度", "米/秒"), `date time`
    ("date_time", None)."""
    named = _NAMED_UNIT.fullmatch(cell)
    base, unit = (named[1], named[2]) if named else (cell, None)
    return re.sub(r"[\s_]+", "_", base.strip()), re.sub(r"\s+", "", unit) if unit else None


def _bare_speed_unit(fixes: list[Fix], cells: list[str], name: str, column: str) -> str:
    """The unit of a speed column whose name says none: km/h where its values are about KMH_PER_MPS
    times the speed the fixes themselves move at (Columbus and Holux loggers, many phone apps), else
    m/s. Told from the median, over the steps between consecutive fixes that move (see MIN_UNIT_STEPS),
    of the column's speed (the mean of the step's two ends) over the step's distance / time; with fewer
    such steps nothing is guessed (m/s), and a column that matches neither unit is left to its guard."""
    values: list[float | None] = []
    for cell in cells:
        try:
            value: float | None = float(cell)
        except ValueError:
            value = None
        values.append(value if value is not None and math.isfinite(value) and value >= 0 else None)
    ratios: list[float] = []
    order = sorted(range(len(fixes)), key=lambda i: fixes[i].time)
    for i, j in itertools.pairwise(order):
        a, b = fixes[i], fixes[j]
        seconds = (b.time - a.time).total_seconds()
        said_a, said_b = values[i], values[j]
        if said_a is None or said_b is None or not 0 < seconds <= DEFAULT_MAX_GAP_S:
            continue
        moved = distance_m(GeoPoint(a.lat, a.lon), GeoPoint(b.lat, b.lon)) / seconds
        if MIN_UNIT_MOVE_MPS <= moved <= MAX_SPEED_MPS:
            ratios.append((said_a + said_b) / 2 / moved)
    if len(ratios) < MIN_UNIT_STEPS:
        return "m/s"
    ratio = float(np.median(ratios))
    if abs(ratio / KMH_PER_MPS - 1) <= UNIT_TOLERANCE:
        log.info(
            "%s: the %s column is %.1f times the speed between the fixes (median of %d moving steps): "
            "read as km/h",
            name,
            column,
            ratio,
            len(ratios),
        )
        return "km/h"
    return "m/s"


def _cell(row: list[str], columns: dict[str, int], key: str) -> str:
    index = columns.get(key)
    return row[index].strip() if index is not None and index < len(row) else ""


def _dated(time_of_day: str, day: str, has_date_column: bool, name: str, line: int) -> str:
    """A time of day from a time column with the day from the date column beside it, as ISO 8601
    (`2026-11-03T08:15:02`); a TrackError naming the line when there is no date column, its cell is
    empty, or it holds no day written year first."""
    if not has_date_column:
        raise TrackError(
            name,
            f"line {line}: time {time_of_day!r} is a time of day without a day: write ISO 8601 times "
            "(2026-11-03T08:15:02+08:00), or the day in a date column (date,time,lat,lon)",
        )
    if not day:
        raise TrackError(name, f"line {line}: the date column is empty beside time {time_of_day!r}")
    match = _DAY.fullmatch(day)
    try:
        when = date(*(int(part) for part in match.groups())) if match else None
    except ValueError:  # 2026-13-03, 2026-02-30
        when = None
    if when is None:
        shown = day if len(day) <= MAX_SHOWN else day[:MAX_SHOWN] + "…"
        raise TrackError(name, f"line {line}: date {shown!r} is not a date written year first (2026-11-03)")
    clock = _TIME_OF_DAY.fullmatch(time_of_day)
    assert clock is not None  # the caller matched it
    return f"{when.isoformat()}T{int(clock[1]):02d}{clock[2]}"


def _csv_columns(
    header: list[str], names: list[tuple[str, str | None]], name: str, line: int, notes: list[str]
) -> tuple[dict[str, int], str | None]:
    """The index of each column found, by key (time, lat, lon, speed, heading, date), and the speed's
    unit (None: its name says none). `names` are the header's cells as _column_name gives them. A speed
    or heading column in a unit not read is left out, with a note added to `notes`; a latitude or
    longitude one, or a time or date column whose name carries anything (a zone: `time(UTC)`), is a
    TrackError."""

    def find(candidates: Iterable[str], what: str, required: bool) -> int | None:
        for candidate in candidates:
            for index, (base, _) in enumerate(names):
                if base == candidate:
                    return index
        if required:
            raise TrackError(
                name,
                f"line {line}: the header has no {what} column (one of {', '.join(candidates)}); "
                f"it has {', '.join(header)}",
            )
        return None

    def unit_not_read(index: int, what: str) -> str:
        return f"line {line}: the {header[index]} column is in {names[index][1]!r}, not {what}"

    columns: dict[str, int] = {}
    for key, candidates, what in (
        ("time", TIME_COLUMNS, "time"),
        ("lat", LAT_COLUMNS, "latitude"),
        ("lon", LON_COLUMNS, "longitude"),
    ):
        index = find(candidates, what, True)
        assert index is not None
        unit = names[index][1]
        if key != "time" and unit is not None and unit not in DEGREE_UNITS:
            raise TrackError(name, unit_not_read(index, "degrees") + " (WGS84 degrees are read)")
        columns[key] = index
    day = find(DATE_COLUMNS, "date", False)
    if day is not None:
        columns["date"] = day
    for key in ("time", "date"):
        index = columns.get(key)
        if index is not None and names[index][1] is not None:  # time(UTC), 时间(北京时间): not guessed
            raise TrackError(
                name,
                f"line {line}: the {header[index]} column's name says {names[index][1]!r}, which is not "
                f"read: name it {names[index][0]} and write each time's offset (2026-11-03T08:15:02+08:00) "
                "where it is not the camera's time zone",
            )
    speed_unit: str | None = "m/s"
    speed = find(SPEED_COLUMNS, "speed", False)
    if speed is not None:
        base, unit = names[speed]
        if unit is None:
            columns["speed"], speed_unit = speed, SPEED_COLUMNS[base]
        elif unit in SPEED_UNITS:  # the unit in the name decides
            columns["speed"], speed_unit = speed, SPEED_UNITS[unit]
        else:
            notes.append(unit_not_read(speed, "km/h, m/s or knots") + ": the track read without speeds")
            log.warning("%s: %s", name, notes[-1])
    heading = find(HEADING_COLUMNS, "heading", False)
    if heading is not None:
        unit = names[heading][1]
        if unit is None or unit in DEGREE_UNITS:
            columns["heading"] = heading
        else:
            notes.append(unit_not_read(heading, "degrees") + ": the heading taken from the fixes")
            log.warning("%s: %s", name, notes[-1])
    return columns, speed_unit


def _csv_time(text: str, tz: tzinfo, name: str, line: int) -> datetime:
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or abs(seconds) > _MAX_UNIX_S:
            raise TrackError(name, f"line {line}: time {text} is not Unix seconds (milliseconds?)")
        if not 0 <= seconds < (_END - _EPOCH).total_seconds():
            raise TrackError(name, f"line {line}: time {text} is outside {_EPOCH.year}..{_END.year - 1}")
        if seconds < _MIN_UNIX_S:
            as_unix = (_EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
            raise TrackError(
                name,
                f"line {line}: time {text} as Unix seconds is {as_unix}, no time of a patrol (seconds from "
                "the recording's start, or a time of day hhmmss?); write ISO 8601 times "
                "(2026-11-20T09:00:00+08:00) or Unix seconds",
            )
        return _EPOCH + timedelta(seconds=seconds)
    when = _parse_iso(text, tz, name, f"line {line}")
    if when is None:
        raise TrackError(name, f"line {line}: time {text!r} is neither ISO 8601 nor Unix seconds")
    return when


# --- alignment with footage ---


def with_track_positions(
    frames: Iterable[Frame],
    track: GpsTrack,
    *,
    local_tz: tzinfo = UTC,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Iterator[Frame]:
    """The frames, each with `position` (and `heading`, where the vehicle moves) from the track at the
    frame's time.

    A frame's time is its `wall_time` (naive wall times are in `local_tz`, as a camera's local time).
    When the first frame has no wall time, the footage is aligned on the track: the first frame is
    taken to be the moment of the track's first fix, a later frame `ts - first ts` seconds after it,
    and each frame gets that time as its wall time (UTC). Where the track gives no position (outside
    it, or in a gap; see GpsTrack.position_at) the frame keeps the position it came with (a camera's
    configured position, or None). How many frames the track did not cover is logged at the end.
    """
    aligned_start: float | None = None
    located = uncovered = 0
    first = True
    try:
        for frame in frames:
            if first:
                first = False
                if frame.wall_time is None:
                    aligned_start = frame.ts
                    log.info(
                        "%s: footage start time unknown; its first frame is aligned with the track's "
                        "first fix (%s)",
                        track.name,
                        track.start.isoformat(),
                    )
            when: datetime | None
            if aligned_start is not None:
                when = track.start + timedelta(seconds=frame.ts - aligned_start)
                frame = replace(frame, wall_time=when)
            elif frame.wall_time is not None:
                when = frame.wall_time
                if when.tzinfo is None:
                    when = when.replace(tzinfo=local_tz)
            else:  # a source that knew the start of its footage gives every frame a wall time
                when = None
            position = track.position_at(when, max_gap_s=max_gap_s, tolerance_s=tolerance_s) if when else None
            if position is None:
                uncovered += 1
            else:
                located += 1
                assert when is not None
                frame = replace(frame, position=position, heading=track.heading_at(when, max_gap_s=max_gap_s))
            yield frame
    finally:
        if uncovered:
            log.warning(
                "%s: %d of %d frame(s) fell outside the track or in a gap over %.0f s; they kept the "
                "camera's configured position, if any",
                track.name,
                uncovered,
                located + uncovered,
                max_gap_s,
            )
