"""prefetch: order, errors, bounded read-ahead, and a thread that stops with its consumer."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import open_source, prefetch
from streams.prefetch import THREAD_NAME


def _prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


def _wait_for_no_prefetch_threads(timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _prefetch_threads()


def test_order_is_kept() -> None:
    assert list(prefetch(range(200), depth=3)) == list(range(200))


def test_an_exception_in_the_source_reaches_the_consumer() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("camera unplugged")

    received = []
    with pytest.raises(OSError, match="camera unplugged"):
        for item in prefetch(failing()):
            received.append(item)
    assert received == [1, 2]
    _wait_for_no_prefetch_threads()


def test_read_ahead_is_bounded_by_depth() -> None:
    produced = 0

    def counting() -> Iterator[int]:
        nonlocal produced
        for i in range(50):
            produced += 1
            yield i

    for consumed, _ in enumerate(prefetch(counting(), depth=4), start=1):
        time.sleep(0.002)
        # depth items in the queue, one being put, one in the consumer's hands
        assert produced - consumed <= 4 + 1


@pytest.mark.parametrize("how", ["break", "close"])
def test_the_thread_stops_and_closes_the_source_when_the_consumer_stops(how: str) -> None:
    finished = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            finished.set()

    frames = prefetch(endless(), depth=2)
    if how == "break":
        for item in frames:
            if item == 5:
                break
        frames.close()  # what leaving a for loop does once the generator is dropped
    else:
        assert next(frames) == 0
        frames.close()

    assert finished.wait(2.0), "the source was not closed"
    _wait_for_no_prefetch_threads()


def test_prefetch_gives_the_same_frames_as_the_source(dashcam: Path) -> None:
    direct = [(frame.index, frame.ts) for frame in open_source(dashcam, analysis_fps=5)]
    source = open_source(dashcam, analysis_fps=5)
    ahead = [(frame.index, frame.ts) for frame in prefetch(source)]
    assert ahead == direct
    assert source.stopped_early is None


def test_stopping_early_releases_a_video_source(dashcam: Path) -> None:
    source = open_source(dashcam)
    for frame in prefetch(source):
        if frame.index == 10:
            break
    _wait_for_no_prefetch_threads()
    source.close()  # idempotent, as the pipeline's finally calls it again
    assert source.stopped_early is None
