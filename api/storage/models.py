"""The service's tables (SQLAlchemy 2 ORM). The schema itself is made by Alembic migrations.

Times are naive UTC. Positions are WGS84 degrees (lat, lon).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api.storage.db import StoredTime, utcnow

MAX_ID = 2**31 - 1  # the largest id an id column holds (INTEGER on PostgreSQL)
CATEGORY_MAX = 64  # characters of a case's category (built-in or a site rule's)
TEAM_MAX = 64  # characters of a team's name (grid cells, users, cases)
UNASSIGNED = "unassigned"  # the grid cell id of a position outside every cell (or no position)


class Base(DeclarativeBase):
    pass


class GridCell(Base):
    __tablename__ = "grid_cells"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(200))
    community: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(TEAM_MAX), index=True)
    geometry: Mapped[str] = mapped_column(Text)  # GeoJSON geometry, WGS84 lon/lat
    imported_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # admin | operator | enforcement | viewer
    team: Mapped[str | None] = mapped_column(String(TEAM_MAX))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(StoredTime)


class LoginFailure(Base):
    """Failed logins per submitted username (known or not) in the current throttle window."""

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(StoredTime, index=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(StoredTime)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the device key
    camera_id: Mapped[str | None] = mapped_column(String(64))
    # a runner analyses the registry's cameras: it reads their stream URLs, reports their state and
    # posts incidents for any registered camera (api.cameras); a plain device posts its own footage
    runner: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False once revoked
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(StoredTime)
    last_used_at: Mapped[datetime | None] = mapped_column(StoredTime)  # to the minute, see auth.py


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX))
    status: Mapped[str] = mapped_column(String(16))
    grid_cell_id: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(TEAM_MAX))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # the reach point new sightings are measured from (api.cases.merge): the first sighting's
    # position, or the latest one's for categories that follow it; merge_bucket: its grid key
    merge_lat: Mapped[float | None] = mapped_column(Float)
    merge_lon: Mapped[float | None] = mapped_column(Float)
    merge_bucket: Mapped[int | None] = mapped_column(BigInteger)
    plate: Mapped[str | None] = mapped_column(String(32))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    first_seen: Mapped[datetime] = mapped_column(StoredTime)
    last_seen: Mapped[datetime] = mapped_column(StoredTime)
    sightings_count: Mapped[int] = mapped_column(Integer, default=0)
    recurrence_count: Mapped[int] = mapped_column(Integer, default=0)
    reject_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)

    sightings: Mapped[list[Sighting]] = relationship(back_populates="case", order_by="Sighting.id")
    events: Mapped[list[CaseEvent]] = relationship(order_by="CaseEvent.id")

    __table_args__ = (
        # (category, last_seen, first_seen): merge candidates; category + date range counted from the index
        Index("ix_cases_category_seen", "category", "last_seen", "first_seen"),
        # merge candidates with a position: the incident's category, the buckets around it, the window
        Index("ix_cases_merge_bucket", "category", "merge_bucket", "last_seen"),
        Index("ix_cases_category_status_last_seen", "category", "status", "last_seen"),
        Index("ix_cases_status_last_seen", "status", "last_seen"),
        Index("ix_cases_seen", "last_seen", "first_seen"),
        Index("ix_cases_first_seen", "first_seen"),
        Index("ix_cases_cell_status", "grid_cell_id", "status"),
        Index("ix_cases_team_last_seen", "team", "last_seen"),
        Index("ix_cases_camera_last_seen", "camera_id", "last_seen"),
        Index("ix_cases_device", "device_id"),
        Index("ix_cases_plate", "plate"),
    )


class Sighting(Base):
    """One incident as received; a case has one or more."""

    __tablename__ = "sightings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str] = mapped_column(String(128), unique=True)
    seen_at: Mapped[datetime] = mapped_column(StoredTime)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    plate: Mapped[str | None] = mapped_column(String(32))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    incident_json: Mapped[str] = mapped_column(Text)
    recurrence: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="sightings")
    evidence: Mapped[list[EvidenceLink]] = relationship(order_by="EvidenceLink.id")


class EvidenceBlob(Base):
    """A file in the content-addressed store (data_dir/evidence/ab/cd/<sha256>)."""

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)


class EvidenceLink(Base):
    __tablename__ = "evidence_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sighting_id: Mapped[int | None] = mapped_column(
        ForeignKey("sightings.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(ForeignKey("evidence.sha256"), index=True)
    role: Mapped[str] = mapped_column(String(32))  # annotated | crop | raw | after_photo


class CaseEvent(Base):
    """The case's history: who did what, when and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class CustodyEntry(Base):
    """Append-only custody log of a case; entry_hash = sha256(prev_hash + canonical entry)."""

    __tablename__ = "custody_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(StoredTime)
    actor: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    # the one ledger over every case (api.cases.custody): its position, the ledger hash before it and its own
    ledger_seq: Mapped[int] = mapped_column(BigInteger)
    ledger_prev: Mapped[str] = mapped_column(String(64))
    ledger_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("case_id", "seq", name="uq_custody_case_seq"),
        UniqueConstraint("ledger_seq", name="uq_custody_ledger_seq"),
    )


class CustodyLedgerHead(Base):
    """The last ledger entry (one row, id 1): appends advance it under its row lock, and a deleted
    trailing entry shows as a head beyond the last entry."""

    __tablename__ = "custody_ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime | None] = mapped_column(StoredTime)


class ReviewClaim(Base):
    """A pending case held by one operator in the review queue until expires_at (api.cases.review)."""

    __tablename__ = "review_claims"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(96), index=True)
    claimed_at: Mapped[datetime] = mapped_column(StoredTime)
    expires_at: Mapped[datetime] = mapped_column(StoredTime)


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(64))
    # the footage's file name as sent, fit to show (display_filename, as track_filename)
    filename: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(500))
    track_path: Mapped[str | None] = mapped_column(String(500))
    track_sha256: Mapped[str | None] = mapped_column(String(64))
    # the track's file name as sent, fit to show (api.jobs.uploads.display_filename): a job's messages
    # about the track name it; None for a track sent without one, or before 0019
    track_filename: Mapped[str | None] = mapped_column(String(255))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    start_time: Mapped[datetime | None] = mapped_column(StoredTime)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    uploaded_by: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    # how many resends corrected what its job runs with (start time, camera, GPS track): a revision
    # over 0 gets incident ids of its own (api.jobs.queue.upload_id_salt), 0 the ids it always had
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UploadSession(Base):
    """Footage being sent in chunks (api.jobs.resumable): what its sender declared, and how many of its
    bytes the file `<uploads>/.resumable-<id>` holds. Finishing it files an Upload; a session without a
    chunk for `upload_session_expiry_h` has expired and is removed with its bytes."""

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex: a capability, not a count
    owner: Mapped[str] = mapped_column(String(96), index=True)  # the sender's Principal.label
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # the offset the next chunk starts at
    filename: Mapped[str | None] = mapped_column(String(255))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    start_time: Mapped[str | None] = mapped_column(String(64))  # as sent; read when it is finished
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    touched_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow, index=True)  # the last chunk


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    # a done job's caveat, e.g. a GPS track that placed few of the footage's frames (api.jobs.track_fit)
    warning: Mapped[str | None] = mapped_column(Text)
    # the share of analysed frames the upload's GPS track placed (0..1); None without a track
    track_covered: Mapped[float | None] = mapped_column(Float)
    # a done job whose GPS track passed no grid cell while the grid had some (api.jobs.coverage): its
    # footage may be sent again with the right track (api.jobs.uploads)
    track_off_grid: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    incidents: Mapped[int] = mapped_column(Integer, default=0)
    # the upload's revision it was queued for: a job of a lower revision than its upload's is an earlier
    # run that a correction superseded; a plain retry keeps the revision (api.jobs.uploads)
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(96))
    lease_expires_at: Mapped[datetime | None] = mapped_column(StoredTime)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(StoredTime)
    finished_at: Mapped[datetime | None] = mapped_column(StoredTime)

    __table_args__ = (Index("ix_jobs_status_lease", "status", "lease_expires_at"),)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[str] = mapped_column(String(200))  # comma-separated: filed,dispatched,closed
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)

    # one active webhook a URL (each event is sent to a URL once): api.cases.webhooks checks it first,
    # to name the webhook that has it; this index holds when two requests race past that check
    __table_args__ = (
        Index(
            "ux_webhooks_active_url",
            "url",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)  # when its event was queued
    delivered_at: Mapped[datetime | None] = mapped_column(StoredTime)
    # when its last attempt ended (success or failure); None: never tried, or tried before 0020 and
    # not delivered (the time was not recorded then)
    last_attempt_at: Mapped[datetime | None] = mapped_column(StoredTime)

    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)


class Camera(Base):
    """A live camera the service knows (api.cameras): where it is, its zones, and its live state as
    the runner analysing it last reported. stream_url carries credentials: never in a response or a
    log line, except to runners."""

    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    stream_url: Mapped[str] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    grid_cell_id: Mapped[str | None] = mapped_column(String(64))  # a fixed cell, else by position
    team: Mapped[str | None] = mapped_column(String(TEAM_MAX))  # else the cell's team
    timezone: Mapped[str] = mapped_column(String(64))
    zones: Mapped[str] = mapped_column(Text)  # JSON list of detect.config.Zone
    active_hours: Mapped[str | None] = mapped_column(Text)  # JSON list of "HH:MM-HH:MM"; null: always
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)
    # live state, as reported by its runner
    runner: Mapped[str | None] = mapped_column(String(64))
    fps: Mapped[float | None] = mapped_column(Float)
    last_frame_at: Mapped[datetime | None] = mapped_column(StoredTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime | None] = mapped_column(StoredTime)
    runner_state: Mapped[str | None] = mapped_column(Text)  # JSON: the runner's spool and delivery figures
    clock_offset_s: Mapped[float | None] = mapped_column(Float)  # runner minus here, s; None: unknown
    online: Mapped[bool | None] = mapped_column(Boolean)  # None until first reported or found offline
    online_since: Mapped[datetime | None] = mapped_column(StoredTime)  # when online last changed


class UploadCoverage(Base):
    """One pass of a patrol through a grid cell, from an upload's GPS track (api.jobs.coverage): when
    the vehicle entered and left the cell and how far it drove in it. Written when the upload's job
    is done (again, the same rows, when a job is retried)."""

    __tablename__ = "upload_coverage"
    # a cell's passes in time order: GET /api/coverage numbers each cell's latest passes by it
    __table_args__ = (Index("ix_upload_coverage_cell_entered", "cell_id", "entered_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    cell_id: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(TEAM_MAX))
    entered_at: Mapped[datetime] = mapped_column(StoredTime, index=True)  # UTC
    left_at: Mapped[datetime] = mapped_column(StoredTime)
    metres: Mapped[float] = mapped_column(Float)


class ChalkMark(Base):
    """A suspected sighting (api.cases.chalking): one pass of a patrol's camera past a vehicle parked
    where it may not park. It opens no case; a later pass that finds a vehicle at the same place (and
    with the same plate when both passes read one) confirms both as an illegal_parking incident, which
    is ingested like any other. status: open, or confirmed (case_id: the case the latest confirmation
    it took part in was filed in); an open mark older than the chalking window shows as expired, one
    of a superseded run (api.cases.chalking.superseded_runs) as superseded.
    bucket: api.cases.chalking.bucket_of(lat, lon), the coarse square its lookups and locks go by."""

    __tablename__ = "chalk_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(128), unique=True)
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX))
    object_kind: Mapped[str | None] = mapped_column(String(64))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(StoredTime)
    seen_at: Mapped[datetime] = mapped_column(StoredTime)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    bucket: Mapped[int] = mapped_column(BigInteger)
    plate: Mapped[str | None] = mapped_column(String(32))
    plate_confidence: Mapped[float | None] = mapped_column(Float)
    incident_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # open | confirmed
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    # the confirmed incident this pass made when it arrived (its answer again on a repeat); None when
    # it arrived alone, or was confirmed only by a later pass
    confirmed_as: Mapped[str | None] = mapped_column(String(128))
    confirmed_at: Mapped[datetime | None] = mapped_column(StoredTime)
    created_at: Mapped[datetime] = mapped_column(StoredTime, default=utcnow)

    evidence: Mapped[list[ChalkEvidence]] = relationship(order_by="ChalkEvidence.id")

    __table_args__ = (
        # a new pass's candidates: its category, the buckets around it, the chalking window
        Index("ix_chalk_marks_bucket", "category", "bucket", "seen_at"),
        Index("ix_chalk_marks_seen", "seen_at"),
        Index("ix_chalk_marks_status_seen", "status", "seen_at"),
        Index("ix_chalk_marks_plate", "plate"),
        Index("ix_chalk_marks_case", "case_id"),
    )


class ChalkEvidence(Base):
    """An evidence file of a chalk mark: a blob of the evidence store (the evidence table keeps it
    from being an orphan) in the role the pass's incident gave it."""

    __tablename__ = "chalk_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mark_id: Mapped[int] = mapped_column(ForeignKey("chalk_marks.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("evidence.sha256"), index=True)
    role: Mapped[str] = mapped_column(String(32))


class ReviewLabel(Base):
    """One operator decision kept with the frame it was made on (api.cases.review_labels): a case
    confirmed, rejected (as a false detection or for another reason), recategorised or undone, or
    boxes corrected, added or removed on a sighting's raw frame. The training-set export
    (`gridpatrol dataset from-reviews`) replays them per frame. frame_sha256: the sighting's "raw"
    evidence (the whole best frame, privacy-blurred), null when it has none; frame_index / frame_ts:
    where in its footage (frame number, seconds), when the incident said; lat/lon: the sighting's
    position. detail: canonical JSON (the detection's box and kind, the boxes sent, the reasons)."""

    __tablename__ = "review_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sighting_id: Mapped[int | None] = mapped_column(
        ForeignKey("sightings.id", ondelete="CASCADE"), index=True
    )
    camera_id: Mapped[str | None] = mapped_column(String(64))
    frame_sha256: Mapped[str | None] = mapped_column(String(64))
    frame_index: Mapped[int | None] = mapped_column(Integer)
    frame_ts: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(96))
    at: Mapped[datetime] = mapped_column(StoredTime, index=True)
    what: Mapped[str] = mapped_column(String(16))  # confirm|reject_false|reject_other|recategorise|box|undo
    detail: Mapped[str] = mapped_column(Text)
