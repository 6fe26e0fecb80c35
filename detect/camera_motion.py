"""Is the camera itself moving? (a dashcam driving, a PTZ camera turning)

A parked car seen from a moving patrol vehicle and a car driving ahead at the vehicle's speed can
both stand still in the image; only the scene behind them tells them apart. We track corner
features outside the detected objects between analysed frames (pyramidal Lucas-Kanade on a small
grey copy) and take the median feature displacement, as a fraction of the image diagonal per
second of footage time. Below `static_camera_max_flow` the camera is still.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from detect.values import Detection

WORK_WIDTH = 320  # pixels; motion is measured on a copy this wide
MIN_FEATURES = 12  # fewer trackable corners than this: motion unknown, keep the last verdict


class CameraMotion:
    """Scene motion between consecutive analysed frames of one source."""

    def __init__(self, max_flow_per_s: float) -> None:
        self.max_flow_per_s = max_flow_per_s
        self._prev: np.ndarray | None = None
        self._prev_ts = 0.0
        self._scale = 1.0
        self.last_flow_per_s: float | None = None
        self.static = True

    def update(self, image: np.ndarray, ts: float, detections: Sequence[Detection] = ()) -> bool:
        """Feed the next analysed frame (BGR, shape (h, w, 3)) at `ts` seconds; True when still."""
        h, w = image.shape[:2]
        scale = min(1.0, WORK_WIDTH / float(w))
        small = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        prev, prev_ts = self._prev, self._prev_ts
        self._prev, self._prev_ts, self._scale = grey, ts, scale
        dt = ts - prev_ts
        if prev is None or prev.shape != grey.shape or dt <= 0:
            return self.static
        mask = np.full(prev.shape, 255, dtype=np.uint8)
        for det in detections:  # moving objects are not the scene
            x1, y1, x2, y2 = (int(round(v * scale)) for v in det.box)
            mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 0
        corners = cv2.goodFeaturesToTrack(prev, maxCorners=150, qualityLevel=0.01, minDistance=7, mask=mask)
        if corners is None or len(corners) < MIN_FEATURES:
            return self.static
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            prev,
            grey,
            corners,
            None,
            winSize=(15, 15),
            maxLevel=2,  # type: ignore[call-overload]
        )
        ok = status.reshape(-1) == 1
        if ok.sum() < MIN_FEATURES:
            # most features vanished: the view changed wholesale, which a still camera does not do
            self.static = False
            self.last_flow_per_s = math.inf
            return self.static
        shift = np.linalg.norm((moved - corners).reshape(-1, 2)[ok], axis=1)
        diagonal = math.hypot(*grey.shape[:2])
        self.last_flow_per_s = float(np.percentile(shift, 75)) / diagonal / dt
        self.static = self.last_flow_per_s <= self.max_flow_per_s
        return self.static
