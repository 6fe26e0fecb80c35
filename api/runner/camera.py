"""One live camera analysed by a runner: its stream through the site's detector and rules, each
incident with its evidence into the camera's spool, the spool forwarded to the case service, and the
camera's live state reported to it every few seconds.

The camera comes from the case service's registry (GET /api/runner/cameras: id, stream URL, position,
time zone, zones, active hours); everything else (model, kinds, rule categories) from the runner's site
config. Outside the camera's active hours the stream is closed and nothing is analysed; the job sleeps
until their next span starts (looking again at least every HOURS_CHECK_S), so the camera opens its
stream when its hours begin. The hours' end is seen at the next frame, or at the next state report
(every `report_s`) while no frame comes (a stream stalled, its source waiting to reconnect), and closes
the stream. When the hours end or the job is stopped (the camera disabled, changed or moved, the
runner stopping), the violations still open end there: their last word is spooled, and sent
for up to FLUSH_S while the service answers (else later, by the runner's sweeper: api.runner.backlog); a
send still unanswered SEND_WAIT_S later is abandoned, its incidents kept, before the spool is let go
(with the camera's last state report, within STOP_S however slow the service is to answer). A
stream that cannot be opened or is lost for longer than the reconnect policy allows is retried after a
pause, with the reason as the camera's last error; a stream that has given no frame for `stall_s` while
its source waits to reconnect (minutes, by its reconnect policy) reports that as its last error
meanwhile, with the camera's own word on why when it gives one (asked in plain RTSP: a password
changed at the camera's reboot, its stream's path gone, nothing listening), which the source, only
retrying, would tell only when its policy gives up. The last frame's time is reported on the case
service's clock (this machine's own, moved by how far it is from the Date of the service's last
answer): a runner whose clock is behind would otherwise have its cameras taken offline while they
stream. That difference goes with each report
(clock_offset_s: this machine's clock minus the service's, negative when behind; left out before the
first answer, and from then on when the service refuses the field: an older version), so the service
shows and flags it with the camera. An incident that cannot be written to this
machine's disk (full) is lost: that is the camera's last error, and its stream is analysed again after
the same pause. The stream URL's credentials appear in no log line and no report
(streams.mask_credentials).
"""

from __future__ import annotations

import email.utils
import errno
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from api.runner.forwarder import Forwarder
from api.runner.spool import Spool, SpoolBusy

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "site.yaml"
REPORT_S = 5.0  # how often the camera's state is reported
FPS_WINDOW_S = 5.0  # the reported fps is the rate over this trailing window, whatever REPORT_S is
RETRY_S = (5.0, 60.0)  # pause before opening a stream again after it failed: first, longest
STALL_S = 10.0  # no frame for this long while analysing: reported as the camera's last error
STALL_ASK_S = 15.0  # a stalled stream's camera is asked why at most this often (streams.rtsp_probe)
LAST_ERROR_CHARS = 2000  # the longest last_error PUT /api/cameras/{id}/state takes
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})  # full, ...
FLUSH_S = 5.0  # a stopped job's forwarder sends what its spool holds for this long, while it answers
SEND_WAIT_S = 5.0  # then waits this long for a send in flight, abandoned after (its items kept)
SPOOL_WAIT_S = 1.0  # a spool another process has open (the runner's sweeper) is tried again this often
CLOCK_TOLERANCE_S = 2.0  # a Date header is in whole seconds: a smaller difference from it is no skew
CLOCK_NEWS_S = 5.0  # a skew that moved this much is logged, and the state reported again at once
HOURS_CHECK_S = 30.0  # outside its hours the camera looks again this often (a clock set, a leap), and
# at the start of its next span, whichever is first
REPORT_TIMEOUT_S = 10.0  # a state report waits this long for each step of its request
FINAL_REPORT_S = 5.0  # a stopping job's last state report: one request, each step waited for this long
STOP_S = 20.0  # a stopping job has let go of its spool within this, once its stream is closed: its
# forwarder's flush and send wait, its reporter's last report, its own last one (api.runner.engine gives
# a job 30 s before it ends the slot's process)


class FrameRate:
    """Frames per second over a trailing window, whatever the report period: the intervals between the
    window's frames over the time from its first frame to now. A stream that stops decays to 0 within the
    window, and a short window does not count a fencepost (3 frames 0.2 s apart are 2 intervals in 0.4 s,
    5 fps, not 3 / 0.4 = 7.5)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()  # monotonic times of the window's frames

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._forget(now)

    def rate(self, now: float) -> float:
        self._forget(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(1e-6, now - self._times[0])

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()


class _SessionStop(threading.Event):
    """The end of one session on the stream: set when the camera's hours are over, and set whenever
    the job's own stop is. detect_footage closes the source when it is set and ends the incidents
    still open (their last word, spooled and sent), which an exception from its progress callback
    would cut off."""

    def __init__(self, job_stop: threading.Event) -> None:
        super().__init__()
        self._job_stop = job_stop

    def is_set(self) -> bool:
        return super().is_set() or self._job_stop.is_set()


@dataclass(frozen=True, slots=True)
class SpoolBounds:
    max_bytes: int = 2 * 1024**3
    max_items: int = 20_000


class SharedDetector:
    """One model for all the cameras of a runner process: built from the runner's site config when
    the first frame comes (a process whose cameras never analyse loads none), one prediction at a
    time. A loaded model costs ~0.8 GiB in each process that holds it and a camera's thread tens of
    MiB, so the cameras of a process share it (the pipeline calls only `detect`)."""

    def __init__(self, config_path: Path | None = None) -> None:
        self.config_path = Path(config_path) if config_path else DEFAULT_CONFIG
        self._lock = threading.Lock()
        self._detector: Any = None

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def detect(self, image: Any) -> Any:
        with self._lock:
            if self._detector is None:
                from detect.config import load_config
                from detect.pipeline import build_detector

                started = time.monotonic()
                self._detector = build_detector(load_config(self.config_path))
                log.info("the shared model loaded in %.1f s", time.monotonic() - started)
            return self._detector.detect(image)


class CameraJob:
    """Analyse one camera until `run`'s stop event is set (see the module docstring).

    camera: the registry's JSON of the camera (api.http.schemas.RunnerCamera). spool_dir: the
    camera's own spool on this machine (kept across restarts: what was not delivered is sent when
    the runner comes back). detector: the model to use (built from the config when None; tests and
    a runner hosting several cameras in one process may share one). clock: the wall clock the active
    hours are read on (now, an aware datetime; tests give their own)."""

    def __init__(
        self,
        camera: dict[str, Any],
        *,
        server: str,
        key: str,
        spool_dir: Path,
        config_path: Path | None = None,
        bounds: SpoolBounds = SpoolBounds(),
        report_s: float = REPORT_S,
        detector: Any = None,
        stall_s: float = STALL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.camera = camera
        self.camera_id = str(camera["id"])
        self.server = server.rstrip("/")
        self._key = key
        self.spool_dir = Path(spool_dir)
        self.work_dir = self.spool_dir.with_name(self.spool_dir.name + ".work")
        self.config_path = Path(config_path) if config_path else DEFAULT_CONFIG
        self.bounds = bounds
        self.report_s = report_s
        self.stall_s = stall_s
        self._detector = detector
        self._lock = threading.Lock()
        self._rate = FrameRate(FPS_WINDOW_S)
        self._last_frame_at: datetime | None = None
        self._last_frame_mono: float | None = None  # monotonic time of the last analysed frame
        self._last_error: str | None = None
        self._stall_reason: str | None = None  # the camera's word on a stalled stream (streams.rtsp_probe)
        self._stall_asked: float | None = None  # monotonic time it was last asked
        self._clock_ahead_s = 0.0  # how far the case service's clock is ahead of this machine's
        self._clock_offset_s: float | None = None  # this machine's clock minus the service's, as measured
        self._send_clock = True  # False once the service refused the field (a version without it)
        self._refused: int | None = None  # the status the last state report was refused with
        self._status = "starting"
        self._incidents = 0
        self._open: set[str] = set()  # ids of violations sent when they fired, not yet ended
        self._tz = ZoneInfo(camera.get("timezone") or "Asia/Shanghai")
        self._hours: list[tuple[Any, Any]] | None = None  # parsed on first use (detect loads lazily)
        self._clock = clock  # the wall clock the active hours are read on (aware datetimes)
        self._session: _SessionStop | None = None  # the session on the stream now, if any

    # --- what the camera is ----------------------------------------------------------------------

    def site_config(self) -> Any:
        """The runner's site config with this camera (from the registry) as its only camera."""
        from detect.config import Camera, Position, Zone, load_config

        config = load_config(self.config_path)
        position = self.camera.get("position")
        camera = Camera(
            id=self.camera_id,
            name=self.camera.get("name"),
            source=self.camera["stream_url"],
            position=None if position is None else Position(**position),
            timezone=self.camera.get("timezone") or "Asia/Shanghai",
            zones=[Zone.model_validate(z) for z in self.camera.get("zones") or []],
        )
        return config.model_copy(update={"cameras": [camera], "default_camera": camera.id})

    def hour_spans(self) -> list[tuple[Any, Any]]:
        """The camera's active hours as (start, end) local times; [] when it has none (always active)."""
        if self._hours is None:
            from detect.config import hour_spans

            self._hours = hour_spans(self.camera.get("active_hours"))
        return self._hours

    def active_now(self, now: datetime | None = None) -> bool:
        """Within the camera's active hours (its local time); always when it has none."""
        from detect.zones import in_span

        if not self.hour_spans():
            return True
        local = (now or self._clock()).astimezone(self._tz)
        return any(in_span(local.time(), start, end) for start, end in self.hour_spans())

    def until_active_s(self, now: datetime | None = None) -> float:
        """Seconds from `now` to the start of the camera's next span of active hours (its local
        time; 0 when it has none), so that a camera outside its hours starts when they begin."""
        now = (now or self._clock()).astimezone(UTC)
        local = now.astimezone(self._tz)
        waits = []
        for start, _ in self.hour_spans():
            for days in (0, 1):
                begins = datetime.combine(local.date() + timedelta(days=days), start, tzinfo=self._tz)
                left_s = (begins.astimezone(UTC) - now).total_seconds()  # in UTC: a DST change counts
                if left_s > 0:
                    waits.append(left_s)
                    break
        return min(waits, default=0.0)

    # --- running ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Analyse the camera until `stop` is set; returns after the spool's forwarder has stopped."""
        from detect.pipeline import build_detector
        from streams import mask_credentials

        config = self.site_config()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        spool = self._open_spool(stop)
        if spool is None:
            self._set_status("stopped")
            return
        forwarder = Forwarder(spool, server_url=self.server, device_key=self._key)
        forwarder.start()
        reporter = threading.Thread(
            target=self._report_loop,
            args=(stop, spool, forwarder),
            name=f"gridpatrol-report-{self.camera_id}",
            daemon=True,
        )
        reporter.start()
        name = mask_credentials(self.camera["stream_url"])
        log.info("camera %s: analysing %s", self.camera_id, name)
        try:
            if self._detector is None:
                self._detector = build_detector(config)
            pause = RETRY_S[0]
            while not stop.is_set():
                if not self.active_now():
                    self._set_status("outside active hours")
                    stop.wait(min(HOURS_CHECK_S, self.until_active_s()))
                    continue
                started = time.monotonic()
                self._analyse(config, spool, stop)
                if stop.is_set():
                    break
                if not self.active_now():  # the hours ended the session: no failure to wait out
                    continue
                if time.monotonic() - started > 300:  # it ran a good while: a new outage, start over
                    pause = RETRY_S[0]
                self._set_status("retrying")
                stop.wait(pause)
                pause = min(pause * 2, RETRY_S[1])
        finally:
            self._set_status("stopped")
            deadline = time.monotonic() + STOP_S - FINAL_REPORT_S  # the last report's time kept
            forwarder.stop(timeout_s=SEND_WAIT_S, flush_s=FLUSH_S)  # the last words of its open violations
            reporter.join(timeout=min(self.report_s + 5, max(0.0, deadline - time.monotonic())))
            self._report(spool, forwarder, timeout_s=FINAL_REPORT_S, tries=1)
            spool.close()
            log.info("camera %s: stopped", self.camera_id)

    def _open_spool(self, stop: threading.Event) -> Spool | None:
        """The camera's spool, waited for while another process has it open (the runner's sweeper
        sending what it holds, a few seconds at a time: api.runner.backlog); None when `stop` is set
        meanwhile."""
        waiting = False
        while True:
            try:
                return Spool(self.spool_dir, max_bytes=self.bounds.max_bytes, max_items=self.bounds.max_items)
            except SpoolBusy:
                if not waiting:
                    waiting = True
                    self._set_status("waiting for its spool")
                    log.info(
                        "camera %s: its spool %s is open in another process; waiting for it",
                        self.camera_id,
                        self.spool_dir,
                    )
            if stop.wait(SPOOL_WAIT_S):
                return None

    def _analyse(self, config: Any, spool: Spool, stop: threading.Event) -> None:
        """One session on the stream: until it ends, fails, the hours end or `stop`."""
        from detect.pipeline import Progress, detect_footage
        from streams import SourceError, mask_credentials

        session_stop = _SessionStop(stop)
        with self._lock:
            self._session = session_stop

        def on_progress(_: Progress) -> None:
            with self._lock:
                self._last_frame_at = datetime.now(UTC)
                self._last_frame_mono = time.monotonic()
                self._rate.tick(self._last_frame_mono)
                self._stall_reason = self._stall_asked = None
                if self._status != "analysing":
                    self._status, self._last_error = "analysing", None
            self._end_session_after_hours()

        self._set_status("connecting")
        try:
            for incident in detect_footage(
                self.camera["stream_url"],
                config,
                out_dir=self.work_dir,
                camera_id=self.camera_id,
                detector=self._detector,
                emit_open=True,  # a car may stand for hours: the case opens when the rule fires
                stop=session_stop,
                on_progress=on_progress,
            ):
                self._spool(incident, spool)
            if not session_stop.is_set():
                self._set_error("the stream ended (the reconnect policy gave up)")
        except SourceError as exc:
            self._set_error(mask_credentials(str(exc)))
            log.warning("camera %s: %s", self.camera_id, mask_credentials(str(exc)))
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:  # not the disk refusing data: a bug or a broken install
                raise
            self._set_error(f"cannot write an incident to this machine's disk: {exc}; it is lost")
            log.error(
                "camera %s: an incident could not be written under %s (%s) and is lost; the stream is "
                "analysed again after a pause",
                self.camera_id,
                self.spool_dir.parent,
                exc,
            )
            shutil.rmtree(self.work_dir, ignore_errors=True)  # its half-written evidence (made again)
        finally:
            with self._lock:
                self._session = None

    def _end_session_after_hours(self) -> None:
        """End the session on the stream when the camera's active hours are over: called at each frame,
        and by the reporter, so that a stream that gives no frame (stalled, its source waiting minutes
        to reconnect) is closed too and its open violations end with the hours."""
        with self._lock:
            session = self._session
        if session is None or session.is_set() or self.active_now():
            return
        log.info("camera %s: its active hours are over; the stream is closed", self.camera_id)
        session.set()

    def _spool(self, incident: Any, spool: Spool) -> None:
        """Spool an incident: when its rule fires (the case opens at once), and when the violation
        ends. The service takes an incident id once, so the end, with the whole dwell strip and the
        last time seen, goes as a sighting of its own (id '<id>:end'), which merges into the case.
        So does the last word on a violation still open when the session ends (the job stopped, the
        stream lost): sent under its first id again, the service would take it as a resend."""
        data = incident.to_json()
        if incident.id in self._open:
            self._open.discard(incident.id)
            data["id"] = f"{incident.id}:end"
        elif not incident.closed:
            self._open.add(incident.id)
        files = [(e.role, Path(e.path).name, self.work_dir / e.path) for e in incident.evidence]
        spool.put(data, files)
        for _, _, path in files:
            path.unlink(missing_ok=True)
        with self._lock:
            self._incidents += 1
        log.info("camera %s: incident %s (%s) spooled", self.camera_id, data["id"], incident.category)

    # --- state -----------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """What the job does now (starting, outside active hours, connecting, analysing, ...)."""
        with self._lock:
            return self._status

    def _set_status(self, status: str) -> None:
        with self._lock:
            self._status = status

    def _set_error(self, error: str) -> None:
        with self._lock:
            self._last_error = error

    def state(self, spool: Spool, forwarder: Forwarder) -> dict[str, Any]:
        """The report PUT /api/cameras/{id}/state takes; its fps is the rate over the last FPS_WINDOW_S."""
        with self._lock:
            now = time.monotonic()
            fps = self._rate.rate(now)
            status, error = self._status, self._last_error
            silent_s = None if self._last_frame_mono is None else now - self._last_frame_mono
            if status == "analysing" and silent_s is not None and silent_s > self.stall_s:
                # the source is waiting out a dropped stream (detect_footage hides it): say so
                status = "stalled"
                why = self._stall_reason or "the stream dropped or stalled"
                error = f"no frame for {silent_s:.0f} s: {why}; reconnecting"
            frame_at = self._last_frame_at
            if frame_at is not None:  # on the service's clock, which judges how old it is
                frame_at += timedelta(seconds=self._clock_ahead_s)
            report: dict[str, Any] = {
                "fps": round(fps, 2),
                "last_frame_at": None if frame_at is None else frame_at.isoformat(),
                "last_error": None if error is None else error[:LAST_ERROR_CHARS],
                "runner_state": {
                    "status": status,
                    "incidents": self._incidents,
                    "spool": asdict(spool.state()),
                    "forwarder": asdict(forwarder.state()),
                },
            }
            if self._send_clock and self._clock_offset_s is not None:  # not known before an answer
                report["clock_offset_s"] = self._clock_offset_s
            return report

    def _report(
        self, spool: Spool, forwarder: Forwarder, *, timeout_s: float = REPORT_TIMEOUT_S, tries: int = 2
    ) -> None:
        """Report the camera's state; sent again at once (up to `tries` in all) when the answer showed
        the clocks apart (and, once, without its clock_offset_s when the service refused that field: an
        older version). A stopping job's last report is one try with a short timeout (FINAL_REPORT_S):
        two of 10 s each took it past the 30 s the engine gives a job to stop."""
        try:
            with httpx.Client(timeout=timeout_s) as client:
                while tries:  # again at once when the answer showed the clocks apart: the first
                    answer = client.put(  # report's frame time would look old enough to be offline
                        f"{self.server}/api/cameras/{self.camera_id}/state",
                        json=self.state(spool, forwarder),
                        headers={"Authorization": f"Bearer {self._key}"},
                    )
                    if self._refused_clock(answer):  # once: sent again without it
                        continue
                    tries -= 1
                    if not self._learn_clock(answer.headers.get("date")):
                        break
            if answer.status_code == 200 and self._refused is not None:
                log.info("camera %s: the state reports are taken again", self.camera_id)
                self._refused = None
            elif answer.status_code != 200 and answer.status_code != self._refused:
                log.warning(  # once per status: a revoked key would say it every report_s
                    "camera %s: the state report was refused: %s %s",
                    self.camera_id,
                    answer.status_code,
                    answer.text[:200],
                )
                self._refused = answer.status_code
        except httpx.HTTPError as exc:  # the service is away; incidents wait in the spool
            log.debug("camera %s: state not reported: %s", self.camera_id, type(exc).__name__)

    def _refused_clock(self, answer: httpx.Response) -> bool:
        """Whether the service refused the report for its clock_offset_s (a version that does not take
        it: extra fields are a 422): the reports go without it from then on, the difference only logged."""
        if answer.status_code != 422 or not self._send_clock or "clock_offset_s" not in answer.text:
            return False
        self._send_clock = False
        log.warning(
            "camera %s: the case service does not take this runner's clock difference (an older "
            "version): its state reports go without it",
            self.camera_id,
        )
        return True

    def _learn_clock(self, date: str | None) -> bool:
        """How far the service's clock is ahead of this machine's, from its answer's Date header (whole
        seconds, cut: its midpoint is half a second on); True when that moved by CLOCK_NEWS_S."""
        try:
            service_now = email.utils.parsedate_to_datetime(date or "")
        except (TypeError, ValueError):
            return False
        if service_now.tzinfo is None:
            service_now = service_now.replace(tzinfo=UTC)
        measured_s = (service_now - datetime.now(UTC)).total_seconds() + 0.5
        ahead_s = 0.0 if abs(measured_s) < CLOCK_TOLERANCE_S else measured_s
        with self._lock:
            before, self._clock_ahead_s = self._clock_ahead_s, ahead_s
            self._clock_offset_s = round(-measured_s, 1)  # reported: the service flags 5 s or more
        moved = abs(ahead_s - before) >= CLOCK_NEWS_S
        if moved and ahead_s:
            log.warning(
                "camera %s: this machine's clock is %.0f s %s the case service's: its last frame "
                "is reported on the service's clock, but its incidents carry this machine's times; "
                "synchronise the clock (NTP)",
                self.camera_id,
                abs(ahead_s),
                "behind" if ahead_s > 0 else "ahead of",
            )
        return moved

    def _report_loop(self, stop: threading.Event, spool: Spool, forwarder: Forwarder) -> None:
        while not stop.wait(self.report_s):
            self._end_session_after_hours()  # the frames' own check, for a stream that gives none
            self._ask_why_stalled()
            self._report(spool, forwarder)

    def _ask_why_stalled(self) -> None:
        """While the stream has given no frame for stall_s, ask the camera why, at most every STALL_ASK_S
        (streams.rtsp_probe: one DESCRIBE, 2 s at most): its source retries for minutes, a password
        reset at the camera's reboot reading like a camera that is off, and says why only when its
        reconnect policy gives up. The reason, logged when it changes, is the stalled camera's last
        error until a frame comes."""
        from streams.rtsp import PROBE_S
        from streams.rtsp_probe import rtsp_refusal

        with self._lock:
            asked = time.monotonic()
            last = self._last_frame_mono
            if (
                self._status != "analysing"
                or last is None
                or asked - last <= self.stall_s
                or (self._stall_asked is not None and asked - self._stall_asked < STALL_ASK_S)
            ):
                return
            self._stall_asked = asked
        reason = rtsp_refusal(self.camera["stream_url"], PROBE_S)
        with self._lock:
            if self._last_frame_mono != last:  # a frame came meanwhile: the stream is back
                return
            told, self._stall_reason = self._stall_reason, reason
        if reason is not None and reason != told:
            log.warning(
                "camera %s: no frame for %.0f s: %s; its stream is tried again",
                self.camera_id,
                asked - last,
                reason,
            )
