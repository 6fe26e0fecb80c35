"""A runner process for test_live.py's kill -9 test: one CameraJob on a real RTSP camera, posting to
the case service, until SIGTERM (a clean stop) or SIGKILL (the test's crash).

    python -m tests.runner.live_child SPEC.json      (from the repository root; the key in RUNNER_KEY)

SPEC: {"camera": the registry's JSON of the camera, "server": URL, "spool": folder, "site": site
config, "log": file, "shift_px": where this run's cars stand (rtsp_kit.ComingAndGoingCar)}. Every log
record goes to the log file as it is made, so what was spooled before a SIGKILL is on record."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(
        filename=spec["log"], level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s"
    )
    from api.runner.camera import CameraJob
    from tests.runner.rtsp_kit import ComingAndGoingCar

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    job = CameraJob(
        spec["camera"],
        server=spec["server"],
        key=os.environ["RUNNER_KEY"],
        spool_dir=Path(spec["spool"]),
        config_path=Path(spec["site"]),
        detector=ComingAndGoingCar(shift_px=spec["shift_px"]),
        report_s=0.5,
    )
    job.run(stop)


if __name__ == "__main__":
    main()
