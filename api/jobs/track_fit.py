"""How much of an upload's footage its GPS track places: shown on the job, not only in the log.

A track that covers another stretch of time than the footage (a start time read in the wrong zone, the
wrong day's log) places none of its frames: the job still finishes, its incidents without positions.
The pipeline only logs that (streams.gps.with_track_positions), so when a job with a track is done the
worker (or, for a runner's job, the service) measures it again here, from the footage's length and the
same alignment: frame k of the analysed frames is at start_time + k / fps (or, with no start time, at
the track's first fix + k / fps), placed where `GpsTrack.position_at` gives a position. A share under
`WARN_BELOW` becomes the job's warning, naming both time spans so that an offset shows; a track that
placed no frame at all lets the footage be sent again with a corrected start time or track
(api.jobs.uploads). Footage sent without a start time is placed at the track's first fix, a guess
that places the frames whatever the truth: where the track runs longer than the footage (a logger
started before the camera, as a crew's phone app is) the footage may have begun anywhere in it, and
where it runs shorter (a logger started after the camera) the footage may have begun before it; the
job then says so, and the footage may be sent again with its start time. What the track's reader set aside
(GpsTrack.notes: a heading column that is no degrees or a speed column that is no speed, ignored) joins
the warning, so the crew that sent the track learns of it, also when the footage's length is not known
and nothing else is measured.

streams is imported inside `measure_track_fit` only, as the worker imports it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

log = logging.getLogger(__name__)

WARN_BELOW = 0.5  # the share of frames placed under which the job says so
MAX_SAMPLES = 20_000  # an hour at 5 fps; longer footage is sampled evenly
# Footage without a start time whose length and its track's differ by more than this was placed on the
# track by a guess, which the job says (streams.gps.DEFAULT_TOLERANCE_S, a fix's reach in time).
GUESS_SLACK_S = 5.0


@dataclass(frozen=True, slots=True)
class TrackFit:
    """`covered` of `frames` analysed frames (or evenly spaced samples of them) had a position from
    the track, both None when the footage's length is not known (nothing measured); `warning` when that
    share is under WARN_BELOW, or the track's reader set part of it aside (streams.gps.GpsTrack.notes),
    measured or not."""

    covered: int | None
    frames: int | None
    warning: str | None

    @property
    def share(self) -> float | None:
        """The share of frames placed; None when not measured."""
        return self.covered / self.frames if self.covered is not None and self.frames else None


def _span(start: datetime, end: datetime, tz: tzinfo) -> str:
    a, b = start.astimezone(tz), end.astimezone(tz)
    return f"{a.isoformat(timespec='seconds')} .. {b.isoformat(timespec='seconds')}"


def _length(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def measure_track_fit(
    *,
    track: Path,
    footage: Path,
    start_time: datetime | None,
    tz: tzinfo,
    analysis_fps: float | None,
    track_name: str | None = None,
) -> TrackFit:
    """The fit of `track` (CSV times without an offset in `tz`, the camera's zone) to `footage` starting
    at `start_time` (aware; None: aligned with the track's first fix); when the footage's length is not
    known, nothing measured but the reader's notes still the warning, which names the track by
    `track_name` (its file name as sent; default the file's). A track or footage that cannot be read
    raises streams' named errors."""
    from streams import open_source
    from streams.gps import load_track

    gps = load_track(track, tz=tz).without_jumps()  # as the pipeline reads it
    source = open_source(footage)
    try:
        duration_s, native_fps = source.info.duration_s, source.info.fps
    finally:
        source.close()
    named = f"GPS track '{track_name or track.name}'"
    notes = [f"{named}: {note}" for note in gps.notes]  # what the reader set aside (a column ignored)
    fps = analysis_fps or native_fps
    if not duration_s or not fps:
        return TrackFit(None, None, "; ".join(notes) or None)
    frames = max(1, math.ceil(duration_s * fps))
    step = max(1, math.ceil(frames / MAX_SAMPLES))
    first = start_time if start_time is not None else gps.start
    samples = range(0, frames, step)
    covered = sum(gps.position_at(first + timedelta(seconds=k / fps)) is not None for k in samples)
    share = covered / len(samples)
    if start_time is None and abs(gps.duration_s - duration_s) > GUESS_SLACK_S:
        notes.append(
            "the footage came without a start time, so its first frame was taken to be the first fix of "
            f"{named}: the track runs {_span(gps.start, gps.end, tz)}, {_length(gps.duration_s)} for "
            f"{_length(duration_s)} of footage; unless the recording began when the track did, its "
            "incidents' places and times are wrong: send the footage again with its start time"
        )
    if share >= WARN_BELOW:
        return TrackFit(covered, len(samples), "; ".join(notes) or None)
    footage_end = first + timedelta(seconds=duration_s)
    how = "none" if covered == 0 else f"only {round(100 * share)}%"
    warning = (
        f"{named} placed {how} of the footage's frames: the footage runs "
        f"{_span(first, footage_end, tz)}, the track {_span(gps.start, gps.end, tz)}; "
        "incidents outside the track have no position from it"
    )
    if not covered:
        warning += "; if the start time or the track is wrong, send the footage again with the right one"
    return TrackFit(covered, len(samples), "; ".join([*notes, warning]))


def start_time_utc(stored: datetime | None) -> datetime | None:
    """An upload's start time as stored (naive UTC) made aware, as the pipeline is given it."""
    return stored.replace(tzinfo=UTC) if stored is not None else None
