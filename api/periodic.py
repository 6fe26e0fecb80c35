"""A background thread of the server that does one round of work every few seconds (the custody
checkpoints, the camera watch). Standard library only: any room may use it."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Calls `round()` every `every_s` seconds from a daemon thread between start() and stop(); an
    exception in a round is logged and the next round comes as usual."""

    thread_name = "gridpatrol-periodic"
    # faults that pass by themselves (a database busy with another process's write): a round that
    # meets one is logged in one line, without a traceback, and the next round tries again
    passing_faults: tuple[type[Exception], ...] = ()

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def round(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.round()
            except self.passing_faults as exc:
                log.warning("%s: a round was skipped: %s", self.thread_name, exc)
            except Exception:  # keep the thread alive whatever one round does
                log.exception("%s: a round failed", self.thread_name)
