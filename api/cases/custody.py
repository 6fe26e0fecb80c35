"""Per-case custody log, append-only and chained by hash.

entry_hash = sha256(prev_hash + "\\n" + canonical JSON of (case_id, seq, at, actor, action, detail)).
The first entry's prev_hash is 64 zeros. Changing, removing or reordering any entry breaks the chain
from there on; `verify_chain` names the first entry that does not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from api.storage.db import table_of as _table
from api.storage.db import utcnow
from api.storage.models import CustodyEntry

GENESIS = "0" * 64
_INSERT = insert(_table(CustodyEntry))
_ENTRIES = _table(CustodyEntry).c
_LAST = (
    select(_ENTRIES.seq, _ENTRIES.entry_hash)
    .where(_ENTRIES.case_id == bindparam("case_id"))
    .order_by(_ENTRIES.seq.desc())
    .limit(1)
)


def _canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_digest(
    prev_hash: str, *, case_id: int, seq: int, at: datetime, actor: str, action: str, detail: str
) -> str:
    body = _canonical(
        {
            "case_id": case_id,
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "detail": detail,
        }
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def append(
    session: Session,
    *,
    case_id: int,
    actor: str,
    action: str,
    detail: dict[str, Any],
    new_chain: bool = False,
) -> str:
    """Append an entry; the caller holds the case row (locked on PostgreSQL) in this transaction.
    new_chain: the case was created in this transaction, so it has no entries yet."""
    """Returns the new entry's hash."""
    conn = session.connection()  # Core statements: this runs once per ingested incident
    last = None if new_chain else conn.execute(_LAST, {"case_id": case_id}).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.entry_hash
    at = utcnow()
    detail_text = _canonical(detail)
    values = {
        "case_id": case_id,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "detail": detail_text,
        "prev_hash": prev,
        "entry_hash": entry_digest(
            prev, case_id=case_id, seq=seq, at=at, actor=actor, action=action, detail=detail_text
        ),
    }
    conn.execute(_INSERT, values)
    return str(values["entry_hash"])


@dataclass(frozen=True, slots=True)
class ChainProblem:
    case_id: int
    seq: int | None
    reason: str


def verify_chain(entries: list[CustodyEntry], case_id: int) -> list[ChainProblem]:
    """Problems with one case's chain (entries in seq order); empty when intact."""
    problems = []
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            problems.append(
                ChainProblem(case_id, entry.seq, f"entry {expected_seq} missing (found seq {entry.seq})")
            )
            break
        if entry.prev_hash != prev:
            problems.append(ChainProblem(case_id, entry.seq, "prev_hash does not match the entry before"))
            break
        digest = entry_digest(
            prev,
            case_id=entry.case_id,
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            detail=entry.detail,
        )
        if digest != entry.entry_hash:
            problems.append(
                ChainProblem(case_id, entry.seq, "entry altered (hash does not match its content)")
            )
            break
        prev = entry.entry_hash
    return problems


def verify_all(session: Session) -> tuple[int, list[ChainProblem]]:
    """(number of chains checked, problems) over every case's custody log."""
    problems: list[ChainProblem] = []
    chains = 0
    current: int | None = None
    batch: list[CustodyEntry] = []
    stmt = (
        select(CustodyEntry)
        .order_by(CustodyEntry.case_id, CustodyEntry.seq)
        .execution_options(yield_per=2000)
    )
    for entry in session.scalars(stmt):
        if entry.case_id != current:
            if current is not None:
                problems += verify_chain(batch, current)
                chains += 1
            current, batch = entry.case_id, []
        batch.append(entry)
    if current is not None:
        problems += verify_chain(batch, current)
        chains += 1
    return chains, problems
