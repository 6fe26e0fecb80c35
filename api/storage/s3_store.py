"""Content-addressed evidence in an S3-compatible bucket: objects `<prefix>/<aa>/<bb>/<sha256>`.

The same store as api.storage.evidence_store.EvidenceStore (an `EvidenceFiles`), over boto3. A file
being received is written to a local spool file (`spool_dir/.incoming-<uuid>`) and hashed as the
bytes arrive; once complete and checked (stated hash, not empty, an image or PDF by content) it is
uploaded in one PUT under the key its SHA-256 names, with that SHA-256 as the object's checksum (a
server that checks it, as AWS does, refuses bytes that do not match), unless the key is already
there. So no object ever holds half a file or bytes other than its name says, and nothing is
uploaded twice.

Faults of the S3 side are the service's named errors, field "evidence store": an endpoint that does
not answer (refused, timed out, cut off) or answers 5xx is `Unavailable` (503, Retry-After); a bucket
that does not exist, refused credentials or none at all are a `ServiceFault` (503) saying which.
Their messages name the bucket and key, never a credential.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from api.errors import ServiceFault, StorageFull, Unavailable, is_disk_full
from api.storage.evidence_store import (
    CHUNK,
    SHA256_RE,
    STORE_NAME,
    EvidenceContent,
    IncomingEvidence,
    StoredFile,
    StoreEntry,
    check_sha256,
    receive,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
_S3_ERRORS = (ClientError, ConnectionError, HTTPClientError, NoCredentialsError, PartialCredentialsError)
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "Forbidden"}
)


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where the evidence lives and how to reach it. Credentials are not kept here: boto3 reads them
    from the arguments of `S3EvidenceStore` or, when those are None, from its usual sources
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, ~/.aws, an instance role)."""

    bucket: str
    prefix: str = "evidence"
    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None


class S3EvidenceStore:
    """Evidence files as objects of one bucket (see the module's docstring)."""

    def __init__(
        self,
        location: S3Location,
        *,
        spool_dir: Path,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 3,
        list_page_size: int = 1000,
    ) -> None:
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix.strip("/")
        self.spool_dir = Path(spool_dir)
        self._spool_ready = False
        self.list_page_size = list_page_size  # keys per ListObjectsV2 page (S3 answers at most 1000)
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # a private endpoint (MinIO, Ceph, a loopback test server) rarely has per-bucket host names
            s3={"addressing_style": "path" if location.endpoint_url else "auto"},
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def __repr__(self) -> str:
        return f"S3EvidenceStore(s3://{self.bucket}/{self.prefix})"

    # --- names ---
    def key_for(self, sha256: str) -> str:
        check_sha256(sha256)
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self, sha256: str) -> str:
        """Where the object is, for messages: s3://bucket/key."""
        return f"s3://{self.bucket}/{self.key_for(sha256)}"

    # --- faults ---
    def _fault(self, exc: Exception) -> ServiceFault | None:
        """What an S3 error means for the caller; None for a missing object (the caller's answer)."""
        if isinstance(exc, ConnectionError | HTTPClientError):
            return Unavailable(STORE_NAME, "not reachable; retry", retry_after_s=RETRY_AFTER_S)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ServiceFault(
                STORE_NAME, "no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                return ServiceFault(STORE_NAME, f"bucket {self.bucket} does not exist")
            if code in _MISSING:
                return None
            if code in _DENIED or status == 403:
                return ServiceFault(STORE_NAME, f"access to bucket {self.bucket} denied ({code})")
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                reason = f"S3 answered {code or status}; retry"
                return Unavailable(STORE_NAME, reason, retry_after_s=RETRY_AFTER_S)
        return None

    @contextlib.contextmanager
    def _s3(self) -> Iterator[None]:
        """Turn the S3 side's faults into the service's named ones (a missing object passes through
        as the ClientError; anything else unknown too: a bug, not a fault)."""
        try:
            yield
        except _S3_ERRORS as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            log.debug("evidence store s3://%s: %s", self.bucket, exc)
            raise fault from exc

    @staticmethod
    def _is_missing(exc: ClientError) -> bool:
        return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING

    # --- reading ---
    def exists(self, sha256: str) -> bool:
        key = self.key_for(sha256)
        try:
            with self._s3():
                self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if self._is_missing(exc):
                return False
            raise
        return True

    def _get(self, sha256: str) -> Any | None:
        """The GetObject answer (its Body a stream to read and close); None when there is no object."""
        key = self.key_for(sha256)
        try:
            with self._s3():
                return self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if self._is_missing(exc):
                return None
            raise

    def _chunks(self, body: Any) -> Iterator[bytes]:
        try:
            with self._s3():
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def open_content(self, sha256: str) -> EvidenceContent | None:
        """The object to serve, streamed as it is sent; None when it is missing."""
        answer = self._get(sha256)
        if answer is None:
            return None
        return EvidenceContent(size=int(answer["ContentLength"]), chunks=self._chunks(answer["Body"]))

    def verify(self, sha256: str) -> str | None:
        """None when the object is there and its bytes hash to its name; otherwise what is wrong."""
        answer = self._get(sha256)
        if answer is None:
            return "missing"
        digest = hashlib.sha256()
        for chunk in self._chunks(answer["Body"]):
            digest.update(chunk)
        actual = digest.hexdigest()
        return None if actual == sha256 else f"altered (content now hashes to {actual})"

    def _objects(self) -> Iterator[tuple[str, str, float]]:
        """(SHA-256, key, last modified) of every object under the prefix named like evidence."""
        paginator = self._client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        with self._s3():
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=start, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = str(item["Key"])
                    sha = key.rsplit("/", 1)[-1]
                    if SHA256_RE.fullmatch(sha) and key == self.key_for(sha):
                        yield sha, key, item["LastModified"].timestamp()

    def iter_files(self) -> Iterator[tuple[str, str]]:
        """(SHA-256, key) of every stored object, in key order (S3 lists keys sorted)."""
        for sha, key, _ in self._objects():
            yield sha, key

    def entries(self, *, unreadable: list[str] | None = None) -> Iterator[StoreEntry]:
        """Every stored object, then every spool file a killed request left behind (`unreadable` is
        never added to: a listing that fails is a ServiceFault)."""
        for sha, key, mtime in self._objects():
            yield StoreEntry(sha, f"s3://{self.bucket}/{key}", mtime)
        if self.spool_dir.is_dir():
            for path in sorted(self.spool_dir.glob(".incoming-*")):
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                yield StoreEntry(path.name, str(path), mtime, complete=False)

    # --- writing ---
    def open_incoming(self, *, max_bytes: int | None = None) -> IncomingEvidence:
        """A file to be written chunk by chunk into the local spool, then `finish()`ed (uploaded)."""
        try:
            if not self._spool_ready:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                self._spool_ready = True
            return IncomingEvidence(self.spool_dir, max_bytes, self._upload, local=False)
        except OSError as exc:
            if is_disk_full(exc):
                raise StorageFull(STORE_NAME) from exc
            raise

    def _upload(self, tmp: str, sha256: str) -> bool:
        """Upload a checked spool file under its hash (skipped when the key exists); the spool file
        is removed either way. True when the object is new."""
        if self.exists(sha256):
            Path(tmp).unlink()
            self._touch(sha256)
            return False
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        with open(tmp, "rb") as fh, self._s3():
            self._client.put_object(
                Bucket=self.bucket, Key=self.key_for(sha256), Body=fh, ChecksumSHA256=checksum
            )
        Path(tmp).unlink()
        log.debug("evidence %s uploaded to s3://%s", sha256[:12], self.bucket)
        return True

    def _touch(self, sha256: str) -> None:
        """Make an object claimed again (a device retrying) young, so that `evidence orphans --remove`
        leaves it be: a copy onto itself sets its LastModified to now (no bytes travel)."""
        key = self.key_for(sha256)
        with self._s3():
            self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )

    def put_stream(
        self, stream: BinaryIO, *, expected_sha256: str | None = None, max_bytes: int | None = None
    ) -> StoredFile:
        """Copy a stream into the store, hashing as it goes; verify against expected_sha256."""
        return receive(self.open_incoming(max_bytes=max_bytes), stream, expected_sha256=expected_sha256)

    def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> StoredFile:
        return self.put_stream(io.BytesIO(data), expected_sha256=expected_sha256)

    def sync(self, files: list[StoredFile]) -> None:
        """Nothing to flush: an object is durable once its PUT (in `finish`) has returned."""

    def remove(self, sha256: str) -> bool:
        """Delete a stored object; only for one this process just created and no row references
        (another case may share it). True when it was there."""
        if not self.exists(sha256):
            return False
        with self._s3():
            self._client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        return True

    def delete_entry(
        self, entry: StoreEntry, *, min_age_s: float = 0.0, if_orphan: Callable[[], bool] | None = None
    ) -> bool:
        """Delete what `entries()` listed, unless it is younger than `min_age_s` now (an upload of
        the same bytes since the listing makes it young again) or `if_orphan()` says a row names it
        now; True when deleted."""
        if entry.complete:
            key = self.key_for(entry.name)
            try:
                with self._s3():
                    written = self._client.head_object(Bucket=self.bucket, Key=key)[
                        "LastModified"
                    ].timestamp()
            except ClientError as exc:
                if self._is_missing(exc):
                    return False
                raise
        else:
            try:
                written = (self.spool_dir / entry.name).stat().st_mtime
            except FileNotFoundError:
                return False
        if time.time() - written < min_age_s or (if_orphan is not None and not if_orphan()):
            return False
        if entry.complete:
            with self._s3():
                self._client.delete_object(Bucket=self.bucket, Key=key)
        else:
            (self.spool_dir / entry.name).unlink(missing_ok=True)
        return True
