"""Content-addressed evidence files: data_dir/evidence/<aa>/<bb>/<sha256>.

A file is stored under the SHA-256 of its bytes, computed while it is written; when the caller
states a hash, the bytes must match it or nothing is stored. Files are written to a temporary
name and renamed into place, so a crash never leaves half a file under a valid name.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024

_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF", 0, "application/pdf"),
]


class EvidenceError(ValueError):
    """Evidence that cannot be stored (hash mismatch, too large, not an image)."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int
    media_type: str


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
        if not SHA256_RE.match(sha256):
            raise EvidenceError(f"'{sha256}' is not a lowercase hex SHA-256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_stream(
        self, stream: BinaryIO, *, expected_sha256: str | None = None, max_bytes: int | None = None
    ) -> StoredFile:
        """Copy a stream into the store, hashing as it goes; verify against expected_sha256."""
        self._ensure_dir(self.root)
        digest = hashlib.sha256()
        size = 0
        head = b""
        tmp_name = str(self.root / f".incoming-{uuid.uuid4().hex}")
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    if len(head) < 16:
                        head += chunk[:16]
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise EvidenceError(f"larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != sha:
                raise EvidenceError(f"content has SHA-256 {sha}, not the stated {expected_sha256}")
            if size == 0:
                raise EvidenceError("empty file")
            media_type = sniff_media_type(head)
            if media_type is None:
                raise EvidenceError("not a JPEG, PNG, GIF, WebP image or PDF")
            final = self.path_for(sha)
            if final.is_file():
                os.unlink(tmp_name)
            else:
                self._ensure_dir(final.parent)
                os.replace(tmp_name, final)
            return StoredFile(sha256=sha, size=size, media_type=media_type)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> StoredFile:
        import io

        return self.put_stream(io.BytesIO(data), expected_sha256=expected_sha256)

    def verify(self, sha256: str) -> str | None:
        """None when the file is there and hashes to its name; otherwise what is wrong."""
        path = self.path_for(sha256)
        if not path.is_file():
            return "missing"
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        actual = digest.hexdigest()
        return None if actual == sha256 else f"altered (content now hashes to {actual})"

    def iter_files(self) -> Iterator[tuple[str, Path]]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("??/??/*")):
            if path.is_file() and SHA256_RE.match(path.name):
                yield path.name, path
