"""Decode ahead of the consumer in a background thread, in bounded memory."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

THREAD_NAME = "gridpatrol-prefetch"
# How often a blocked producer looks whether the consumer has gone.
_POLL_S = 0.1
# How long the consumer waits for the producer to finish after stopping it early (a read in flight).
_JOIN_TIMEOUT_S = 15.0


class _End:
    """Put on the queue after the last item; carries the producer's exception, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetch(frames: Iterable[T], depth: int = 4, *, live: bool | None = None) -> Generator[T, None, None]:
    """Yield the items of `frames`, produced in a background thread at most `depth` items ahead.

    Order is kept. An exception raised by the source is raised here, in the consumer. When the consumer stops
    early (break, or closing this generator), the producer stops at its next item and the source's iterator is
    closed in the producer thread (so a FrameSource releases its decoder).

    live: never wait for the consumer (default: when `frames` is a live source, info.kind 'live'). A camera
    does not wait: a producer held up by a consumer slower than the stream (a model shared by many cameras)
    left the stream to queue up in the network buffers, and the frames analysed fell further and further
    behind the street (their times are when they were read). Live, the oldest item waiting is dropped for
    the newest, so the consumer gets frames at most `depth` items old, the ones in between skipped.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    info = getattr(frames, "info", None)
    name = getattr(info, "name", "a live source")
    if live is None:
        live = getattr(info, "kind", None) == "live"
    buffer: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    skipped = 0

    def put(item: T | _End) -> bool:
        nonlocal skipped
        while not stop.is_set():
            try:
                if live and not isinstance(item, _End):
                    buffer.put_nowait(item)
                else:
                    buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if not live or isinstance(item, _End):
                    continue
            try:
                buffer.get_nowait()  # the oldest waiting: an item, never the end (put last)
            except queue.Empty:
                continue
            skipped += 1
            if skipped == 1:
                log.info("%s: the analysis is slower than the stream: frames are skipped to keep up", name)
        return False

    def produce() -> None:
        iterator = iter(frames)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_End(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=THREAD_NAME, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=_JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.warning("prefetch thread still reading after %.0f s; leaving it to finish", _JOIN_TIMEOUT_S)
