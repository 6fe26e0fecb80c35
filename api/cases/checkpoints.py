"""Checkpoints of the custody ledger, kept outside the database: the anchor a rewrite cannot move.

A checkpoint is the ledger's head at one moment (seq, hash, count, time) in a small JSON file, written
outside the data folder (a copy of the data folder holds no checkpoint of itself) and ideally copied
further away (another machine, a write-once store, a webhook receiver). Later, `gridpatrol evidence
verify --against FILE` proves the ledger up to that seq was not rewritten: the entry at that seq still
has that hash, and the chain runs on from it without a gap (custody.verify_ledger).

The server takes one on a schedule (CheckpointSchedule, every GRIDPATROL_CHECKPOINT_EVERY_MIN minutes
when the ledger has moved): each proves the ledger runs on from the one before without a gap, is
written to the checkpoint folder, and is sent to the webhooks subscribed to `custody.checkpoint`, so
a receiver elsewhere keeps a copy that whoever holds this machine cannot change. A receiver's copy
of the webhook body is itself a checkpoint file for `verify --against`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from api.cases import custody, webhooks
from api.errors import InputError
from api.periodic import Periodic
from api.storage.db import iso_utc, utcnow
from api.storage.disk import replace_durably

log = logging.getLogger(__name__)

FORMAT = "gridpatrol-custody-checkpoint/1"


class CheckpointError(InputError):
    """A checkpoint that cannot be written where asked, or read back."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    ledger_seq: int
    ledger_hash: str
    entries: int
    at: str  # ISO 8601 UTC

    def to_json(self) -> dict[str, object]:
        return {"format": FORMAT, **asdict(self)}

    @property
    def head(self) -> custody.LedgerHead:
        return custody.LedgerHead(self.ledger_seq, self.ledger_hash, self.entries)


def of_head(head: custody.LedgerHead) -> Checkpoint:
    """A checkpoint of a ledger head that was checked (custody.verify_ledger, api.cases.audit)."""
    return Checkpoint(head.seq, head.hash, head.entries, iso_utc(utcnow()))


def take(session: Session, *, since: Checkpoint | None = None) -> Checkpoint:
    """The ledger's head now, once the ledger verifies (a checkpoint of a broken ledger would fix
    the break in place): CheckpointError naming the first problem otherwise. `since`: an earlier
    checkpoint; only the entries after it are walked, and they must run on from its hash."""
    custody.snapshot(session)
    check = custody.verify_ledger(session, cases={}, since=None if since is None else since.head)
    if check.problems:
        raise CheckpointError("ledger", f"not checkpointed, the ledger does not verify: {check.problems[0]}")
    return of_head(check.head)


def send_to_witnesses(session: Session, checkpoint: Checkpoint) -> int:
    """Queue the checkpoint for every webhook subscribed to custody.checkpoint (in the caller's
    transaction); returns how many."""
    return webhooks.enqueue(
        session,
        event=webhooks.WebhookEvent.CUSTODY_CHECKPOINT,
        case_id=None,
        payload=checkpoint.to_json(),
        key="checkpoint",
    )


def write(checkpoint: Checkpoint, *, out: Path | None, folder: Path, data_dir: Path) -> Path:
    """Write the checkpoint to `out`, or to folder/checkpoint-<seq>-<time>.json; never inside data_dir."""
    path = out or folder / f"checkpoint-{checkpoint.ledger_seq:012d}-{checkpoint.at.replace(':', '')}.json"
    target = path.resolve()
    if target.is_relative_to(data_dir.resolve()):
        raise CheckpointError(
            "out", f"{path} is inside the data folder {data_dir}: a checkpoint must be kept outside it"
        )
    field = "out" if out else "checkpoint folder"
    if target.is_dir():
        raise CheckpointError(field, f"{path} is a folder: name the checkpoint's file")
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # deepest first
    below = (created[-1] if created else target).parent
    if not below.is_dir():  # a file where a folder of the path belongs
        raise CheckpointError(field, f"cannot write {path}: {below} is not a folder")
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
        replace_durably(partial, target)  # an auditor's copy: on disk when the command says it is written
    except OSError as exc:  # nothing left behind: neither the partial file nor the folders made for it
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
        why = (exc.strerror or str(exc)).lower()
        raise CheckpointError(field, f"cannot write {path}: {why}") from None
    return target


def load(path: Path) -> Checkpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("against", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError("against", f"{path} is not a checkpoint: {exc}") from None
    if isinstance(data, dict) and data.get("event") == webhooks.WebhookEvent.CUSTODY_CHECKPOINT:
        data = data.get("checkpoint")  # a witness's copy of the webhook body
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("against", f"{path} is not a checkpoint (format is not {FORMAT})")
    try:
        return Checkpoint(
            int(data["ledger_seq"]), str(data["ledger_hash"]), int(data["entries"]), str(data["at"])
        )
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            "against", f"{path} is not a checkpoint (a field is missing or wrong)"
        ) from None


def compare(checkpoint: Checkpoint, hashes_at: dict[int, str], head: custody.LedgerHead) -> list[str]:
    """Problems of the ledger against a checkpoint, given the ledger hash at its seq (when present)."""
    seq = checkpoint.ledger_seq
    if seq == 0:
        return []
    if head.seq < seq:
        return [f"checkpoint of {checkpoint.at}: the ledger ends at entry {head.seq}, before its entry {seq}"]
    found = hashes_at.get(seq)
    if found is None:
        return [f"checkpoint of {checkpoint.at}: custody entry {seq} missing"]
    if found != checkpoint.ledger_hash:
        return [
            f"checkpoint of {checkpoint.at}: the ledger was rewritten at or before custody entry {seq} "
            f"(its hash is {found}, the checkpoint says {checkpoint.ledger_hash})"
        ]
    return []


def newest(folder: Path) -> Checkpoint | None:
    """The checkpoint of the furthest ledger entry in `folder` (unreadable files skipped), or None."""
    found: list[Checkpoint] = []
    for path in folder.glob("checkpoint-*.json"):
        try:
            found.append(load(path))
        except CheckpointError:
            log.warning("%s is not a readable checkpoint; skipped", path)
    return max(found, key=lambda c: (c.ledger_seq, c.at), default=None)


class CheckpointSchedule(Periodic):
    """Background thread of the server: a checkpoint every `every_s` seconds when the ledger has
    moved since the last one, written to `folder` and sent to the witnesses. Each must run on from
    the newest one in `folder` (also across restarts, so a rewrite while the server was down is
    found at the next round); a ledger that does not is logged as an error each round and never
    checkpointed (a database replaced on purpose needs its old checkpoints moved out of `folder`)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        every_s: float,
        folder: Path,
        data_dir: Path,
        read_factory: sessionmaker[Session] | None = None,
    ) -> None:
        super().__init__(every_s)
        self.factory = factory
        self.read_factory = read_factory or factory
        self.folder = folder
        self.data_dir = data_dir
        self.last: Checkpoint | None = newest(folder)

    thread_name = "gridpatrol-checkpoints"

    def round(self) -> None:
        try:
            self.run_once()
        except CheckpointError as exc:
            log.error("custody checkpoint not taken: %s", exc)

    def run_once(self) -> Path | None:
        """Take, write and send a checkpoint if the ledger moved; the file's path, or None."""
        with self.read_factory() as session:
            checkpoint = take(session, since=self.last)
        if checkpoint.ledger_seq == 0 or (
            self.last is not None and checkpoint.ledger_seq == self.last.ledger_seq
        ):
            return None
        path = write(checkpoint, out=None, folder=self.folder, data_dir=self.data_dir)
        with self.factory() as session:
            witnesses = send_to_witnesses(session, checkpoint)
            session.commit()
        self.last = checkpoint
        log.info(
            "custody checkpoint of entry %d written to %s and sent to %d witness(es)",
            checkpoint.ledger_seq,
            path,
            witnesses,
        )
        return path
