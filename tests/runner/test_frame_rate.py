"""A camera's reported frames per second: the rate over a trailing window, the same whatever the report
period, falling to 0 when the stream stops."""

from __future__ import annotations

import pytest

from api.runner.camera import FrameRate


def _ticks(rate: FrameRate, start: float, fps: float, seconds: float) -> float:
    """Frames at `fps` from `start` for `seconds`; returns the time of the last one."""
    n = int(round(seconds * fps))
    for i in range(n):
        rate.tick(start + i / fps)
    return start + (n - 1) / fps


def test_a_short_report_period_counts_no_fencepost() -> None:
    rate = FrameRate(5.0)
    last = _ticks(rate, 100.0, 5.0, 0.6)  # 3 frames 0.2 s apart, read right after the third
    assert rate.rate(last) == pytest.approx(5.0)  # 2 intervals in 0.4 s, not 3 / 0.4 = 7.5


@pytest.mark.parametrize("read_every_s", [0.5, 1.0, 5.0])
def test_a_steady_stream_reads_its_rate_whenever_it_is_read(read_every_s: float) -> None:
    rate = FrameRate(5.0)
    readings = []
    t = 0.0
    for i in range(int(30 / 0.2)):  # 30 s at 5 fps
        rate.tick(i * 0.2)
        t = i * 0.2
        if i and round(t / read_every_s, 6).is_integer():
            readings.append(rate.rate(t + 0.1))
    late = readings[len(readings) // 2 :]  # once the window is full
    assert late and all(4.5 <= r <= 5.0 for r in late), readings


def test_a_stream_that_stops_falls_to_zero_within_the_window() -> None:
    rate = FrameRate(5.0)
    last = _ticks(rate, 0.0, 5.0, 10.0)
    # 1 s after the last frame the window holds 6.0 .. 9.8 s: 19 intervals in the 4.8 s up to now
    assert rate.rate(last + 1.0) == pytest.approx(19 / 4.8)
    assert 0 < rate.rate(last + 3.0) < 2.0
    assert rate.rate(last + 5.0) == 0.0
    assert FrameRate(5.0).rate(0.0) == 0.0  # no frame yet
