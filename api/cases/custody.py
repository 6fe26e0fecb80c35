"""The custody log: per case, and one ledger over every case; append-only and chained by hash.

entry_hash = sha256(prev_hash + "\\n" + canonical JSON of (case_id, seq, at, actor, action, detail)).
The first entry's prev_hash is 64 zeros. Changing, removing or reordering any entry breaks the chain
from there on; `verify_chain` names the first entry that does not match.

Every entry also takes the next place in the ledger: ledger_hash = sha256(ledger_prev + "\\n" +
ledger_seq + "\\n" + entry_hash), ledger seq 1, 2, 3... across all cases. A missing entry anywhere is
then a gap, and the head row (custody_ledger_head, advanced under its row lock by every append, which
serialises appends on PostgreSQL; inside `batched`, once for all the block's appends, at its end)
shows a deleted trailing entry. A rewrite of the whole ledger by
someone who can write the database is caught only against a checkpoint kept outside it
(api.cases.checkpoints). What the entries say about a case is checked by api.cases.audit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from api.storage.db import lenient_columns, read_times, utcnow
from api.storage.db import table_of as _table
from api.storage.models import CustodyEntry, CustodyLedgerHead

GENESIS = "0" * 64
_INSERT = insert(_table(CustodyEntry))
_HEAD = _table(CustodyLedgerHead)
# the head row advanced first: on PostgreSQL the UPDATE holds its row lock until commit, so appends
# take ledger places one after the other (SQLite serialises every writer anyway)
_ADVANCE = (
    update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.hash)
)
_SET_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("head_hash"), at=bindparam("head_at"))
_ENTRIES = _table(CustodyEntry).c
_LATEST = (
    select(_ENTRIES.case_id, func.max(_ENTRIES.seq).label("seq"))
    .where(_ENTRIES.case_id.in_(bindparam("case_ids", expanding=True)))
    .group_by(_ENTRIES.case_id)
    .subquery("latest")
)
_LASTS = select(_ENTRIES.case_id, _ENTRIES.seq, _ENTRIES.entry_hash).join(
    _LATEST, and_(_ENTRIES.case_id == _LATEST.c.case_id, _ENTRIES.seq == _LATEST.c.seq)
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


def ledger_digest(ledger_prev: str, ledger_seq: int, entry_hash: str) -> str:
    """The ledger hash of an entry (migration 0006 keeps a frozen copy: change neither alone)."""
    return hashlib.sha256(f"{ledger_prev}\n{ledger_seq}\n{entry_hash}".encode()).hexdigest()


# what a new case is, recorded in its first entry (api.cases.audit replays the later entries on it)
CASE_FACTS = (
    "number",
    "category",
    "status",
    "team",
    "grid_cell_id",
    "plate",
    "camera_id",
    "device_id",
    "lat",
    "lon",
)
# what a sighting row says, hashed into the custody entry that recorded it (api.cases.audit compares)
SIGHTING_FACTS = (
    "incident_id",
    "seen_at",
    "lat",
    "lon",
    "plate",
    "camera_id",
    "device_id",
    "job_id",
    "incident_json",
    "recurrence",
)


def sighting_digest(row: Mapping[Any, Any]) -> str:
    """SHA-256 of a sighting's facts (a row as inserted or as read back: the same digest)."""
    return hashlib.sha256(_canonical({k: row[k] for k in SIGHTING_FACTS}).encode()).hexdigest()


@dataclass
class _Batch:
    """The appends of one transaction written together (see `batched`), in order: each an entry
    without its chain fields (seq, prev_hash, entry_hash) and ledger place yet, and the cases whose
    chains the block starts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    new_chains: set[int] = field(default_factory=set)


_BATCH_KEY = "gridpatrol_custody_batch"
_ADVANCE_BY = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("places"))
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Appends inside this block are chained and take their ledger places when the block ends, all
    together: the last entries of the cases whose chains the block continues are read in one query
    (the transaction holds those cases by then, so no other writer can append to them), each entry
    is chained after its case's last, the head row is advanced and locked once (PostgreSQL: until
    commit), the entries inserted in one multi-row INSERT, the head's hash set once: four
    statements a block instead of up to four an append. The chains and the ledger are the same as
    appending one by one, in the order of the appends. The head row is the last lock the
    transaction takes, as for a single append, so a writer ingesting many incidents in one
    transaction (api.cases.ingest) and a transition locking a case and then the head cannot
    deadlock. Nothing in the block may read custody entries back from the database. On an error
    nothing is written: the caller rolls back."""
    batch = _Batch()
    session.info[_BATCH_KEY] = batch
    try:
        yield
    finally:
        session.info.pop(_BATCH_KEY, None)
    if not batch.rows:
        return
    conn = session.connection()
    continued = sorted({row["case_id"] for row in batch.rows} - batch.new_chains)
    last: dict[int, tuple[int, str]] = {}
    if continued:
        last = _last_entries(conn, continued)
    for row in batch.rows:
        _chain(row, last.get(row["case_id"]))
        last[row["case_id"]] = (row["seq"], row["entry_hash"])
    head = conn.execute(_ADVANCE_BY, {"places": len(batch.rows)}).one()
    ledger_seq, ledger_prev = int(head.seq) - len(batch.rows), head.hash
    for row in batch.rows:
        ledger_seq += 1
        row.update(ledger_seq=ledger_seq, ledger_prev=ledger_prev)
        row["ledger_hash"] = ledger_prev = ledger_digest(ledger_prev, ledger_seq, row["entry_hash"])
    conn.execute(_INSERT, batch.rows)
    conn.execute(_SET_HEAD, {"head_hash": ledger_prev, "head_at": batch.rows[-1]["at"]})


def _last_entries(conn: Connection, case_ids: list[int]) -> dict[int, tuple[int, str]]:
    """Each case's last entry (seq, entry hash); a case with no entries is left out."""
    found = conn.execute(_LASTS, {"case_ids": case_ids})
    return {row.case_id: (row.seq, row.entry_hash) for row in found}


def _chain(row: dict[str, Any], last: tuple[int, str] | None) -> None:
    """Fill in an entry's place in its case's chain, after the case's last entry (None: the first)."""
    row["seq"] = 1 if last is None else last[0] + 1
    row["prev_hash"] = GENESIS if last is None else last[1]
    row["entry_hash"] = entry_digest(
        row["prev_hash"],
        case_id=row["case_id"],
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        detail=row["detail"],
    )


def append(
    session: Session,
    *,
    case_id: int,
    actor: str,
    action: str,
    detail: dict[str, Any],
    new_chain: bool = False,
) -> str | None:
    """Append an entry to the case's chain and to the ledger; returns the new entry's hash (None
    inside `batched`: the entry is chained, and takes its ledger place, when the block ends).

    The caller holds the case row (locked on PostgreSQL) in this transaction. new_chain: the case was
    created in this transaction, so it has no entries yet."""
    row: dict[str, Any] = {
        "case_id": case_id,
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "detail": _canonical(detail),
    }
    batch: _Batch | None = session.info.get(_BATCH_KEY)
    if batch is not None:
        batch.rows.append(row)
        if new_chain:
            batch.new_chains.add(case_id)
        return None
    conn = session.connection()  # Core statements
    last: tuple[int, str] | None = None
    if not new_chain:
        last = _last_entries(conn, [case_id]).get(case_id)
    _chain(row, last)
    head = conn.execute(_ADVANCE).one()  # locks the head row until commit (PostgreSQL)
    ledger_hash = ledger_digest(head.hash, head.seq, row["entry_hash"])
    conn.execute(_INSERT, dict(row, ledger_seq=head.seq, ledger_prev=head.hash, ledger_hash=ledger_hash))
    conn.execute(_SET_HEAD, {"head_hash": ledger_hash, "head_at": row["at"]})
    return str(row["entry_hash"])


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
        if not isinstance(entry.at, datetime):  # SQLite's text, edited to something else
            problems.append(
                ChainProblem(case_id, entry.seq, f"entry altered (its time {entry.at!r} is no time)")
            )
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


def read_entries(session: Session, where: ColumnElement[bool]) -> list[CustodyEntry]:
    """The custody entries `where` selects, by case and seq (detached objects, never written). An
    entry's time that does not read as one (SQLite keeps times as text, which an edit of the file can
    make anything) is kept as that text, for verify_chain to name the entry."""
    entries_t = _table(CustodyEntry)
    dialect = session.get_bind().dialect
    stmt = select(*lenient_columns(entries_t)).where(where).order_by(entries_t.c.case_id, entries_t.c.seq)
    entries = []
    for row in session.execute(stmt):
        values = dict(row._mapping)
        read_times(values, entries_t, dialect)
        entries.append(CustodyEntry(**values))
    return entries


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


@dataclass(frozen=True, slots=True)
class LedgerHead:
    seq: int
    hash: str
    entries: int


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    head: LedgerHead  # as recomputed from the entries (seq and hash of the last one)
    problems: list[str]
    hashes_at: dict[int, str]  # ledger hash at the seqs asked for (those present)


def snapshot(session: Session) -> None:
    """Read the rest of this session's transaction from one snapshot, so that a check reading many
    tables while the service writes sees one moment (PostgreSQL: REPEATABLE READ; SQLite's read
    transaction is one snapshot already). Call before the session's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def recorded_head(session: Session) -> LedgerHead:
    """The head row as stored; seq 0 and GENESIS before any entry, entries -1 when the row is gone."""
    row = session.execute(
        select(CustodyLedgerHead.seq, CustodyLedgerHead.hash).where(CustodyLedgerHead.id == 1)
    ).first()
    return LedgerHead(0, GENESIS, -1) if row is None else LedgerHead(int(row.seq), row.hash, int(row.seq))


def verify_ledger(
    session: Session,
    *,
    cases: dict[int, str],
    at_seqs: tuple[int, ...] = (),
    since: LedgerHead | None = None,
) -> LedgerCheck:
    """The ledger walked in order: seq 1, 2, 3... without a gap, each ledger_prev the hash before it
    and each ledger_hash recomputed; then the head row. `cases`: case id -> number, for the messages.
    The entry hashes themselves are checked against their content by verify_chain. `since`: walk only
    the entries after that head (a checkpoint's), which must follow on from its hash."""
    problems: list[str] = []
    wanted = set(at_seqs)
    hashes_at: dict[int, str] = {}
    c = _table(CustodyEntry).c
    stmt = (
        select(c.ledger_seq, c.ledger_prev, c.ledger_hash, c.entry_hash, c.case_id, c.seq)
        .order_by(c.ledger_seq)
        .execution_options(yield_per=5000)
    )
    expected, prev, count = 1, GENESIS, 0
    before = "the start"
    if since is not None and since.seq > 0:
        stmt = stmt.where(c.ledger_seq > since.seq)
        expected, prev, count = since.seq + 1, since.hash, since.entries
        before = f"custody entry {since.seq} (the last checkpoint)"
    for row in session.connection().execute(stmt):
        count += 1
        here = f"case {cases.get(row.case_id, row.case_id)} entry {row.seq}"
        if row.ledger_seq != expected:
            missing = (
                f"custody entry {expected} missing"
                if row.ledger_seq == expected + 1
                else f"custody entries {expected}..{row.ledger_seq - 1} missing"
            )
            problems.append(f"ledger: {missing} (between {before} and {here})")
        elif row.ledger_prev != prev:
            problems.append(
                f"ledger: custody entry {row.ledger_seq} ({here}) does not follow the entry before"
            )
        if ledger_digest(row.ledger_prev, row.ledger_seq, row.entry_hash) != row.ledger_hash:
            problems.append(
                f"ledger: custody entry {row.ledger_seq} ({here}) altered (ledger hash does not match)"
            )
        if row.ledger_seq in wanted:
            hashes_at[row.ledger_seq] = row.ledger_hash
        expected, prev, before = (
            row.ledger_seq + 1,
            row.ledger_hash,
            f"custody entry {row.ledger_seq} ({here})",
        )
    last = LedgerHead(expected - 1, prev, count)
    if not sa_inspect(session.connection()).has_table(_HEAD.name, schema=_HEAD.schema):
        problems.append(f"ledger: the recorded head's table ({_HEAD.name}) is missing")
        return LedgerCheck(last, problems, hashes_at)
    head = recorded_head(session)
    if head.entries < 0:
        problems.append("ledger: the recorded head row is missing")
    elif head.seq > last.seq:
        missing = (
            f"custody entry {head.seq} missing"
            if head.seq == last.seq + 1
            else f"custody entries {last.seq + 1}..{head.seq} missing"
        )
        problems.append(
            f"ledger: {missing} (the recorded head is entry {head.seq}, the last entry is {last.seq})"
        )
    elif (head.seq, head.hash) != (last.seq, last.hash):
        which = (
            f"custody entry {last.seq} as the last checkpoint recorded it"
            if since is not None and count == since.entries
            else f"the last entry {last.seq}"
        )
        problems.append(f"ledger: the recorded head (entry {head.seq}) does not match {which}")
    return LedgerCheck(last, problems, hashes_at)
