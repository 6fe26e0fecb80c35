"""Flushing to disk what the service is about to answer for, so that a power cut after the answer
cannot lose it: a file's bytes (fsync of the file) and its name (fsync of the folder it was renamed
into)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# what a filesystem that cannot fsync a folder answers (some network and FUSE filesystems): the
# folder is then as durable as that filesystem makes it, and the file itself was still flushed
_NO_FOLDER_FSYNC = (errno.EINVAL, errno.EBADF, errno.EACCES, errno.EISDIR, errno.ENOTSUP)
_told: set[int] = set()  # the devices whose folders could not be fsync'ed, said once each


def fsync_path(path: Path | str) -> None:
    """fsync a file by its path (OSError as the system says it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path | str) -> None:
    """fsync a folder, so that the names renamed into it stay; on a filesystem that cannot (see
    _NO_FOLDER_FSYNC) it is skipped, and that logged once for the filesystem; any other OSError is
    raised."""
    try:
        fsync_path(path)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_FSYNC:
            raise
        device = os.stat(path).st_dev
        if device not in _told:
            _told.add(device)
            log.warning(
                "cannot fsync folders on the filesystem of %s (%s): new names in them are as durable "
                "as that filesystem makes them",
                path,
                exc,
            )


def replace_durably(source: Path | str, target: Path | str) -> None:
    """Rename `source` to `target` with both on disk when this returns: the file's bytes flushed
    before the rename, the folder's new entry after it."""
    fsync_path(source)
    os.replace(source, target)
    fsync_folder(Path(target).parent)
