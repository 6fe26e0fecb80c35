"""Flushing to disk what the service is about to answer for, so that a power cut after the answer
cannot lose it: a file's bytes (fsync of the file) and its name (fsync of the folder it was renamed
into)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path | str) -> None:
    """fsync a file or a folder by its path (OSError as the system says it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(source: Path | str, target: Path | str) -> None:
    """Rename `source` to `target` with both on disk when this returns: the file's bytes flushed
    before the rename, the folder's new entry after it."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(Path(target).parent)
