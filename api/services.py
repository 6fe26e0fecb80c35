"""The service's long-lived parts, built by create_app (or the CLI) from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.throttle import LoginPolicy
from api.accounts.tokens import CREDENTIALS_EPOCH_FILE, PrincipalCache
from api.cases.grids import GridCache
from api.cases.merge import MergePolicy
from api.cases.webhook_targets import TargetPolicy
from api.settings import Settings
from api.storage.db import make_engine, make_sessionmaker, migrate
from api.storage.evidence_store import EvidenceStore

log = logging.getLogger(__name__)


def merge_policy(settings: Settings) -> MergePolicy:
    """The merge rule's parameters as the settings give them (the API and the worker share it)."""
    return MergePolicy(
        radius_m=settings.merge_radius_m,
        window_h=settings.merge_window_h,
        follow_last=frozenset(settings.merge_from_last),
        use_buckets=settings.merge_buckets,
    )


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: EvidenceStore
    read_factory: sessionmaker[Session]
    grid_cache: GridCache = field(default_factory=GridCache)
    principals: PrincipalCache = field(default_factory=PrincipalCache)

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
            store=EvidenceStore(settings.evidence_dir),
            read_factory=make_sessionmaker(engine, readonly=True),
            principals=PrincipalCache(
                ttl_s=settings.auth_cache_s, epoch_file=settings.data_dir / CREDENTIALS_EPOCH_FILE
            ),
        )

    def close(self) -> None:
        self.engine.dispose()
