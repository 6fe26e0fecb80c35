"""The service's long-lived parts, built by create_app (or the CLI) from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.throttle import LoginPolicy
from api.accounts.tokens import CREDENTIALS_EPOCH_FILE, PrincipalCache
from api.cameras.registry import ClockLog
from api.cases.grids import GridCache
from api.cases.merge import MergePolicy
from api.cases.webhook_targets import TargetPolicy
from api.settings import Settings
from api.storage.db import make_engine, make_sessionmaker, migrate
from api.storage.evidence_store import EvidenceFiles, EvidenceStore

log = logging.getLogger(__name__)


def merge_policy(settings: Settings) -> MergePolicy:
    """The merge rule's parameters as the settings give them (the API and the worker share it)."""
    return MergePolicy(
        radius_m=settings.merge_radius_m,
        window_h=settings.merge_window_h,
        follow_last=frozenset(settings.merge_from_last),
        use_buckets=settings.merge_buckets,
    )


def evidence_store(settings: Settings) -> EvidenceFiles:
    """The evidence store the settings choose: the local folder (default) or an S3 bucket (boto3 is
    imported only then). Reaches no server: an unreachable endpoint is answered per request (503)."""
    if settings.evidence_backend != "s3":
        return EvidenceStore(settings.evidence_dir)
    from api.storage.s3_store import S3EvidenceStore, S3Location

    assert settings.s3_bucket is not None  # Settings refuses s3 without a bucket
    secret = settings.s3_secret_access_key
    store = S3EvidenceStore(
        S3Location(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        ),
        spool_dir=settings.data_dir / "evidence-incoming",
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        connect_timeout_s=settings.s3_timeout_s,
        read_timeout_s=settings.s3_timeout_s,
    )
    log.info("evidence store: %r", store)
    return store


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: EvidenceFiles
    read_factory: sessionmaker[Session]
    list_factory: sessionmaker[Session]  # one-statement readers (make_sessionmaker(one_statement=True))
    grid_cache: GridCache = field(default_factory=GridCache)
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    clock_log: ClockLog = field(default_factory=ClockLog)  # runners' clock differences logged (hysteresis)

    @property
    def login_policy(self) -> LoginPolicy:
        return LoginPolicy(self.settings.login_max_failures, self.settings.login_window_s)

    @property
    def policy(self) -> MergePolicy:
        return merge_policy(self.settings)

    @property
    def webhook_targets(self) -> TargetPolicy:
        return TargetPolicy(self.settings.webhook_allow_hosts)

    @classmethod
    def build(cls, settings: Settings, *, migrate_db: bool = True) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.url)
        if migrate_db:
            migrate(engine)
        return cls(
            settings=settings,
            engine=engine,
            factory=make_sessionmaker(engine),
            store=evidence_store(settings),
            read_factory=make_sessionmaker(engine, readonly=True),
            list_factory=make_sessionmaker(engine, one_statement=True),
            principals=PrincipalCache(
                ttl_s=settings.auth_cache_s, epoch_file=settings.data_dir / CREDENTIALS_EPOCH_FILE
            ),
        )

    def close(self) -> None:
        self.engine.dispose()
