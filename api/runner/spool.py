"""The runner's store-and-forward spool: incidents with their evidence files, kept on disk in arrival
order until the case service has them, within a bound on bytes and items.

Layout under the spool folder (one process owns it at a time: `lock` is flock'ed, SpoolBusy else):

    items/000000000042/       one item per folder, named by a zero-padded sequence number (arrival order)
        meta.json             {"format", "queued_at" (Unix s), "incident" (the JSON as given),
                               "evidence_dropped", "files": [{"name", "role", "filename", "sha256",
                               "size", "media_type"}]}
        evidence-0 ...        the evidence files, as given
    tmp/                      items being written, acked or dropped; emptied when the spool opens
    rejected/000000000042/    items the case service refused as bad (see Spool.reject), with response.json

Crash safety: an item is written whole into tmp/ (each file and meta.json fsync'ed), then renamed into
items/ (and items/ fsync'ed) before put() returns, so a process killed at any point leaves either the
whole item or nothing visible; leftovers in tmp/ are removed at open. An item leaves items/ by one
rename too (ack, drop, reject). meta.json is only ever replaced by rename. Numbering continues after a
restart from the highest number present in items/ or rejected/.

Bounds: `max_bytes` (evidence files plus meta.json, not the file system's block overhead) and
`max_items`. When a put would pass either, room is made in `severity` order, least severe category
first (categories not in the order count as less severe than any in it, by name): while the bytes are
over, the evidence files of every category's items go first (least severe category first, oldest
first, the new item counting as the newest), since an incident without its pictures still reaches
the case service; only then whole items, in the same order. Each drop is logged and counted
(SpoolState). A put whose own item had to go returns None.

An item whose evidence was dropped keeps its incident JSON as it was given (its evidence list names the
files it had) and is sent (Parcel) with that evidence list emptied: POST /api/incidents refuses a listed
file that is not sent. The case service then records the incident as a sighting without evidence: the
case has no annotated image, crop or dwell strip of it, and nothing in the case says the runner dropped
them (the incident JSON keeps no key the service does not know).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mimetypes
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SEVERITY = ("piled_debris", "street_vending", "illegal_parking")  # least to most severe
META = "meta.json"
RESPONSE = "response.json"
FORMAT = 1
SEQ_DIGITS = 12
_SEQ_NAME = re.compile(rf"^[0-9]{{{SEQ_DIGITS}}}$")

EvidenceSource = bytes | str | os.PathLike[str]
EvidenceFile = tuple[str, str, EvidenceSource]  # (role, filename, the bytes or a path to them)


class SpoolError(Exception):
    """Something the spool cannot do, named."""


class SpoolBusy(SpoolError):
    """Another process has the spool folder open."""


class IncidentNotSpoolable(SpoolError):
    """An incident the spool cannot take as given; `field` names the part (incident.id, files[2], ...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ItemGone(SpoolError):
    """The item left the spool meanwhile (acked, dropped or rejected)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One spooled incident, as the index knows it."""

    seq: int
    incident_id: str
    category: str
    queued_at: float  # Unix time (s) the spool took it
    bytes: int  # its files plus meta.json
    files: int
    evidence_dropped: bool

    @property
    def name(self) -> str:
        return f"{self.seq:0{SEQ_DIGITS}d}"


@dataclass(frozen=True, slots=True)
class ParcelFile:
    role: str
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Parcel:
    """An item as it is sent: its incident JSON (the evidence list emptied when the evidence was
    dropped) and its evidence files in the order given."""

    item: Item
    incident: dict[str, Any]
    files: list[ParcelFile]


@dataclass(frozen=True, slots=True)
class SpoolState:
    """The spool's figures for the runner's heartbeat; the dropped counts are this process's."""

    items: int
    bytes: int
    oldest_age_s: float | None  # None when empty
    max_items: int
    max_bytes: int
    evidence_dropped: int  # items whose evidence files were dropped to make room
    items_dropped: int  # whole items dropped to make room
    bytes_dropped: int
    rejected: int  # items in rejected/


@dataclass(slots=True)
class _Pending:
    """An item written into tmp/ and not yet in items/."""

    path: Path
    meta: dict[str, Any]
    bytes: int
    alive: bool = True

    @property
    def category(self) -> str:
        return str(self.meta["incident"]["category"])


class Spool:
    """The spool folder `root` (created if missing). Thread-safe; one process at a time."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int,
        max_items: int,
        severity: Sequence[str] = DEFAULT_SEVERITY,
        max_rejected: int = 1000,
    ) -> None:
        if max_bytes < 1 or max_items < 1:
            raise ValueError("max_bytes and max_items must be at least 1")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.severity = tuple(severity)
        self.max_rejected = max_rejected
        self._items_dir = self.root / "items"
        self._tmp = self.root / "tmp"
        self.rejected_dir = self.root / "rejected"
        for folder in (self.root, self._items_dir, self._tmp, self.rejected_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock_folder(self.root / "lock")
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._items: dict[int, Item] = {}  # in sequence order
        self._bytes = 0
        self._rejected = 0
        self._dropped = {"evidence": 0, "items": 0, "bytes": 0}
        try:
            self._recover()
            with self._lock:
                self._make_room(None)
        except BaseException:
            self.close()
            raise

    # --- opening ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Empty tmp/, index items/ (removing what a crash left inside an item) and number on."""
        for leftover in sorted(self._tmp.iterdir()):
            log.info("spool: removing %s left by an interrupted write", leftover.name)
            _remove(leftover)
        rejected = [p for p in self.rejected_dir.iterdir() if _SEQ_NAME.match(p.name)]
        self._rejected = len(rejected)
        highest = max((int(p.name) for p in rejected), default=0)
        for path in sorted(self._items_dir.iterdir()):
            if not _SEQ_NAME.match(path.name) or not path.is_dir():
                log.warning("spool: removing %s, which is no spool item", path)
                self._discard(path)
                continue
            seq = int(path.name)
            highest = max(highest, seq)
            try:
                item = self._index_item(seq, path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spool: item %s is unreadable (%s); moved to %s", path.name, exc, self.rejected_dir)
                self._move_to_rejected(path, {"status": None, "reason": f"unreadable in the spool: {exc}"})
                continue
            self._items[seq] = item
            self._bytes += item.bytes
        self._next_seq = highest + 1

    def _index_item(self, seq: int, path: Path) -> Item:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        listed = {entry["name"] for entry in meta["files"]}
        for stray in path.iterdir():
            if stray.name != META and stray.name not in listed:
                stray.unlink()  # meta.json.tmp, response.json, a file whose drop was interrupted
        size = (path / META).stat().st_size
        for entry in meta["files"]:
            size += (path / entry["name"]).stat().st_size
        return _item_of(seq, meta, size)

    # --- taking items -------------------------------------------------------------------------

    def put(self, incident: dict[str, Any], files: Sequence[EvidenceFile] = ()) -> Item | None:
        """Keep an incident (detect.values.Incident.to_json()) with its evidence files (role, filename,
        bytes or a path), whole on disk before this returns; the files must be those its evidence list
        names (by SHA-256), or IncidentNotSpoolable. Returns the item, or None when making room for it
        dropped it (its category is the least severe and the spool is full of more severe ones)."""
        listed = _check_incident(incident)
        staging = self._tmp / f"put-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            entries: list[dict[str, Any]] = []
            for index, (role, filename, source) in enumerate(files):
                name = f"evidence-{index}"
                sha256, size = _write_file(staging / name, source)
                entry = listed.get(sha256)
                if entry is None:
                    raise IncidentNotSpoolable(
                        f"files[{index}]",
                        f"{filename}: SHA-256 {sha256} is not in the incident's evidence list",
                    )
                media_type = entry.get("media_type") or mimetypes.guess_type(filename)[0]
                entries.append(
                    {
                        "name": name,
                        "role": role,
                        "filename": filename,
                        "sha256": sha256,
                        "size": size,
                        "media_type": media_type or "application/octet-stream",
                    }
                )
            missing = sorted(set(listed) - {entry["sha256"] for entry in entries})
            if missing:
                raise IncidentNotSpoolable(
                    "incident.evidence", f"lists SHA-256 {missing[0]} but no file given has it"
                )
            meta = {
                "format": FORMAT,
                "queued_at": time.time(),
                "incident": incident,
                "evidence_dropped": False,
                "files": entries,
            }
            total = _write_meta(staging, meta) + sum(entry["size"] for entry in entries)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        pending = _Pending(staging, meta, total)
        with self._lock:
            if not self._make_room(pending):
                return None
            seq = self._next_seq
            self._next_seq += 1
            item = _item_of(seq, pending.meta, pending.bytes)
            os.rename(staging, self._items_dir / item.name)
            _fsync_dir(self._items_dir)
            self._items[seq] = item
            self._bytes += item.bytes
            self._arrived.notify_all()
        return item

    # --- reading ------------------------------------------------------------------------------

    def oldest(self) -> Item | None:
        with self._lock:
            return next(iter(self._items.values()), None)

    def items(self) -> list[Item]:
        """The items now in the spool, oldest first."""
        with self._lock:
            return list(self._items.values())

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def load(self, item: Item) -> Parcel:
        """The item as it is to be sent (read now: a drop since `item` was taken is seen); ItemGone
        when it has left the spool."""
        with self._lock:
            current = self._items.get(item.seq)
            if current is None:
                raise ItemGone(item.name)
            path = self._items_dir / item.name
            meta = json.loads((path / META).read_text(encoding="utf-8"))
            files = [
                ParcelFile(e["role"], e["filename"], e["media_type"], (path / e["name"]).read_bytes())
                for e in meta["files"]
            ]
        incident = dict(meta["incident"])
        if meta["evidence_dropped"]:
            incident["evidence"] = []
        return Parcel(current, incident, files)

    def wait(self, timeout_s: float, *, until: Callable[[], bool] | None = None) -> bool:
        """Block until the spool holds an item (True), or `timeout_s` passes, or `until()` is true when
        checked (at the start and at each wake())."""
        with self._arrived:
            self._arrived.wait_for(lambda: bool(self._items) or (until is not None and until()), timeout_s)
            return bool(self._items)

    def wake(self) -> None:
        """Wake the threads blocked in wait() to check their `until` (a forwarder being stopped)."""
        with self._arrived:
            self._arrived.notify_all()

    def state(self, now: float | None = None) -> SpoolState:
        now = time.time() if now is None else now
        with self._lock:
            oldest = next(iter(self._items.values()), None)
            return SpoolState(
                items=len(self._items),
                bytes=self._bytes,
                oldest_age_s=None if oldest is None else max(0.0, now - oldest.queued_at),
                max_items=self.max_items,
                max_bytes=self.max_bytes,
                evidence_dropped=self._dropped["evidence"],
                items_dropped=self._dropped["items"],
                bytes_dropped=self._dropped["bytes"],
                rejected=self._rejected,
            )

    # --- letting go ---------------------------------------------------------------------------

    def ack(self, item: Item) -> None:
        """The case service has the item: remove it (nothing happens if it is gone already)."""
        with self._lock:
            current = self._items.pop(item.seq, None)
            if current is None:
                return
            self._bytes -= current.bytes
            self._discard(self._items_dir / item.name)

    def reject(self, item: Item, response: dict[str, Any]) -> Path | None:
        """The case service refused the item as bad: move it to rejected/ with `response` (what the
        service answered) saved as response.json beside it. Returns where it went (None if gone)."""
        with self._lock:
            current = self._items.pop(item.seq, None)
            if current is None:
                return None
            self._bytes -= current.bytes
            return self._move_to_rejected(self._items_dir / item.name, response)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inside the lock ----------------------------------------------------------------------

    def _over(self, pending: _Pending | None) -> tuple[bool, bool]:
        """(over max_items, over max_bytes), counting the pending item while it lives."""
        count, total = len(self._items), self._bytes
        if pending is not None and pending.alive:
            count, total = count + 1, total + pending.bytes
        return count > self.max_items, total > self.max_bytes

    def _drop_order(self, pending: _Pending | None) -> list[str]:
        present = {item.category for item in self._items.values()}
        if pending is not None:
            present.add(pending.category)
        unknown = sorted(present - set(self.severity))
        return unknown + [c for c in self.severity if c in present]

    def _make_room(self, pending: _Pending | None) -> bool:
        """Drop what the bounds require, least severe category first (see the module docstring);
        True when the pending item (if any) is still to be kept. Normally the spool is within its
        bounds before a put, and dropping the pending item ends it; bounds lowered since the items came
        (at open) are met the same way."""
        if not any(self._over(pending)):
            return True
        order = self._drop_order(pending)

        def candidates(category: str) -> list[int | _Pending]:
            found: list[int | _Pending] = [s for s, i in self._items.items() if i.category == category]
            if pending is not None and pending.alive and pending.category == category:
                found.append(pending)
            return found

        # evidence first, in every category (least severe, oldest first): an incident without its
        # pictures still reaches the case service; only then whole incidents, in the same order
        for category in order:
            for candidate in candidates(category):
                if not self._over(pending)[1]:
                    break
                self._drop_evidence(candidate)
        for category in order:
            for candidate in candidates(category):
                if not any(self._over(pending)):
                    break
                self._drop_item(candidate)
            if not any(self._over(pending)):
                break
        return pending is None or pending.alive

    def _drop_evidence(self, candidate: int | _Pending) -> None:
        if isinstance(candidate, _Pending):
            path, meta, before = candidate.path, candidate.meta, candidate.bytes
        else:
            item = self._items[candidate]
            if not item.files:
                return
            path, before = self._items_dir / item.name, item.bytes
            meta = json.loads((path / META).read_text(encoding="utf-8"))
        if not meta["files"]:
            return
        dropped = dict(meta, evidence_dropped=True, files=[])
        after = _write_meta(path, dropped)  # first: a crash now leaves files meta.json no longer lists
        for entry in meta["files"]:
            (path / entry["name"]).unlink()
        _fsync_dir(path)
        incident = meta["incident"]
        log.warning(
            "spool full: dropped the %d evidence files (%d bytes) of incident %s (%s), queued %s",
            len(meta["files"]),
            before - after,
            incident["id"],
            incident["category"],
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(meta["queued_at"])),
        )
        self._dropped["evidence"] += 1
        self._dropped["bytes"] += before - after
        if isinstance(candidate, _Pending):
            candidate.meta, candidate.bytes = dropped, after
        else:
            self._items[candidate] = replace(item, bytes=after, files=0, evidence_dropped=True)
            self._bytes -= before - after

    def _drop_item(self, candidate: int | _Pending) -> None:
        if isinstance(candidate, _Pending):
            path, meta_incident, size = candidate.path, candidate.meta["incident"], candidate.bytes
            candidate.alive = False
            label = "the incoming incident"
        else:
            item = self._items.pop(candidate)
            path, size = self._items_dir / item.name, item.bytes
            meta_incident = {"id": item.incident_id, "category": item.category}
            self._bytes -= size
            label = f"spooled item {item.name}: incident"
        self._discard(path)
        log.warning(
            "spool full: dropped %s %s (%s) whole, %d bytes",
            label,
            meta_incident["id"],
            meta_incident["category"],
            size,
        )
        self._dropped["items"] += 1
        self._dropped["bytes"] += size

    def _discard(self, path: Path) -> None:
        """Take a folder out of sight by one rename, then delete it."""
        gone = self._tmp / f"gone-{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, gone)
        _fsync_dir(path.parent)
        _remove(gone)

    def _move_to_rejected(self, path: Path, response: dict[str, Any]) -> Path:
        body = json.dumps(response, ensure_ascii=False, indent=1, default=str).encode()
        _write_bytes(path / RESPONSE, body)
        target = self.rejected_dir / path.name
        if target.exists():  # a number reused after the queue emptied; keep the older one too
            target = self.rejected_dir / f"{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, target)
        _fsync_dir(self.rejected_dir)
        _fsync_dir(path.parent)
        self._rejected += 1
        self._prune_rejected()
        return target

    def _prune_rejected(self) -> None:
        if self._rejected <= self.max_rejected:
            return
        kept = sorted(p for p in self.rejected_dir.iterdir() if _SEQ_NAME.match(p.name[:SEQ_DIGITS]))
        for old in kept[: max(0, len(kept) - self.max_rejected)]:
            log.info("spool: removing rejected item %s (more than %d kept)", old.name, self.max_rejected)
            self._discard(old)
        self._rejected = min(len(kept), self.max_rejected)


# --- files ----------------------------------------------------------------------------------------


def _lock_folder(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolBusy(f"{path.parent} is open in another process") from None
    return fd


def _check_incident(incident: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The incident's evidence entries by SHA-256, after checking what the spool itself relies on."""
    if not isinstance(incident, dict):
        raise IncidentNotSpoolable("incident", "must be a JSON object")
    for key in ("id", "category"):
        if not isinstance(incident.get(key), str) or not incident[key]:
            raise IncidentNotSpoolable(f"incident.{key}", "must be a non-empty string")
    evidence = incident.get("evidence") or []
    if not isinstance(evidence, list):
        raise IncidentNotSpoolable("incident.evidence", "must be a list")
    listed: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(evidence):
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise IncidentNotSpoolable(f"incident.evidence[{index}]", "needs its sha256")
        listed[entry["sha256"]] = entry
    return listed


def _item_of(seq: int, meta: dict[str, Any], size: int) -> Item:
    incident = meta["incident"]
    return Item(
        seq=seq,
        incident_id=str(incident["id"]),
        category=str(incident["category"]),
        queued_at=float(meta["queued_at"]),
        bytes=size,
        files=len(meta["files"]),
        evidence_dropped=bool(meta["evidence_dropped"]),
    )


def _write_file(path: Path, source: EvidenceSource) -> tuple[str, int]:
    """Copy bytes or a file to `path`, fsync'ed; returns (SHA-256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "xb") as out:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            out.write(data)
            digest.update(data)
            size = len(data)
        else:
            with open(source, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_meta(folder: Path, meta: dict[str, Any]) -> int:
    """Write meta.json whole (a temporary file renamed over it); returns its size."""
    data = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
    temporary = folder / (META + ".tmp")
    _write_bytes(temporary, data)
    os.rename(temporary, folder / META)
    _fsync_dir(folder)
    return len(data)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
