"""Content-addressed evidence files: data_dir/evidence/<aa>/<bb>/<sha256> (this module's
EvidenceStore, the default), or objects `<prefix>/<aa>/<bb>/<sha256>` of an S3 bucket
(api.storage.s3_store.S3EvidenceStore). Both are an `EvidenceFiles`, which is all the service uses.

A file is stored under the SHA-256 of its bytes, computed while it is written; when the caller
states a hash, the bytes must match it or nothing is stored. Files are written to a temporary
name and renamed into place, so a crash never leaves half a file under a valid name. A full disk
is `StorageFull("evidence store")` (507) with the temporary file removed; what is stored stays.

Durability: `put_stream`/`put_bytes` return once the file is on disk (flushed, with its name), so a
power cut after a database commit that references it cannot lose it. Files received through
`open_incoming` (the incident routes, many files a request) are flushed together by `sync`, which
the caller runs before it hands the incident to the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from api.errors import InputError, ServiceFault, StorageFull, is_disk_full
from api.storage.disk import fsync_folder, fsync_path

log = logging.getLogger(__name__)
STORE_NAME = "evidence store"  # the field a full disk names

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024

_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF", 0, "application/pdf"),
]


class EvidenceError(InputError):
    """Evidence that cannot be stored (hash mismatch, too large, not an image); `reason` says why.
    Its field is "files" unless the receiving code names the file more precisely."""

    def __init__(self, reason: str) -> None:
        super().__init__("files", reason)


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int
    media_type: str
    created: bool = field(default=False, compare=False)  # new to the store (not there before this put)


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One thing the store holds, as `gridpatrol evidence verify/orphans` list it: a stored file
    (`name` its SHA-256) or a receiving file a killed process left (`complete` False, `name` its
    temporary name); `where` names it in messages (a path, or s3://bucket/key), `mtime` is when it
    was written (Unix seconds)."""

    name: str
    where: str
    mtime: float
    complete: bool = True


@dataclass(frozen=True, slots=True)
class EvidenceContent:
    """A stored file opened to be served: a local `path` (served as a file, with ranges), or
    `chunks` of an object read as they are sent (closed when the iterator is)."""

    size: int
    path: Path | None = None
    chunks: Iterator[bytes] | None = None


class Incoming(Protocol):
    """An evidence file being received chunk by chunk (see IncomingEvidence)."""

    size: int
    local: bool  # finish() only renames a local file (else it uploads: call it off the event loop)

    def write(self, data: bytes) -> None: ...

    def finish(self, *, expected_sha256: str | None = None) -> StoredFile: ...

    def discard(self) -> None: ...


class EvidenceFiles(Protocol):
    """What the service needs of an evidence store, whichever holds the bytes (a local folder or an
    S3 bucket). A fault of the store itself is a ServiceFault naming "evidence store" (507 for a full
    disk, 503 for an endpoint that does not answer), a user's bad file an EvidenceError."""

    def exists(self, sha256: str) -> bool: ...

    def open_incoming(self, *, max_bytes: int | None = None) -> Incoming: ...

    def put_stream(
        self, stream: BinaryIO, *, expected_sha256: str | None = None, max_bytes: int | None = None
    ) -> StoredFile: ...

    def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> StoredFile: ...

    def remove(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> str | None: ...

    def open_content(self, sha256: str) -> EvidenceContent | None: ...

    def describe(self, sha256: str) -> str: ...

    def iter_files(self) -> Iterator[tuple[str, Path | str]]: ...

    def entries(self, *, unreadable: list[str] | None = None) -> Iterator[StoreEntry]: ...

    def delete_entry(
        self, entry: StoreEntry, *, min_age_s: float = 0.0, if_orphan: Callable[[], bool] | None = None
    ) -> bool: ...

    def sync(self, files: list[StoredFile]) -> None: ...


def _why(exc: OSError) -> str:
    """An OS error in a few lower-case words: "permission denied", "input/output error"."""
    return (exc.strerror or str(exc)).lower()


def check_sha256(sha256: str) -> str:
    """`sha256` when it is a lowercase hex SHA-256; EvidenceError otherwise."""
    if not SHA256_RE.fullmatch(sha256):
        raise EvidenceError(f"'{sha256}' is not a lowercase hex SHA-256")
    return sha256


def receive(incoming: Incoming, stream: BinaryIO, *, expected_sha256: str | None = None) -> StoredFile:
    """Copy `stream` into `incoming` and finish it (discarded when the copy fails)."""
    try:
        while chunk := stream.read(CHUNK):
            incoming.write(chunk)
    except BaseException:
        incoming.discard()
        raise
    return incoming.finish(expected_sha256=expected_sha256)


def sniff_media_type(head: bytes) -> str | None:
    """The media type from the first bytes, for the kinds of evidence we keep; None when unknown."""
    for magic, offset, media_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic and (
            media_type != "image/webp" or head[:4] == b"RIFF"
        ):
            return media_type
    return None


class EvidenceStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._dirs: set[Path] = set()

    def _ensure_dir(self, path: Path) -> None:
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def describe(self, sha256: str) -> str:
        """Where the file is, for messages."""
        return str(self.path_for(sha256))

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open_incoming(self, *, max_bytes: int | None = None) -> IncomingEvidence:
        """A file to be written chunk by chunk (e.g. straight from a request body), then `finish()`ed."""
        try:
            self._ensure_dir(self.root)
            return IncomingEvidence(self.root, max_bytes, self._place)
        except OSError as exc:
            if is_disk_full(exc):
                raise StorageFull(STORE_NAME) from exc
            raise

    def _place(self, tmp: str, sha256: str) -> bool:
        """File a checked temporary file under its hash; False (and it removed) when already there."""
        final = self.path_for(sha256)
        if final.is_file():
            try:  # claimed again (a device retrying): young again, so `evidence orphans` leaves it be
                os.utime(final)
            except FileNotFoundError:  # removed as an orphan just now: file this copy
                pass
            else:
                os.unlink(tmp)
                return False
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # the first file of its folder
            self._ensure_dir(final.parent)
            os.replace(tmp, final)
        return True

    def open_content(self, sha256: str) -> EvidenceContent | None:
        """The stored file to serve; None when it is missing."""
        path = self.path_for(sha256)
        try:
            return EvidenceContent(size=path.stat().st_size, path=path)
        except FileNotFoundError:
            return None

    def entries(self, *, unreadable: list[str] | None = None) -> Iterator[StoreEntry]:
        """Every stored file, then every receiving file left behind (by a killed request); a folder
        that cannot be listed is added to `unreadable` as "<path>: <why>" (its files are not listed)."""
        found = [(sha, path, True) for sha, path in self._walk(unreadable)]
        found += [(path.name, path, False) for path in sorted(self.root.glob(".incoming-*"))]
        for name, path, complete in found:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # removed since it was listed
                continue
            yield StoreEntry(name, str(path), mtime, complete=complete)

    def delete_entry(
        self, entry: StoreEntry, *, min_age_s: float = 0.0, if_orphan: Callable[[], bool] | None = None
    ) -> bool:
        """Delete what `entries()` listed, unless it is younger than `min_age_s` now (a put of the
        same bytes since the listing makes it young again) or `if_orphan()` says a row names it now;
        True when deleted. A stored file is first moved aside, then checked, then deleted or put
        back: a put of the same bytes meanwhile finds no file and files its own copy, so a case
        about to reference it never finds it gone (one put back over it has the same bytes). One
        left aside by a crash is a receiving file to the next listing."""
        path = self.path_for(entry.name) if entry.complete else self.root / entry.name
        aside = self.root / f".incoming-removing-{entry.name}" if entry.complete else path
        try:
            if entry.complete:
                os.replace(path, aside)
            written = aside.stat().st_mtime
        except FileNotFoundError:  # removed since it was listed
            return False
        try:
            keep = time.time() - written < min_age_s or (if_orphan is not None and not if_orphan())
        except BaseException:
            if aside != path:
                os.replace(aside, path)
            raise
        if keep:
            if aside != path:
                os.replace(aside, path)
            return False
        aside.unlink(missing_ok=True)
        return True

    def remove(self, sha256: str) -> bool:
        """Delete a stored file; only for one this process just created and no row references
        (the store is content-addressed: another case may share a file). True when it was there."""
        try:
            os.unlink(self.path_for(sha256))
        except FileNotFoundError:
            return False
        return True

    def put_stream(
        self, stream: BinaryIO, *, expected_sha256: str | None = None, max_bytes: int | None = None
    ) -> StoredFile:
        """Copy a stream into the store, hashing as it goes; verify against expected_sha256. The
        file is on disk when this returns (`sync`)."""
        stored = receive(self.open_incoming(max_bytes=max_bytes), stream, expected_sha256=expected_sha256)
        self.sync([stored])
        return stored

    def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> StoredFile:
        return self.put_stream(io.BytesIO(data), expected_sha256=expected_sha256)

    def sync(self, files: list[StoredFile]) -> None:
        """Flush stored files to disk, contents and names, so that a power cut after this returns
        loses none of them: each file, its two fan-out folders and the store's root are fsync'ed
        (a folder that did not change costs next to nothing). Not syncfs(2), one call for a whole
        filesystem: it also waits for everything else unwritten on that disk (here, with 800 MB of
        an upload unwritten beside it, 427 ms against 0.9 ms for one file's fsync). A failed flush
        is a ServiceFault naming the evidence store (StorageFull for a full disk): the caller must
        not record the files."""
        if not files:
            return
        try:
            folders: set[Path] = set()
            for stored in files:
                path = self.path_for(stored.sha256)
                fsync_path(path)
                folders.update((path.parent, path.parent.parent))
            for folder in sorted(folders, key=lambda p: -len(p.parts)):  # deepest first
                fsync_folder(folder)
            fsync_folder(self.root)
        except OSError as exc:
            if is_disk_full(exc):
                raise StorageFull(STORE_NAME) from exc
            log.error("evidence store: flushing %d file(s) to disk failed: %s", len(files), exc)
            reason = f"flushing evidence to disk failed: {exc.strerror or exc}"
            raise ServiceFault(STORE_NAME, reason) from exc

    def verify(self, sha256: str) -> str | None:
        """None when the file is there and hashes to its name; otherwise what is wrong: missing, not
        a file (a folder or something else in its place), unreadable (why), altered."""
        path = self.path_for(sha256)
        digest = hashlib.sha256()
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                return "not a file"
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable ({_why(exc)})"
        actual = digest.hexdigest()
        return None if actual == sha256 else f"altered (content now hashes to {actual})"

    def iter_files(self) -> Iterator[tuple[str, Path]]:
        """(SHA-256, path) of every stored file, in order."""
        return self._walk(None)

    def _walk(self, unreadable: list[str] | None) -> Iterator[tuple[str, Path]]:
        """(SHA-256, path) of every stored file, in order; a fan-out folder that cannot be listed is
        added to `unreadable` (when given) as "<path>: <why>"."""
        if not self.root.is_dir():
            return
        for top in self._folders(self.root, unreadable):
            for folder in self._folders(top, unreadable):
                try:
                    names = sorted(entry.name for entry in os.scandir(folder))
                except OSError as exc:
                    if unreadable is not None:
                        unreadable.append(f"{folder}: unreadable ({_why(exc)})")
                    continue
                for name in names:
                    path = folder / name
                    if SHA256_RE.fullmatch(name) and path.is_file():
                        yield name, path

    @staticmethod
    def _folders(parent: Path, unreadable: list[str] | None) -> list[Path]:
        """The two-character sub-folders of `parent` (the store's fan-out), in order."""
        try:
            entries = list(os.scandir(parent))
        except OSError as exc:
            if unreadable is not None:
                unreadable.append(f"{parent}: unreadable ({_why(exc)})")
            return []
        return sorted(Path(e.path) for e in entries if len(e.name) == 2 and e.is_dir())


class IncomingEvidence:
    """An evidence file being received: written to a temporary name in `folder` and hashed as the
    bytes arrive; `finish()` checks it and has `place(temporary path, sha256)` file it under its
    SHA-256 (True when new to the store; the temporary file is gone after), `discard()` removes it.
    Nothing lands under a valid name unless it is complete and checked."""

    def __init__(
        self, folder: Path, max_bytes: int | None, place: Callable[[str, str], bool], *, local: bool = True
    ) -> None:
        self._place = place
        self.local = local  # False: `place` uploads the file (an S3 bucket)
        self._max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._head = b""
        self.size = 0
        self._tmp = os.path.join(folder, f".incoming-{uuid.uuid4().hex}")
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, data: bytes) -> None:
        """Append bytes; EvidenceError (and the file discarded) once past the size limit."""
        if self._fd is None:
            raise ValueError("write to a finished or discarded evidence file")
        self.size += len(data)
        if self._max_bytes is not None and self.size > self._max_bytes:
            self.discard()
            raise EvidenceError(f"larger than the limit of {self._max_bytes} bytes")
        if len(self._head) < 16:
            self._head += data[: 16 - len(self._head)]
        self._digest.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.discard()
            if is_disk_full(exc):
                raise StorageFull(STORE_NAME) from exc
            raise

    def finish(self, *, expected_sha256: str | None = None) -> StoredFile:
        """Check the bytes (stated hash, not empty, an image or PDF by content) and file them under
        their SHA-256; an identical file already stored is kept as it is."""
        try:
            if self._fd is None:
                raise ValueError("finish of a finished or discarded evidence file")
            os.close(self._fd)
            self._fd = None
            sha = self._digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != sha:
                raise EvidenceError(f"content has SHA-256 {sha}, not the stated {expected_sha256}")
            if self.size == 0:
                raise EvidenceError("empty file")
            media_type = sniff_media_type(self._head)
            if media_type is None:
                raise EvidenceError("not a JPEG, PNG, GIF, WebP image or PDF")
            created = self._place(self._tmp, sha)
            return StoredFile(sha256=sha, size=self.size, media_type=media_type, created=created)
        except OSError as exc:
            self.discard()
            if is_disk_full(exc):
                raise StorageFull(STORE_NAME) from exc
            raise
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
