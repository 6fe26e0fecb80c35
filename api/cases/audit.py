"""Every stored fact a case rests on, checked against its custody chain (`gridpatrol evidence verify`).

The chain is the record; the other tables are what it says, and must agree with it:

- the case row: status, category, team, grid cell, number, camera, device, position, reject reason,
  recurrence and sightings counts equal the replay of its entries (the first entry holds the new
  case's state; transitions, undos, recategorisations and recurrences change it; a sighting seen
  before its case was closed changes no status but has its history event); the plate is the
  first one its sightings read and last_seen the latest sighting, both from the checked sightings;
- sightings: each was recorded by an entry with the SHA-256 of its facts (custody.sighting_digest);
  one missing, altered or not recorded is named;
- evidence links: each sighting's (role, blob) pairs and the after-photos of transitions are in the
  entries; a link deleted, repointed to another blob or added is named;
- blobs: every blob an entry names has its row (the file itself is checked by the CLI);
- history (case_events): exactly the events the entries imply, in order; a forged or deleted event is
  named;
- unsealings (an admin's fetch of a sealed original, api.cases.reading.unseal_original): each names a
  sealed file its case's chain recorded; they change no fact and imply no history event.
- box corrections (an operator's boxes on a sighting's raw frame, api.cases.review_labels): each names
  the raw frame of a sighting its case's chain recorded; they change no fact and imply no history event.

Entries written before migration 0006 lack the new case's state and the sighting digests: for those
cases the category, team, grid cell and number and the sighting contents are not checked (the status,
the sightings, the evidence links and the history are); the plate, camera, device and position are
checked for cases created since they were added to the first entry (December 2026).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Dialect, Table, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from api.cases import custody, workflow
from api.cases.reading import SEALED_ROLES, UNSEALED
from api.cases.review_labels import BOXES_LABELLED, RAW
from api.storage.db import lenient_columns, read_times, table_of
from api.storage.models import Case, CaseEvent, CustodyEntry, EvidenceBlob, EvidenceLink, Sighting

CASE_BATCH = 1000  # cases read and checked together (memory stays flat at any size)
_REPLAYED = (
    "status",
    "category",
    "team",
    "grid_cell_id",
    "number",
    "reject_reason",
    "recurrence_count",
    "camera_id",
    "device_id",
    "lat",
    "lon",
)
_EventKey = tuple[str, str, str | None, str | None, str | None]  # actor, action, from, to, reason


@dataclass(slots=True)
class Audit:
    cases: int = 0
    entries: int = 0
    head: custody.LedgerHead = field(default_factory=lambda: custody.LedgerHead(0, custody.GENESIS, 0))
    problems: list[str] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)  # every blob SHA-256 the chain names
    ledger_hashes: dict[int, str] = field(default_factory=dict)
    complete: bool = True  # False: a table it reads is missing, and nothing was checked


# the tables the audit reads (the ledger head's is checked by verify_ledger)
_TABLES = (Case, CustodyEntry, Sighting, EvidenceLink, CaseEvent, EvidenceBlob)


@dataclass(slots=True)
class _Expected:
    """What a case's entries say."""

    state: dict[str, Any] = field(default_factory=dict)  # the facts known from the chain
    sightings: dict[str, dict[str, Any]] = field(default_factory=dict)  # incident id -> its record
    after_photos: list[tuple[str, str]] = field(default_factory=list)  # (role, sha256)
    events: list[_EventKey] = field(default_factory=list)
    unsealed: list[tuple[int, str]] = field(default_factory=list)  # (entry seq, sha256) of each fetch
    labelled: list[tuple[int, str]] = field(default_factory=list)  # (entry seq, raw frame) of box corrections


class _BadDetail(Exception):
    """A custody entry's detail that is not what its action records (an edit of the database)."""


def _detail(entry: CustodyEntry) -> dict[str, Any]:
    try:
        detail = json.loads(entry.detail)
    except (TypeError, ValueError):
        raise _BadDetail("its detail is not JSON") from None
    if not isinstance(detail, dict):
        raise _BadDetail("its detail is not a JSON object")
    return detail


def _text(detail: dict[str, Any], key: str, default: str | None = None) -> str:
    """detail[key], which must be a text (`default` when absent, if one is given)."""
    value = detail.get(key, default)
    if not isinstance(value, str):
        raise _BadDetail(f"its {key} is {'missing' if value is None else 'not a text'}")
    return value


def _optional_text(detail: dict[str, Any], key: str) -> str | None:
    return None if detail.get(key) is None else _text(detail, key)


def _object(detail: dict[str, Any], key: str) -> dict[str, Any]:
    """detail[key], a JSON object ({} when absent or null)."""
    value = detail.get(key) or {}
    if not isinstance(value, dict):
        raise _BadDetail(f"its {key} is not a JSON object")
    return value


def _evidence(detail: dict[str, Any]) -> list[tuple[str, str]]:
    items = detail.get("evidence") or []
    if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
        raise _BadDetail("its evidence is not a list of JSON objects")
    return [(_text(e, "role"), _text(e, "sha256")) for e in items]


def _replay(entries: Sequence[CustodyEntry], name: str, problems: list[str]) -> _Expected:
    """What the entries say. An entry whose detail cannot be read (not JSON, or not what its action
    records: an edit of the database) is named in `problems` and left out."""
    out = _Expected()
    for entry in entries:
        try:
            _replay_entry(out, entry, _detail(entry))
        except _BadDetail as exc:
            problems.append(f"{name} custody entry {entry.seq} ({entry.action}): {exc}")
    return out


def _replay_entry(out: _Expected, entry: CustodyEntry, detail: dict[str, Any]) -> None:
    state = out.state
    action = entry.action
    if action in ("case_created", "sighting_added"):
        incident_id = _text(detail, "incident_id")
        sighting = {**_object(detail, "sighting"), "evidence": _evidence(detail)}
        if action == "case_created":
            state.update(_object(detail, "case") or {"status": workflow.PENDING_REVIEW})
            state["reject_reason"] = None
            state["recurrence_count"] = 0
            out.events.append((entry.actor, "created", None, workflow.PENDING_REVIEW, None))
        elif detail.get("recurrence"):
            state["status"] = workflow.PENDING_REVIEW
            state["recurrence_count"] = state.get("recurrence_count", 0) + 1
            out.events.append(
                (entry.actor, "reopened", workflow.CLOSED, workflow.PENDING_REVIEW, "recurrence")
            )
        elif detail.get("before_close"):  # seen by the time the case was closed: it stayed closed
            out.events.append((entry.actor, "seen_before_close", None, None, None))
        out.sightings[incident_id] = sighting
    elif action == "transition":
        before, after, reason = _text(detail, "from"), _text(detail, "to"), _optional_text(detail, "reason")
        after_photo = _optional_text(detail, "after_photo")
        state["status"] = after
        if "team" in detail:
            state["team"] = detail["team"]
        if after == workflow.REJECTED:
            state["reject_reason"] = reason
        if after_photo:
            out.after_photos.append(("after_photo", after_photo))
        out.events.append((entry.actor, after, before, after, reason))
    elif action == "undo":
        before, after = _text(detail, "from"), _text(detail, "to")
        state["status"] = after
        state["reject_reason"] = None
        out.events.append((entry.actor, "undo", before, after, None))
    elif action == "recategorized":
        state["category"] = _text(detail, "to")
        status = state.get("status")
        out.events.append((entry.actor, "recategorized", status, status, None))
    elif action == UNSEALED:
        out.unsealed.append((entry.seq, _text(detail, "sha256", "")))
    elif action == BOXES_LABELLED:
        out.labelled.append((entry.seq, _text(detail, "frame", "")))


def _short(sha: str) -> str:
    return sha[:12]


def _check_links(
    name: str,
    where: str,
    expected: list[tuple[str, str]],
    stored: list[_Record],
    problems: list[str],
) -> None:
    """Compare (role, sha256) pairs the chain holds with the link rows of one sighting / the case."""
    left = list(stored)
    unmatched: list[tuple[str, str]] = []
    for role, sha in expected:
        same = next((link for link in left if link.role == role and link.sha256 == sha), None)
        if same is not None:
            left.remove(same)
        else:
            unmatched.append((role, sha))
    for role, sha in unmatched:
        other = next((link for link in left if link.role == role), None)
        if other is not None:
            left.remove(other)
            problems.append(
                f"{name} evidence link {other.id} ({role} of {where}) points to another blob: "
                f"{other.sha256} instead of {sha}"
            )
        else:
            problems.append(f"{name} evidence link ({role} of {where}, blob {sha}) deleted")
    for link in left:
        problems.append(
            f"{name} evidence link {link.id} ({link.role} of {where}, blob {link.sha256}) "
            "is not in its custody chain"
        )


def _check_sighting_facts(
    name: str,
    case: _Record,
    expected: _Expected,
    by_incident: dict[str, _Record],
    problems: list[str],
) -> None:
    """The case's plate (the first one read, in the chain's order) and last_seen (the latest
    sighting) as its sightings say; the sightings themselves are checked against their digests."""
    rows = [by_incident[i] for i in expected.sightings if i in by_incident]
    if "plate" in expected.state and len(rows) == len(expected.sightings):
        plate = expected.state["plate"] or next((r.plate for r in rows if r.plate), None)
        if case.plate != plate:
            problems.append(f"{name} plate is {case.plate} but its sightings say {plate}")
    if rows and len(rows) == len(expected.sightings) and not any(r.garbled for r in rows):
        latest = max(r.seen_at for r in rows)
        if case.last_seen != latest:
            problems.append(f"{name} last_seen is {case.last_seen} but its latest sighting is {latest}")


def _check_case(
    case_id: int,
    case: _Record | None,
    entries: list[CustodyEntry],
    sightings: list[_Record],
    links: list[_Record],
    events: list[_Record],
    audit: Audit,
) -> None:
    name = f"case {case.number if case is not None and case.number else case_id}"
    problems = audit.problems
    records = [("", case)] if case is not None else []
    records += [(f" sighting {r.id}", r) for r in sightings] + [(f" history event {e.id}", e) for e in events]
    for what, stored in records:
        problems += [
            f"{name}{what} {column} reads {stored[column]!r:.60}, which is no time "
            "(the database was edited outside the service)"
            for column in stored.garbled
        ]
    for p in custody.verify_chain(entries, case_id):
        problems.append(f"{name} custody entry {p.seq}: {p.reason}")
    if case is None:
        problems.append(f"{name} deleted (its custody entries remain)")
        return
    if not entries:
        problems.append(f"{name} has no custody chain (its entries were deleted)")
        return
    expected = _replay(entries, name, problems)
    for fact in _REPLAYED:
        if fact in expected.state and getattr(case, fact) != expected.state[fact]:
            problems.append(
                f"{name} {fact} is {getattr(case, fact)} but its custody chain says {expected.state[fact]}"
            )
    if case.sightings_count != len(expected.sightings):
        problems.append(
            f"{name} sightings_count is {case.sightings_count} but its custody chain records "
            f"{len(expected.sightings)} sighting(s)"
        )

    by_incident = {s.incident_id: s for s in sightings}
    _check_sighting_facts(name, case, expected, by_incident, problems)
    links_of: dict[int | None, list[_Record]] = {}
    for link in links:
        links_of.setdefault(link.sighting_id, []).append(link)
    for incident_id, record in expected.sightings.items():
        for _, sha in record["evidence"]:
            audit.blobs.add(sha)
        row = by_incident.pop(incident_id, None)
        label = f"sighting {record['id']}" if "id" in record else "sighting"
        if row is None:
            problems.append(f"{name} {label} deleted (incident {incident_id})")
            continue
        if "id" in record and (
            row.id != record["id"] or custody.sighting_digest(row._mapping) != record.get("sha256")
        ):
            problems.append(f"{name} sighting {row.id} altered (incident {incident_id})")
        _check_links(name, f"sighting {row.id}", record["evidence"], links_of.pop(row.id, []), problems)
    for row in by_incident.values():
        problems.append(f"{name} sighting {row.id} is not in its custody chain (incident {row.incident_id})")
        links_of.pop(row.id, None)
    sealed = {sha for r in expected.sightings.values() for role, sha in r["evidence"] if role in SEALED_ROLES}
    for seq, sha in expected.unsealed:
        if sha not in sealed:
            problems.append(
                f"{name} custody entry {seq} unseals blob {sha}, which is no sealed evidence of the case"
            )
    raw = {sha for r in expected.sightings.values() for role, sha in r["evidence"] if role == RAW}
    for seq, sha in expected.labelled:
        if sha not in raw:
            problems.append(
                f"{name} custody entry {seq} labels boxes on blob {sha}, which is no raw frame of the case"
            )
    for _, sha in expected.after_photos:
        audit.blobs.add(sha)
    _check_links(name, "the case", expected.after_photos, links_of.pop(None, []), problems)
    for stray in links_of.values():  # links to a sighting of another case
        _check_links(name, "the case", [], stray, problems)

    stored_events: list[_EventKey] = [
        (e.actor, e.action, e.from_status, e.to_status, e.reason) for e in events
    ]
    if stored_events != expected.events:
        extra = Counter(stored_events) - Counter(expected.events)
        missing = Counter(expected.events) - Counter(stored_events)
        for e in events:
            key: _EventKey = (e.actor, e.action, e.from_status, e.to_status, e.reason)
            if extra[key] > 0:
                extra[key] -= 1
                problems.append(
                    f"{name} history event {e.id} ({e.action}: {e.from_status} -> {e.to_status} "
                    f"by {e.actor}) is not in its custody chain"
                )
        for (actor, action, before, after, _), n in missing.items():
            problems += [f"{name} history event ({action}: {before} -> {after} by {actor}) deleted"] * n
        if not extra and not missing:
            problems.append(f"{name} history events are out of the order of its custody chain")


def _batches(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CASE_BATCH):
        yield ids[start : start + CASE_BATCH]


class _Record(dict[str, Any]):
    """A row read with lenient_columns, its times read here: `garbled` names the time columns that
    read as none (they keep their stored text). Fields read as attributes, as a Row's are."""

    def __init__(self, values: Any, table: Table, dialect: Dialect) -> None:
        super().__init__(values)
        self.garbled = read_times(self, table, dialect)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return self


def _grouped(session: Session, table: Table, lo: int, hi: int, column: Any) -> dict[int, list[_Record]]:
    """The rows of `table` whose `column` (a case id) is lo..hi, in id order, by case; a damaged
    time is kept in its record's `garbled` for _check_case to name, not raised."""
    stmt = select(*lenient_columns(table)).where(column.between(lo, hi)).order_by(table.c.id)
    dialect = session.get_bind().dialect
    groups: dict[int, list[_Record]] = {}
    for row in session.execute(stmt):
        record = _Record(row._mapping, table, dialect)
        groups.setdefault(record[column.name], []).append(record)
    return groups


def _entries(session: Session, lo: int, hi: int) -> dict[int, list[CustodyEntry]]:
    """The custody entries of cases lo..hi, by case, in seq order (custody.read_entries)."""
    entries: dict[int, list[CustodyEntry]] = {}
    for entry in custody.read_entries(session, table_of(CustodyEntry).c.case_id.between(lo, hi)):
        entries.setdefault(entry.case_id, []).append(entry)
    return entries


def audit(session: Session, *, at_seqs: tuple[int, ...] = ()) -> Audit:
    """Check the ledger, every case's chain and every fact its entries vouch for; `at_seqs`: ledger
    seqs whose hashes to report (a checkpoint's)."""
    custody.snapshot(session)
    result = Audit()
    present = sa_inspect(session.connection())
    missing = [table_of(m).name for m in _TABLES if not present.has_table(table_of(m).name)]
    if missing:
        result.complete = False
        result.problems += [
            f"table {name} is missing (dropped outside the service): nothing was checked" for name in missing
        ]
        return result
    numbers = {row.id: row.number for row in session.execute(select(Case.id, Case.number))}
    ledger = custody.verify_ledger(session, cases=numbers, at_seqs=at_seqs)
    result.head, result.entries, result.ledger_hashes = ledger.head, ledger.head.entries, ledger.hashes_at
    result.problems += ledger.problems

    chained = set(session.scalars(select(CustodyEntry.case_id).distinct()))
    ids = sorted(set(numbers) | chained)
    result.cases = len(ids)
    cases_t, sightings_t = table_of(Case), table_of(Sighting)
    links_t, events_t = table_of(EvidenceLink), table_of(CaseEvent)
    for batch in _batches(ids):
        lo, hi = batch[0], batch[-1]
        case_rows = _grouped(session, cases_t, lo, hi, cases_t.c.id)
        entries = _entries(session, lo, hi)
        sightings = _grouped(session, sightings_t, lo, hi, sightings_t.c.case_id)
        links = _grouped(session, links_t, lo, hi, links_t.c.case_id)
        events = _grouped(session, events_t, lo, hi, events_t.c.case_id)
        for case_id in batch:
            rows = case_rows.get(case_id)
            _check_case(
                case_id,
                rows[0] if rows else None,
                entries.get(case_id, []),
                sightings.get(case_id, []),
                links.get(case_id, []),
                events.get(case_id, []),
                result,
            )
        session.expunge_all()

    stored_blobs = set(session.scalars(select(EvidenceBlob.sha256)))
    for sha in sorted(result.blobs - stored_blobs):
        result.problems.append(f"blob {sha} missing from the evidence table (its custody entries name it)")
    return result
