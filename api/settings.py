"""Service settings, read once from the environment (GRIDPATROL_*) by the CLI or given by tests.

Nothing here runs at import time: `Settings.from_env()` is called by whoever builds the app.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

ENV_PREFIX = "GRIDPATROL_"
HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")


def env_var(field: str) -> str:
    """The environment variable a setting is read from (Settings.from_env): GRIDPATROL_<FIELD>."""
    if field not in Settings.model_fields:
        raise KeyError(f"no setting {field!r}")
    return ENV_PREFIX + field.upper()


class SettingsError(Exception):
    """A setting that cannot be used; the message names the environment variable. Raised where the
    service starts (the CLI reports it), never in answer to a request, so it is no InputError."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(Path("data"), description="evidence, uploads and the default SQLite file")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/gridpatrol.db"
    )
    evidence_backend: Literal["local", "s3"] = Field(
        "local",
        description="where evidence files are kept: local (<data_dir>/evidence) or s3 (an S3-compatible "
        "bucket, GRIDPATROL_S3_*)",
    )
    s3_bucket: str | None = Field(
        None, min_length=3, max_length=63, validate_default=True, description="the bucket (s3 only)"
    )
    s3_prefix: str = Field(
        "evidence", max_length=256, description="keys are <prefix>/<aa>/<bb>/<sha256>; empty: none"
    )
    s3_endpoint_url: str | None = Field(
        None, description="an S3-compatible server (MinIO, Ceph, ...); default AWS itself"
    )
    s3_region: str | None = Field(None, description="default: boto3's (AWS_DEFAULT_REGION)")
    s3_access_key_id: str | None = Field(
        None, description="default: boto3's usual sources (AWS_ACCESS_KEY_ID, ~/.aws, an instance role)"
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="default: boto3's usual sources (AWS_SECRET_ACCESS_KEY, ...); never shown or logged"
    )
    s3_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="seconds one S3 call may wait to connect, and then for each answer; a call is tried "
        "3 times, so an incident whose bucket stalls is a 503 within about 3 x this (s3 only)",
    )
    site_config: Path = Field(Path("configs/site.yaml"), description="site config the worker uses")
    merge_radius_m: float = Field(15.0, ge=0.0, le=10_000.0)
    merge_window_h: float = Field(24.0, ge=0.0, le=24.0 * 365)
    merge_from_last: tuple[str, ...] = Field(
        ("piled_debris",),
        description="categories whose cases are matched from their latest sighting's position (a pile "
        "grows); every other category from where its case was first seen (a parked car does not walk); "
        "comma-separated in GRIDPATROL_MERGE_FROM_LAST, the word none for none",
    )
    merge_buckets: bool = Field(
        True, description="narrow merge candidates by position bucket (off only to compare speed)"
    )
    chalk_radius_m: float = Field(
        10.0,
        gt=0.0,
        le=1_000.0,
        description="a suspected sighting (one pass of a parked vehicle) is seen again when a later pass "
        "finds a vehicle within this many metres of it (api.cases.chalking)",
    )
    chalk_min_minutes: float = Field(
        15.0,
        ge=0.0,
        le=24.0 * 60,
        description="the least time between the two passes that confirm a sighting",
    )
    chalk_max_hours: float = Field(
        12.0,
        gt=0.0,
        le=24.0 * 30,
        description="the most time between them: an older mark no longer counts (it has expired)",
    )
    max_upload_bytes: int = Field(4 * 1024**3, ge=1024, description="footage size limit")
    upload_session_expiry_h: float = Field(
        24.0, gt=0.0, le=24.0 * 30, description="a chunked upload with no chunk for this long is removed"
    )
    max_evidence_bytes: int = Field(20 * 1024**2, ge=1024, description="per evidence file")
    token_ttl_h: float = Field(12.0, gt=0.0)
    login_max_failures: int = Field(5, ge=1, description="failed logins per username before 429")
    login_window_s: float = Field(900.0, gt=0.0, description="the window those failures are counted in")
    auth_cache_s: float = Field(
        10.0, ge=0.0, description="how long a process trusts a resolved token or key; 0: no cache"
    )
    review_lease_s: float = Field(
        120.0,
        gt=0.0,
        le=3600.0,
        description="how long the review page's claim on a case (on screen, or loaded ahead) lasts; the "
        "page renews its claims while it is open, so it lapses when the operator walks away",
    )
    review_idle_s: float = Field(
        600.0,
        gt=0.0,
        le=86400.0,
        description="how long the review page renews its claims without any input from the operator "
        "(a key, the pointer, a touch): then it pauses and releases its claims; the next input claims "
        "again",
    )
    job_lease_s: float = Field(60.0, gt=0.0, description="a running job whose lease lapses is retried")
    job_max_attempts: int = Field(3, ge=1)
    worker_poll_s: float = Field(1.0, gt=0.0)
    checkpoint_dir: Path | None = Field(
        None,
        description="where `gridpatrol evidence checkpoint` writes the custody ledger's head; outside "
        "data_dir (refused inside it); default <data_dir>/../gridpatrol-checkpoints",
    )
    checkpoint_every_min: float = Field(
        60.0,
        ge=0.0,
        description="the server writes a checkpoint there this often when the ledger has moved, and "
        "sends it to webhooks subscribed to custody.checkpoint; 0: only `gridpatrol evidence checkpoint`",
    )
    camera_offline_after_s: float = Field(
        60.0, gt=0.0, description="a camera is offline (webhook camera.offline) after no report for this long"
    )
    webhook_timeout_s: float = Field(5.0, gt=0.0)
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_backoff_s: float = Field(2.0, gt=0.0, description="first retry delay; doubles each time")
    webhook_poll_s: float = Field(0.5, gt=0.0)
    webhook_allow_hosts: tuple[str, ...] = Field(
        (),
        description="hosts webhooks may reach although they are (or resolve to) loopback, link-local, "
        "private or other non-public addresses: host names, IP addresses or networks (CIDR), "
        "comma-separated in GRIDPATROL_WEBHOOK_ALLOW_HOSTS; every other such target is refused",
    )
    timezone_offset_h: float = Field(
        8.0,
        ge=-14.0,
        le=14.0,
        description="the district's offset from UTC in hours (8, 5.5, 5.75: a whole number of minutes), "
        "where its local days begin: the days of /api/stats and the dashboard, the periods of the "
        "periodic report",
    )

    @field_validator("timezone_offset_h", mode="after")
    @classmethod
    def _whole_minutes(cls, value: float) -> float:
        """The database counts /api/stats' days in whole minutes (api.cases.stats), the report and the
        pages bound their periods at the offset itself: at 8.01 h (8 h 0.6 min) a case seen at 00:00:20
        local would fall in one day on the dashboard's trend and in another in the report."""
        minutes = value * 60
        if abs(minutes - round(minutes)) > 1e-6:
            raise ValueError(
                "must be a whole number of minutes, in hours (8, 5.5, 5.75, -3.5): "
                f"{value:g} h is {minutes:g} min"
            )
        return value

    @field_validator("chalk_max_hours", mode="after")
    @classmethod
    def _chalk_window(cls, value: float, info: ValidationInfo) -> float:
        least = info.data.get("chalk_min_minutes")
        if least is not None and value * 60 < least:
            raise ValueError(f"must be at least GRIDPATROL_CHALK_MIN_MINUTES ({least:g} min)")
        return value

    @field_validator("s3_bucket", mode="after")
    @classmethod
    def _bucket_for_s3(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("evidence_backend") == "s3":
            raise ValueError("required when GRIDPATROL_EVIDENCE_BACKEND is s3")
        return value

    @field_validator("s3_endpoint_url", mode="after")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")  # the value may carry a password
        return value

    @field_validator("merge_from_last", mode="before")
    @classmethod
    def _split_categories(cls, value: object) -> object:
        """Either "a, b" (the environment's form; "none" for none) or a sequence of category names."""
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            return () if [n.lower() for n in names] == ["none"] else tuple(names)
        return value

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """Either "a, b" (the environment's form) or a sequence; each entry a host name, IP or network."""
        entries = value.split(",") if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return value
        hosts = []
        for entry in entries:
            host = str(entry).strip().strip("[]").lower().rstrip(".")
            if not host:
                continue
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                if not HOST_NAME_RE.fullmatch(host):
                    problem = f"{entry!r} is neither a host name nor an IP address or network"
                    raise ValueError(problem) from None
            hosts.append(host)
        return tuple(hosts)

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gridpatrol.db').resolve()}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir.resolve().parent / "gridpatrol-checkpoints"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from GRIDPATROL_<FIELD> variables (e.g. GRIDPATROL_DATABASE_URL), then overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = env_var(name)
            if key in environ and environ[key] != "":
                values[name] = environ[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise SettingsError(f"bad settings: {problems}") from None
