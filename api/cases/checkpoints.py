"""Checkpoints of the custody ledger, kept outside the database: the anchor a rewrite cannot move.

A checkpoint is the ledger's head at one moment (seq, hash, count, time) in a small JSON file, written
outside the data folder (a copy of the data folder holds no checkpoint of itself) and ideally copied
further away (another machine, a write-once store, a webhook receiver). Later, `gridpatrol evidence
verify --against FILE` proves the ledger up to that seq was not rewritten: the entry at that seq still
has that hash, and the chain runs on from it without a gap (custody.verify_ledger).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from api.cases import custody
from api.errors import InputError
from api.storage.db import iso_utc, utcnow

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


def take(session: Session) -> Checkpoint:
    """The ledger's head now, once the ledger verifies (a checkpoint of a broken ledger would fix
    the break in place): CheckpointError naming the first problem otherwise."""
    custody.snapshot(session)
    check = custody.verify_ledger(session, cases={})
    if check.problems:
        raise CheckpointError("ledger", f"not checkpointed, the ledger does not verify: {check.problems[0]}")
    return Checkpoint(check.head.seq, check.head.hash, check.head.entries, iso_utc(utcnow()))


def write(checkpoint: Checkpoint, *, out: Path | None, folder: Path, data_dir: Path) -> Path:
    """Write the checkpoint to `out`, or to folder/checkpoint-<seq>-<time>.json; never inside data_dir."""
    path = out or folder / f"checkpoint-{checkpoint.ledger_seq:012d}-{checkpoint.at.replace(':', '')}.json"
    target = path.resolve()
    if target.is_relative_to(data_dir.resolve()):
        raise CheckpointError(
            "out", f"{path} is inside the data folder {data_dir}: a checkpoint must be kept outside it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(checkpoint.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


def load(path: Path) -> Checkpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("against", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError("against", f"{path} is not a checkpoint: {exc}") from None
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
