"""Real RTSP cameras and a car that comes and goes, for the runner's live tests (test_live.py and its
child process, live_child.py).

RtspCamera is GStreamer's test RTSP server (tests/streams/rtsp_test_server.py, run by a system Python
with PyGObject): a moving test pattern, 160x120 at 10 fps, behind basic auth, on a port of its own
that it keeps across stop() and start(), so a camera can drop and come back at the same URL.

ComingAndGoingCar is the detector: the picture is a test pattern, so what the model would see is
scripted (a fake, not a mock), and the path from a live stream to cases is what these tests test; the
model's accuracy is measured elsewhere."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from detect.values import Detection
from tests.api.api_testkit import free_port
from tests.streams.test_rtsp import PASSWORD, SERVER_SCRIPT

T = TypeVar("T")

# The site config of these tests: any car in the camera's no-parking zone (the whole frame) for 1 s
# over 3 frames is illegal parking, and the violation ends 1 s after the car has gone. A real site
# waits minutes (configs/site.yaml); a short dwell lets a camera fire every few seconds.
SITE: dict[str, Any] = {
    "model": {"weights": "unused.pt"},
    "analysis_fps": 5.0,
    "grace_s": 1.0,
    "kinds": {"car": "car"},
    "categories": {
        "illegal_parking": {
            "kinds": ["car"],
            "zone_kind": "no_parking",
            "min_dwell_s": 1.0,
            "min_median_conf": 0.4,
            "min_observations": 3,
            "require_static_camera": False,  # the test pattern's ball moves the whole picture
        }
    },
}
WHOLE_FRAME = {"id": "all", "kind": "no_parking", "points_norm": [[0, 0], [1, 0], [1, 1], [0, 1]]}


class RtspCamera:
    """One RTSP camera (its own server process and port, mount /cam): start(), stop() (killed: the
    camera drops off the network), start() again on the same port, at another `size` when it is set
    (width, height: the picture re-configured in the vendor's app) and with `password` (what it takes
    now: reset at a reboot, the URL's no longer)."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.port = free_port()
        self.url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{self.port}/cam"
        self.process: subprocess.Popen[bytes] | None = None
        self.size = (160, 120)
        self.password = PASSWORD

    def start(self, timeout_s: float = 30.0) -> None:
        """Serve; a port still held by the last run (it was just killed) is tried again."""
        deadline = time.monotonic() + timeout_s
        while True:
            process = subprocess.Popen(
                [
                    self.python,
                    str(SERVER_SCRIPT),
                    str(self.port),
                    "viewer",
                    self.password,
                    *map(str, self.size),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert process.stdout is not None
            if process.stdout.readline().strip() == b"ready":  # b"" when it exits (cannot listen)
                self.process = process
                return
            process.kill()
            _, err = process.communicate(timeout=10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the RTSP test server did not start on port {self.port}: {err[-500:]!r}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.communicate(timeout=10)
            self.process = None


class ComingAndGoingCar:
    """A detector that sees a car parked for `park_s`, then an empty street for `gone_s`, again and
    again, by the wall clock: it keeps no state, so one object serves every camera of a process at
    once, as a runner's shared model does. Each visit parks at the other end of the frame (boxes that
    do not overlap, so the tracker sees a new car); `shift_px` moves every box right (a restarted
    runner's cars stand elsewhere, see live_child.py)."""

    BOXES = ((8.0, 60.0, 68.0, 110.0), (88.0, 60.0, 148.0, 110.0))  # pixels of a 160x120 frame

    def __init__(self, park_s: float = 2.5, gone_s: float = 2.5, shift_px: float = 0.0) -> None:
        self.park_s, self.gone_s, self.shift_px = park_s, gone_s, shift_px

    def detect(self, image: np.ndarray) -> list[Detection]:
        visit, into = divmod(time.time(), self.park_s + self.gone_s)
        if into >= self.park_s:
            return []
        x1, y1, x2, y2 = self.BOXES[int(visit) % 2]
        box = (x1 + self.shift_px, y1, x2 + self.shift_px, y2)
        return [Detection(box=box, score=0.9, class_name="car", kind="car")]


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 60.0, every_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy (returned); AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def spooled_ids(spool_dir: Path) -> list[str]:
    """The incident ids waiting in a camera's spool, oldest first, read from its folder (the layout
    api.runner.spool documents: items/<sequence>/meta.json); items acked meanwhile are skipped."""
    import json

    ids = []
    for item in sorted((spool_dir / "items").glob("[0-9]*")):
        try:
            ids.append(json.loads((item / "meta.json").read_text())["incident"]["id"])
        except FileNotFoundError:
            continue
    return ids
