"""The service's long-lived parts, built by create_app (or the CLI) from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.cases import MergePolicy
from api.db import make_engine, make_sessionmaker, migrate
from api.evidence_store import EvidenceStore
from api.grids import GridCache
from api.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: EvidenceStore
    read_factory: sessionmaker[Session]
    grid_cache: GridCache = field(default_factory=GridCache)

    @property
    def policy(self) -> MergePolicy:
        return MergePolicy(self.settings.merge_radius_m, self.settings.merge_window_h)

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
        )

    def close(self) -> None:
        self.engine.dispose()
