"""The service's long-lived parts, built by create_app (or the CLI) from Settings."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal, token_hash
from api.cases import MergePolicy
from api.db import make_engine, make_sessionmaker, migrate
from api.evidence_store import EvidenceStore
from api.grids import GridCache
from api.settings import Settings

log = logging.getLogger(__name__)


class PrincipalCache:
    """Who a token or device key stands for, remembered for `ttl_s` seconds (keyed by the key's
    SHA-256, never the key itself), so a busy camera does not cost a lookup per request. A revoked
    key or deactivated user stops working within ttl_s."""

    def __init__(self, ttl_s: float = 10.0, max_size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        key = token_hash(token)
        with self._lock:
            item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._items) >= self.max_size:
                self._items.clear()
            self._items[token_hash(token)] = (time.monotonic() + self.ttl_s, principal)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


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
