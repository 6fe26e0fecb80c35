"""The spools a runner's machine holds for cameras it no longer analyses, sent all the same.

A camera's spool (<spool_root>/<camera id>) is forwarded by the camera's job while it runs. A camera
disabled or removed while the case service was away, or moved to another machine, leaves what its job
could not send in that spool, and nothing sent it until the camera ran on this machine again: never,
for a camera that stays disabled. Those incidents happened while the camera was analysed, so the
runner delivers them whether or not it still runs the camera: every `every_s` the sweeper looks for
spools holding items that no process has open (a running job holds its spool's lock: SpoolBusy, left
alone) and forwards each for up to `flush_s` while the service answers, then lets it go again, so a
camera started on this machine meanwhile waits seconds at most for its spool (CameraJob waits for it).
A spool whose sends fail is tried again after a pause doubling up to `max_pause_s`.

The case service takes a disabled camera's incidents (it is still registered); a removed camera's are
refused as bad (422 naming incident.source_id) and kept in the spool's rejected/ with the answer, as any
refused item.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from api.runner.forwarder import Forwarder
from api.runner.spool import Spool, SpoolBusy, SpoolError

log = logging.getLogger(__name__)

SWEEP_S = 30.0  # how often the spools no job holds are looked at
MAX_PAUSE_S = 600.0  # the longest pause before a spool whose sends failed is tried again
SWEEP_FLUSH_S = 5.0  # a spool is sent for up to this long at a time, then let go
SEND_WAIT_S = 5.0  # and a send then in flight waited for this long, abandoned after (its items kept)
UNBOUNDED = 1 << 62  # the sweeper opens a spool with no bounds of its own: it drops nothing


class SpoolSweeper:
    """Forwards the spools under `root` (one folder per camera) that no process has open, to the case
    service at `server` with the runner's `key` (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        *,
        server: str,
        key: str,
        every_s: float = SWEEP_S,
        flush_s: float = SWEEP_FLUSH_S,
        send_wait_s: float = SEND_WAIT_S,
        max_pause_s: float = MAX_PAUSE_S,
    ) -> None:
        self.root = Path(root).expanduser()
        self.server = server.rstrip("/")
        self._key = key
        self.every_s = every_s
        self.flush_s = flush_s
        self.send_wait_s = send_wait_s
        self.max_pause_s = max_pause_s
        self._next_try: dict[str, tuple[float, float]] = {}  # camera -> (monotonic time, pause)

    def waiting(self) -> list[Path]:
        """The camera spools under root holding items (whether or not a process has them open)."""
        try:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.endswith(".work"))
        except FileNotFoundError:  # no camera ran on this machine yet
            return []
        found = []
        for folder in folders:
            try:
                if any((folder / "items").iterdir()):
                    found.append(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Forward once each spool that holds items and that no process has open; the incidents
        delivered, by camera id."""
        now = time.monotonic() if now is None else now
        delivered: dict[str, int] = {}
        for folder in self.waiting():
            camera_id = folder.name
            due, pause = self._next_try.get(camera_id, (now, self.every_s))
            if now < due:
                continue
            try:
                spool = Spool(folder, max_bytes=UNBOUNDED, max_items=UNBOUNDED)
            except SpoolBusy:  # its camera's job (here, or in another slot's process) sends it
                self._next_try.pop(camera_id, None)
                continue
            except (SpoolError, OSError) as exc:
                log.warning("camera %s: its spool %s cannot be opened (%s)", camera_id, folder, exc)
                continue
            try:
                forwarder = Forwarder(spool, server_url=self.server, device_key=self._key)
                forwarder.start()
                forwarder.stop(timeout_s=self.send_wait_s, flush_s=self.flush_s)
                state, left = forwarder.state(), len(spool)
            finally:
                spool.close()
            delivered[camera_id] = state.delivered
            if state.delivered or state.rejected:
                log.info(
                    "camera %s: %d incidents of its spool delivered and %d refused, though no job of "
                    "this machine runs it; %d left",
                    camera_id,
                    state.delivered,
                    state.rejected,
                    left,
                )
            if left and not state.delivered:  # the service is away: try again later and later
                self._next_try[camera_id] = (now + pause, min(pause * 2, self.max_pause_s))
            else:
                self._next_try.pop(camera_id, None)
        return delivered

    def run(self, stop: threading.Event) -> None:
        """Sweep every `every_s` until `stop` is set (a sweep's bug is logged, not fatal)."""
        while not stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:
                log.exception("sweeping the spools under %s failed", self.root)
