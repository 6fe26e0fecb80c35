"""device references restored: 0007 copied the devices table, and on SQLite with foreign keys on
dropping the old copy set every case's, sighting's and upload's device_id to NULL (migrations run with
foreign keys off since, env.py); `evidence verify` then reported those cases as altered. Each is set
back where a record names its device:

- a sighting: the custody entry that recorded it. The SHA-256 of its facts, where the entry holds one,
  decides: the device id that makes the digest match (none matching NULL: it had no device). An entry
  without a digest (written before 0006) names who posted it: device:NAME, or a worker running an
  upload, whose device is the upload's;
- a case: its first custody entry's facts (cases created since December 2026), else the device of the
  sighting that created it (both were the poster's);
- an upload: who uploaded it (device:NAME).

Device names are unique and never change (a revoked device keeps its row). Nothing is guessed: a NULL
no record decides stays NULL, counted and named in the log. PostgreSQL lost nothing (its ALTER TABLE
copies no table), so only SQLite is read.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("api.storage.migrations")

UNSAID: Literal["unsaid"] = "unsaid"  # no record decides which device (if any)
Said = int | None | Literal["unsaid"]
_CASES_AT_ONCE = 500
_NAMED_AT_MOST = 10
# frozen copy of api.cases.custody.SIGHTING_FACTS (migrations import nothing of the service)
_SIGHTING_FACTS = (
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

_devices = sa.table("devices", sa.column("id", sa.Integer()), sa.column("name", sa.String()))
_cases = sa.table(
    "cases",
    sa.column("id", sa.Integer()),
    sa.column("number", sa.String()),
    sa.column("device_id", sa.Integer()),
)
_sightings = sa.table(
    "sightings",
    sa.column("id", sa.Integer()),
    sa.column("case_id", sa.Integer()),
    sa.column("incident_id", sa.String()),
    sa.column("seen_at", sa.String()),  # read as text, then as a time (an edited one stays undecided)
    sa.column("lat", sa.Float()),
    sa.column("lon", sa.Float()),
    sa.column("plate", sa.String()),
    sa.column("camera_id", sa.String()),
    sa.column("device_id", sa.Integer()),
    sa.column("job_id", sa.Integer()),
    sa.column("incident_json", sa.Text()),
    sa.column("recurrence", sa.Boolean()),
)
_entries = sa.table(
    "custody_entries",
    sa.column("case_id", sa.Integer()),
    sa.column("seq", sa.Integer()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("detail", sa.Text()),
)
_uploads = sa.table(
    "uploads",
    sa.column("id", sa.Integer()),
    sa.column("uploaded_by", sa.String()),
    sa.column("device_id", sa.Integer()),
)
_jobs = sa.table("jobs", sa.column("id", sa.Integer()), sa.column("upload_id", sa.Integer()))


def _sighting_digest(row: Mapping[str, Any]) -> str:
    """Frozen copy of api.cases.custody.sighting_digest."""
    body = json.dumps(
        {k: row[k] for k in _SIGHTING_FACTS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class Tally:
    """What was set back, and the rows left NULL that no record decides (named, up to a few). (No
    dataclass: alembic loads this module without registering it, which dataclasses need.)"""

    def __init__(self) -> None:
        self.restored = {"case": 0, "sighting": 0, "upload": 0}
        self.unsaid: dict[str, list[str]] = {"case": [], "sighting": [], "upload": []}


class _Records(NamedTuple):
    devices: dict[str, int]  # name -> id
    upload_of_job: dict[int, int]
    uploaded_by: dict[int, str]


def _named(label: str, devices: dict[str, int]) -> Said:
    """The device an actor or uploader label (kind:name) names; None when it is no device."""
    kind, _, name = label.partition(":")
    if kind != "device":
        return None
    return devices.get(name, UNSAID)


def _poster(actor: str, job_id: int | None, records: _Records) -> Said:
    """The device of whoever posted a sighting, as its custody entry's actor says."""
    if actor.partition(":")[0] != "worker":
        return _named(actor, records.devices)
    upload_id = records.upload_of_job.get(job_id) if job_id is not None else None
    if upload_id is None or upload_id not in records.uploaded_by:
        return UNSAID
    return _named(records.uploaded_by[upload_id], records.devices)


def _detail(text: str) -> dict[str, Any]:
    try:
        detail = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return detail if isinstance(detail, dict) else {}


def _sighting_device(
    row: dict[str, Any], entry: Any, detail: dict[str, Any], records: _Records, read_time: Any
) -> Said:
    """Which device a sighting whose device_id is NULL had, as its custody entry says."""
    poster = _poster(entry.actor, row["job_id"], records)
    record = detail.get("sighting")
    digest = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(digest, str):
        return poster  # an entry from before 0006: who posted it is the record
    try:
        facts = dict(row, seen_at=read_time(row["seen_at"]))
    except ValueError:
        return UNSAID
    candidates = [None, poster, *sorted(set(records.devices.values()))]
    for device_id in candidates:
        if device_id != UNSAID and _sighting_digest(dict(facts, device_id=device_id)) == digest:
            return device_id
    return UNSAID  # altered otherwise: no device id makes it what its entry recorded


def restore_device_references(conn: Connection) -> Tally:
    """Set each NULL device_id back where a record names the device (see the module's docstring)."""
    tally = Tally()
    records = _Records(
        devices={name: int(i) for name, i in conn.execute(sa.select(_devices.c.name, _devices.c.id))},
        upload_of_job={int(j): int(u) for j, u in conn.execute(sa.select(_jobs.c.id, _jobs.c.upload_id))},
        uploaded_by={
            int(u): str(by) for u, by in conn.execute(sa.select(_uploads.c.id, _uploads.c.uploaded_by))
        },
    )
    known = set(records.devices.values())
    read_time = sa.DateTime().dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    assert read_time is not None  # SQLite keeps times as text

    # each query read whole before its rows are updated (SQLite's cursor reads on as the table changes)
    for upload_id in (
        conn.execute(sa.select(_uploads.c.id).where(_uploads.c.device_id.is_(None))).scalars().all()
    ):
        said = _named(records.uploaded_by[upload_id], records.devices)
        if said == UNSAID:
            tally.unsaid["upload"].append(str(upload_id))
        elif said is not None:
            conn.execute(_uploads.update().where(_uploads.c.id == upload_id).values(device_id=said))
            tally.restored["upload"] += 1

    affected = sa.union(
        sa.select(_cases.c.id).where(_cases.c.device_id.is_(None)),
        sa.select(_sightings.c.case_id).where(_sightings.c.device_id.is_(None)),
    ).subquery()
    case_ids = sorted(int(i) for i in conn.execute(sa.select(affected.c[0])).scalars())
    for start in range(0, len(case_ids), _CASES_AT_ONCE):
        _restore_cases(conn, case_ids[start : start + _CASES_AT_ONCE], records, known, read_time, tally)
    return tally


def _restore_cases(
    conn: Connection,
    case_ids: list[int],
    records: _Records,
    known: set[int],
    read_time: Any,
    tally: Tally,
) -> None:
    """The NULL device ids of these cases and their sightings set back where a record names them."""
    entry_of: dict[str, tuple[Any, dict[str, Any]]] = {}  # incident id -> (entry, detail)
    first: dict[int, dict[str, Any]] = {}  # case id -> its case_created entry's detail
    for entry in conn.execute(
        sa.select(_entries)
        .where(_entries.c.case_id.in_(case_ids), _entries.c.action.in_(("case_created", "sighting_added")))
        .order_by(_entries.c.case_id, _entries.c.seq)
    ):
        detail = _detail(entry.detail)
        incident_id = detail.get("incident_id")
        if isinstance(incident_id, str):
            entry_of.setdefault(incident_id, (entry, detail))
        if entry.action == "case_created":
            first.setdefault(entry.case_id, detail)

    device_of: dict[str, Said] = {}  # incident id -> its sighting's device
    for row in conn.execute(sa.select(_sightings).where(_sightings.c.case_id.in_(case_ids))).all():
        values = dict(row._mapping)
        sighting_id = values.pop("id")
        del values["case_id"]
        if values["device_id"] is not None:
            device_of[row.incident_id] = values["device_id"]
            continue
        found = entry_of.get(row.incident_id)
        said = UNSAID if found is None else _sighting_device(values, *found, records, read_time)
        device_of[row.incident_id] = said
        if said == UNSAID or (said is not None and said not in known):
            tally.unsaid["sighting"].append(str(sighting_id))
        elif said is not None:
            conn.execute(_sightings.update().where(_sightings.c.id == sighting_id).values(device_id=said))
            tally.restored["sighting"] += 1

    for case in conn.execute(
        sa.select(_cases.c.id, _cases.c.number).where(_cases.c.id.in_(case_ids), _cases.c.device_id.is_(None))
    ).all():
        created = first.get(case.id)
        facts = created.get("case") if created is not None else None
        device: Said = UNSAID
        if isinstance(facts, dict) and "device_id" in facts:
            device = facts["device_id"]  # the case as created, in its first entry
        elif created is not None:  # an older first entry: the creating sighting's poster was the case's
            device = device_of.get(str(created.get("incident_id")), UNSAID)
        if device is None:
            continue  # it had none
        if not isinstance(device, int) or device not in known:
            tally.unsaid["case"].append(str(case.number or case.id))
        else:
            conn.execute(_cases.update().where(_cases.c.id == case.id).values(device_id=device))
            tally.restored["case"] += 1


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    tally = restore_device_references(conn)
    restored, unsaid = tally.restored, tally.unsaid
    if not any(restored.values()) and not any(unsaid.values()):
        return  # nothing was lost (a new database, PostgreSQL's, or one upgraded since the fix)
    log.info(
        "device references restored from the records that name them (0007 had set them to NULL): "
        "%d case(s), %d sighting(s), %d upload(s); %d could not be",
        restored["case"],
        restored["sighting"],
        restored["upload"],
        sum(len(ids) for ids in unsaid.values()),
    )
    if any(unsaid.values()):
        named = "; ".join(
            f"{kind}s {', '.join(ids[:_NAMED_AT_MOST])}{' ...' if len(ids) > _NAMED_AT_MOST else ''}"
            for kind, ids in unsaid.items()
            if ids
        )
        log.warning(
            "device references not restored (left NULL: no record says which device, if any): "
            "%d case(s), %d sighting(s), %d upload(s) (%s)",
            len(unsaid["case"]),
            len(unsaid["sighting"]),
            len(unsaid["upload"]),
            named,
        )


def downgrade() -> None:
    pass  # the restored references are what the records say: nothing to take back
